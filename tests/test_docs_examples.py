"""Every example in docs/ is run as it is written, or, where it needs what a clean clone
does not have (MLServer in a virtual environment of its own, minutes of load), checked
against the command's own ``--help``: the script exists and takes every option the page
names. The blocks are read from the pages at test time, so the test cannot drift from the
text, and a block no test knows fails ``test_every_example_is_run_or_checked``.

``text`` blocks are not examples: synopses, output, the side-by-side harness (not part of
the repository)."""

from __future__ import annotations

import json
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys
import tomllib

import pytest
import trio

from streamwise import __version__
from streamwise.protocol.openai import Message, render_chat, target_of
from streamwise.settings import load_model_settings
from tests.support import DEMO, DOCUMENT, ROOT, StartServer, served_in_subprocess

FENCE = re.compile(r"^```(\w*)\n(.*?)^```", flags=re.S | re.M)
EXAMPLE_LANGUAGES = {"bash", "sh", "python", "json"}
PAGES = {page.name: page.read_text() for page in sorted((ROOT / "docs").glob("*.md"))}

# (page, a string only that block holds): the blocks run by the tests below
RUN = {
    ("running.md", "streamwise --version"),
    ("running.md", "class Countdown"),
    ("running.md", '"implementation": "countdown.Countdown"'),
    ("running.md", "/v2/models/countdown/infer_stream"),
    ("running.md", "info.shutdown()"),
    ("grpc.md", "grpc_tools.protoc"),
    ("grpc.md", "ModelStreamInfer"),
    ("openai.md", "chat.completions.create"),
    ("openai.md", "/v1/completions"),
    ("openai.md", '"prompt_input": "prompt"'),
    ("triton.md", "tritonclient.http"),
    ("batching.md", '"max_batch_size": 16'),
    ("triton.md", "identity/generate"),
    ("triton.md", "token-streamer/generate_stream"),
    ("runtimes.md", '"mlserver_sklearn.SKLearnModel"'),
    ("runtimes.md", '"mlserver_xgboost.XGBoostModel"'),
    ("runtimes.md", '"mlserver_lightgbm.LightGBMModel"'),
    ("runtimes.md", '"streamwise.runtimes.onnx.OnnxModel"'),
    ("runtimes.md", "/v2/models/iris-xgb/infer"),
    ("runtimes.md", '"content_type": "pd"'),
}
# the blocks whose command lines are checked against the commands' --help
HELP_CHECKED = {
    ("conformance.md", "run_mlserver.py"),
    ("index.md", "pip install -e . && python -m src serve"),
    ("bench.md", "--model token-streamer --input n=20 --concurrency 1,10,100\n"),
    ("bench.md", 'pip install -e ".[bench]"'),
    ("runtimes.md", 'pip install "streamwise[sklearn]"'),
}


def examples() -> list[tuple[str, str, str]]:
    """(page, language, code) of every example block in docs/."""
    return [
        (page, language, code)
        for page, text in PAGES.items()
        for language, code in FENCE.findall(text)
        if language in EXAMPLE_LANGUAGES
    ]


def block(page: str, language: str, marker: str) -> str:
    (code,) = [c for p, lang, c in examples() if p == page and lang == language and marker in c]
    return code


def on_ports(code: str, http_port: int, grpc_port: int = 0) -> str:
    return code.replace(":8080", f":{http_port}").replace(":8081", f":{grpc_port}")


def environment(**extra: str) -> dict[str, str]:
    """This interpreter first on PATH: ``python`` and ``streamwise`` are the installed ones."""
    path = f"{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return dict(os.environ, PATH=path, **extra)


def run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=90, **kwargs)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{argv}: {done.stderr}"
    return done  # type: ignore[no-any-return]


def test_every_example_is_run_or_checked() -> None:
    known = RUN | HELP_CHECKED
    for page, language, code in examples():
        matched = [(p, m) for p, m in known if p == page and m in code]
        assert len(matched) == 1, (
            f"docs/{page}: no test (or several) for this {language} block:\n{code}"
        )
    for page, marker in known:
        assert marker in PAGES[page], f"docs/{page} no longer holds {marker!r}"


def test_the_batching_settings_turn_batching_on(tmp_path: pathlib.Path) -> None:
    from streamwise.runtime.batching import batching_enabled
    from streamwise.settings import load_model_settings

    path = tmp_path / "model-settings.json"
    path.write_text(block("batching.md", "json", '"max_batch_size": 16'))
    settings = load_model_settings(path)
    assert batching_enabled(settings.max_batch_size, settings.max_batch_time)


def test_the_cli_examples_print_help_and_version() -> None:
    for line in block("running.md", "bash", "streamwise --version").splitlines():
        done = run(["bash", "-c", line], cwd=ROOT, env=environment())
        if "--version" in line:
            assert done.stdout.strip() == f"streamwise {__version__}"
        else:
            assert done.stdout.startswith("usage: streamwise")


def countdown_repository(root: pathlib.Path) -> pathlib.Path:
    """models/countdown/ as the page lays it out: the model file and its settings."""
    folder = root / "models" / "countdown"
    folder.mkdir(parents=True)
    (folder / "countdown.py").write_text(block("running.md", "python", "class Countdown"))
    (folder / "model-settings.json").write_text(
        block("running.md", "json", '"implementation": "countdown.Countdown"')
    )
    return root / "models"


def sse_events(body: str) -> list[str]:
    return [event for event in body.split("\n\n") if event.strip()]


@pytest.mark.skipif(shutil.which("curl") is None, reason="no curl here")
async def test_the_countdown_model_streams_and_fails_as_the_page_says(
    start_server: StartServer, tmp_path: pathlib.Path
) -> None:
    info = await start_server(countdown_repository(tmp_path))
    curl = on_ports(block("running.md", "bash", "countdown/infer_stream"), info.http_port)
    done = await trio.run_process(["bash", "-c", curl], capture_stdout=True, capture_stderr=True)
    events = sse_events(done.stdout.decode())
    assert [e.split('"data":')[-1].rstrip("}]") for e in events] == ['["3"', '["2"', '["1"']
    assert all(e.startswith('data: {"model_name":"countdown"') for e in events)

    refused = curl.replace('"data": [3]', '"data": [500]')
    done = await trio.run_process(["bash", "-c", refused], capture_stdout=True, capture_stderr=True)
    assert sse_events(done.stdout.decode()) == [
        'event: error\ndata: {"error":"\'from\' must be 0 to 100, got 500"}'
    ]


def shown(page: str, marker: str) -> str:
    """The ``text`` block of ``page`` holding ``marker``: what the page says comes out."""
    (code,) = [c for lang, c in FENCE.findall(PAGES[page]) if lang == "text" and marker in c]
    return code


@pytest.mark.skipif(shutil.which("curl") is None, reason="no curl here")
async def test_the_triton_generate_examples_print_what_the_page_shows(
    start_server: StartServer,
) -> None:
    info = await start_server()  # the demo models
    for marker, output in [
        ("identity/generate", '{"id":"q-1"'),
        ("token-streamer/generate_stream", "data: "),
    ]:
        curl = on_ports(block("triton.md", "bash", marker), info.http_port)
        done = await trio.run_process(["bash", "-c", curl], capture_stdout=True)
        assert done.stdout.decode().strip() == shown("triton.md", output).strip()


def test_the_embedding_program_serves_calls_and_drains() -> None:
    done = run([sys.executable, "-c", block("running.md", "python", "info.shutdown()")], cwd=ROOT)
    assert done.stdout == "identity ready: True\n"


@pytest.fixture(scope="module")
def document_server() -> object:
    """The server grpc.md's example talks to: ``python -m src serve tests/document``."""
    with served_in_subprocess(DOCUMENT) as ports:
        yield ports


def test_the_grpc_client_streams_the_tokens(
    document_server: tuple[int, int], tmp_path: pathlib.Path
) -> None:
    (tmp_path / "proto").symlink_to(ROOT / "proto")
    run(
        ["bash", "-c", block("grpc.md", "bash", "grpc_tools.protoc")],
        cwd=tmp_path,
        env=environment(),
    )
    code = on_ports(block("grpc.md", "python", "ModelStreamInfer"), *document_server)
    done = run([sys.executable, "-c", code], cwd=tmp_path, env=environment(PYTHONPATH="stubs"))
    words = [b"What", b" is", b" the", b" capital", b" of", b" France?"]
    assert done.stdout.split("\n")[:-1] == [str([word]) for word in words]


def text_block(page: str, marker: str) -> str:
    """The one ``text`` block of ``page`` holding ``marker`` (an example's output)."""
    (code,) = [c for lang, c in FENCE.findall(PAGES[page]) if lang == "text" and marker in c]
    return code


async def test_the_openai_client_example_prints_what_the_page_says(
    start_server: StartServer,
) -> None:
    info = await start_server(DEMO)
    code = on_ports(block("openai.md", "python", "chat.completions.create"), info.http_port)
    done = await trio.run_process(
        [sys.executable, "-c", code], capture_stdout=True, capture_stderr=True
    )
    assert done.stdout.decode() == text_block("openai.md", "tokens")


@pytest.mark.skipif(shutil.which("curl") is None, reason="no curl here")
async def test_the_openai_curl_example_streams_what_the_page_says(
    start_server: StartServer,
) -> None:
    info = await start_server(DEMO)
    curl = on_ports(block("openai.md", "bash", "/v1/completions"), info.http_port)
    done = await trio.run_process(["bash", "-c", curl], capture_stdout=True, capture_stderr=True)
    # the id and the time differ each run; the page shows them as "..."
    out = re.sub(r'"(cmpl-)[0-9a-f]+"', r'"\1..."', done.stdout.decode())
    out = re.sub(r'"created":\d+', '"created":...', out)
    assert out == text_block("openai.md", "[DONE]") + "\n"  # the stream's last blank line


def test_the_openai_model_settings_example_is_valid(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "my-llm" / "model-settings.json"
    path.parent.mkdir()
    path.write_text(block("openai.md", "json", '"prompt_input": "prompt"'))
    target = target_of(load_model_settings(path))
    assert (target.prompt_input, target.text_output) == ("prompt", "text")
    assert render_chat([Message(role="user", content="Hi")], target.template) == (
        "<s>[user] Hi\n[assistant]"
    )


def test_the_triton_client_example_round_trips() -> None:
    with served_in_subprocess(DEMO) as ports:
        code = on_ports(block("triton.md", "python", "tritonclient.http"), *ports)
        done = run([sys.executable, "-c", code], cwd=ROOT)
    assert done.stdout.splitlines() == [
        "[[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]] [b'raw \\xff bytes', b'']",
        "True",
    ]


def command_lines(code: str) -> list[tuple[list[str], str]]:
    """(argv, the comment after it) of each command line, continuations joined."""
    lines = []
    for line in code.replace("\\\n", " ").splitlines():
        line, _, comment = line.partition("#")
        for command in line.split("&&"):
            if command.strip():
                lines.append((shlex.split(command), comment))
    return lines


def options(text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", text))


def help_of(argv: list[str]) -> str:
    argv = [sys.executable if word == "python" else word for word in argv]
    return run([*argv, "--help"], cwd=ROOT, env=environment()).stdout


@pytest.mark.parametrize("page, marker", sorted(HELP_CHECKED))
def test_the_commands_a_page_shows_take_the_options_it_names(page: str, marker: str) -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    pytest_help = help_of(["python", "-m", "pytest", "conformance"])
    (code,) = [c for p, _, c in examples() if p == page and marker in c]
    for argv, comment in command_lines(code):
        if argv[:3] == ["python3", "-m", "venv"] or argv[0] == ".":
            continue  # the standard library's, and the venv's activation
        if argv[:2] == ["pip", "install"]:
            for extra in re.findall(r"\[(\w+)\]", " ".join(argv)):
                assert extra in extras, f"docs/{page}: no extra [{extra}] in pyproject.toml"
            continue
        assert argv[0] == "python", f"docs/{page}: unchecked command {argv}"
        mine, _, passed_on = " ".join(argv).partition(" -- ")
        script = mine.split()
        if script[1] == "-m":
            script = script[:4]  # python -m pytest conformance
        else:
            assert (ROOT / script[1]).is_file(), f"docs/{page}: no {script[1]}"
        usage = help_of(script)
        assert options(mine + comment) <= options(usage), f"docs/{page}: {mine}"
        assert options(passed_on) <= options(pytest_help), f"docs/{page}: {passed_on}"


def runtimes_repository(root: pathlib.Path) -> dict[str, object]:
    """models/ as runtimes.md lays it out: each model-settings.json block of the page, and
    a small model trained on iris saved where its ``uri`` says; the fitted models."""
    joblib = pytest.importorskip("joblib")
    pd = pytest.importorskip("pandas")
    datasets = pytest.importorskip("sklearn.datasets")
    tree = pytest.importorskip("sklearn.tree")
    xgb = pytest.importorskip("xgboost")
    lgb = pytest.importorskip("lightgbm")
    skl2onnx = pytest.importorskip("skl2onnx")
    import numpy as np

    x, y = datasets.load_iris(return_X_y=True)
    columns = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    fitted: dict[str, object] = {}
    for code in (c for p, lang, c in examples() if p == "runtimes.md" and lang == "json"):
        settings = json.loads(code)
        if "implementation" not in settings:
            continue  # a request
        folder = root / "models" / settings["name"]
        folder.mkdir(parents=True)
        (folder / "model-settings.json").write_text(code)
        path = folder / settings["parameters"]["uri"]
        kind = settings["implementation"]
        if "sklearn" in kind:
            model: object = tree.DecisionTreeClassifier(max_depth=3).fit(
                pd.DataFrame(x, columns=columns), y
            )
            joblib.dump(model, path)
        elif "xgboost" in kind:
            model = xgb.XGBClassifier(n_estimators=5, max_depth=2, n_jobs=1).fit(x, y)
            model.save_model(path)  # type: ignore[attr-defined]
        elif "lightgbm" in kind:
            params = {"objective": "multiclass", "num_class": 3, "verbose": -1, "num_threads": 1}
            model = lgb.train(params, lgb.Dataset(x, label=y), 5)
            model.save_model(str(path))  # type: ignore[attr-defined]
        else:
            model = tree.DecisionTreeClassifier(max_depth=3).fit(x, y)
            path.write_bytes(skl2onnx.to_onnx(model, x[:1].astype(np.float32)).SerializeToString())
        fitted[settings["name"]] = model
    return fitted


@pytest.mark.skipif(shutil.which("curl") is None, reason="no curl here")
def test_the_runtimes_page_serves_its_model_files(tmp_path: pathlib.Path) -> None:
    import httpx
    import numpy as np

    fitted = runtimes_repository(tmp_path)
    assert sorted(fitted) == ["iris", "iris-lgb", "iris-onnx", "iris-xgb"]
    with served_in_subprocess(tmp_path / "models") as (http_port, _):
        index = httpx.post(f"http://127.0.0.1:{http_port}/v2/repository/index", json={}).json()
        assert {m["name"]: m["state"] for m in index} == dict.fromkeys(fitted, "READY")

        curl = block("runtimes.md", "bash", "/v2/models/iris-xgb/infer")
        done = run(["bash", "-c", on_ports(curl, http_port)])
        sent = json.loads(re.findall(r"-d '(.*)'", curl)[0])["inputs"][0]
        rows = np.array(sent["data"]).reshape(sent["shape"])
        [output] = json.loads(done.stdout)["outputs"]
        assert (output["name"], output["shape"]) == ("predict_proba", [2, 3])
        expected = fitted["iris-xgb"].predict_proba(rows)  # type: ignore[attr-defined]
        np.testing.assert_allclose(output["data"], expected.ravel(), rtol=1e-6)

        body = json.loads(block("runtimes.md", "json", '"content_type": "pd"'))
        r = httpx.post(f"http://127.0.0.1:{http_port}/v2/models/iris/infer", json=body)
        assert r.status_code == 200, r.text
        import pandas as pd

        frame = pd.DataFrame({i["name"]: i["data"] for i in body["inputs"]})
        [output] = r.json()["outputs"]
        assert output["name"] == "predict"
        assert output["data"] == fitted["iris"].predict(frame).tolist()  # type: ignore[attr-defined]
