"""``streamwise bench`` (docs/bench.md), run as a person runs it: a subprocess against a
served repository, briefly (small counts, a second or two a mode). The figures are checked
for sanity, never for speed: counts above 0, p50 <= p99, no errors where none is due."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from streamwise.bench import made_up_request, main
from tests.support import DOCUMENT, ROOT, free_port, served_in_subprocess


def bench(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "src", "bench", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def figures(json_file: pathlib.Path, *args: str) -> dict[str, Any]:
    done = bench(*args, "--json", str(json_file))
    assert done.returncode == 0, done.stderr
    assert "level" in done.stdout and "lat p50" in done.stdout  # the table
    report: dict[str, Any] = json.loads(json_file.read_text())
    report["stderr"] = done.stderr
    return report


@pytest.fixture(scope="module")
def demo() -> Iterator[tuple[int, int, int]]:
    """The demo repository served in a subprocess: (http_port, grpc_port, pid)."""
    http_port, grpc_port = free_port(), free_port()
    argv = [sys.executable, "-m", "src", "serve", "--http-port", str(http_port)]
    argv += ["--grpc-port", str(grpc_port), "--log-level", "WARNING"]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
            try:
                if httpx.get(f"http://127.0.0.1:{http_port}/v2/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield http_port, grpc_port, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def sane(level: dict[str, Any]) -> None:
    assert level["requests"] > 0 and level["responses"] >= level["requests"]
    assert (level["error_count"], level["errors"]) == (0, {})
    assert level["requests_per_s"] > 0 and level["responses_per_s"] >= level["requests_per_s"]
    for name in ("ttft_s", "latency_s"):
        p = level[name]
        assert 0 < p["p50"] <= p["p90"] <= p["p99"]
    assert level["client_cpu_s"] > 0 and level["client_cpu_per_response_us"] > 0


@pytest.mark.parametrize("mode", ["sse", "infer", "grpc-stream", "grpc-infer"])
def test_every_mode_measures_the_demo_models(
    mode: str, demo: tuple[int, int, int], tmp_path: pathlib.Path
) -> None:
    http_port, grpc_port, pid = demo
    streaming = mode in ("sse", "grpc-stream")
    model = ["--model", "token-streamer", "--input", "n=5"] if streaming else []
    model = model or ["--model", "identity", "--input", "x=[1.0, 2.0, 3.0, 4.0]"]
    report = figures(
        tmp_path / "out.json",
        f"http://127.0.0.1:{http_port}",
        *model,
        "--mode",
        mode,
        "--grpc",
        f"127.0.0.1:{grpc_port}",
        "--concurrency",
        "1,4",
        "--requests",
        "40",
        "--duration",
        "1",
        "--server-pid",
        str(pid),
    )
    assert report["target"]["mode"] == mode
    assert [level["concurrency"] for level in report["levels"]] == [1, 4]
    for level in report["levels"]:
        sane(level)
        assert level["requests"] <= 40
        if streaming:
            assert level["responses"] == 5 * level["requests"]
            assert 0 <= level["gap_s"]["p50"] <= level["gap_s"]["p99"]
        else:
            assert level["responses"] == level["requests"]
        assert level["server_cpu_s"] > 0 and level["server_peak_rss_mib"] > 10
    assert "concurrency 4: " in report["stderr"]  # the progress line


def test_the_open_loop_sends_at_the_rate(
    demo: tuple[int, int, int], tmp_path: pathlib.Path
) -> None:
    http_port, _, _ = demo
    report = figures(
        tmp_path / "out.json",
        f"http://127.0.0.1:{http_port}",
        "--model",
        "token-streamer",
        "--input",
        "n=3",
        "--rate",
        "50",
        "--duration",
        "1",
        "--seed",
        "7",
    )
    (level,) = report["levels"]
    sane(level)
    assert level["rate"] == 50 and level["concurrency"] is None
    assert 20 <= level["requests"] <= 100  # Poisson: about 50 in a second
    assert "rate 50/s: " in report["stderr"]


def test_errors_are_counted_by_kind(demo: tuple[int, int, int], tmp_path: pathlib.Path) -> None:
    """token-streamer only streams: unary calls of it fail, each one counted."""
    http_port, grpc_port, _ = demo
    for mode, prefix in [("infer", "HTTP 5"), ("grpc-infer", "gRPC ")]:
        report = figures(
            tmp_path / "out.json",
            f"http://127.0.0.1:{http_port}",
            "--model",
            "token-streamer",
            "--mode",
            mode,
            "--grpc",
            f"127.0.0.1:{grpc_port}",
            "--requests",
            "5",
            "--quiet",
        )
        (level,) = report["levels"]
        assert level["requests"] == 0 and level["error_count"] == 5
        ((kind, count),) = level["errors"].items()
        assert kind.startswith(prefix) and count == 5
        assert report["stderr"] == ""  # --quiet


def test_the_documents_request_file_against_its_text_model(tmp_path: pathlib.Path) -> None:
    """The streaming document's request as it is; its model waits 0.5 s before each word."""
    with served_in_subprocess(DOCUMENT) as (http_port, _):
        report = figures(
            tmp_path / "out.json",
            f"http://127.0.0.1:{http_port}",
            "--model",
            "text-model",
            "--request-file",
            str(DOCUMENT / "generate-request.json"),
            "--concurrency",
            "2",
            "--requests",
            "2",
        )
    (level,) = report["levels"]
    sane(level)
    assert level["requests"] == 2 and level["responses"] == 12  # six words each
    assert 0.3 <= level["ttft_s"]["p50"] <= 2 and 0.3 <= level["gap_s"]["p50"] <= 2


def test_an_unreachable_server_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([f"http://127.0.0.1:{free_port()}", "--model", "identity"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("streamwise bench: GET /v2/models/identity on 127.0.0.1:")


def test_the_grpc_modes_need_an_address(capsys: pytest.CaptureFixture[str]) -> None:
    request = str(DOCUMENT / "generate-request.json")
    argv = ["http://127.0.0.1:1", "--model", "m", "--mode", "grpc-infer", "--request-file", request]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == "streamwise bench: --mode grpc-infer needs --grpc HOST:PORT\n"


def test_made_up_requests_follow_the_metadata() -> None:
    metadata = {
        "inputs": [
            {"name": "x", "datatype": "FP32", "shape": [-1, 3]},
            {"name": "s", "datatype": "BYTES", "shape": [1]},
            {"name": "d", "datatype": "FP64", "shape": [1], "parameters": {"optional": True}},
        ]
    }
    assert made_up_request(metadata, [], [], []) == {
        "inputs": [
            {"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1.0, 1.0, 1.0]},
            {"name": "s", "shape": [1], "datatype": "BYTES", "data": ["a"]},
        ]
    }
    (x, _, d) = made_up_request(metadata, ["x=2,2"], ["x=INT32"], ["d=0.5"])["inputs"]
    assert x == {"name": "x", "shape": [2, 2], "datatype": "INT32", "data": [1, 1, 1, 1]}
    assert d == {"name": "d", "shape": [1], "datatype": "FP64", "data": [0.5]}


def test_self_compares_streamwise_with_a_bare_hypercorn_app() -> None:
    done = bench("--self", "--events", "200", "--requests", "50", "--quiet")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["figure", "baseline", "streamwise", "ratio"]
    assert [line.split(" req/s")[0] for line in lines[2:4]] == ["unary, 1 conn", "unary, 32 conn"]
    assert lines[1].startswith("sse events/s")


def matplotlib_installed() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def two_reports(demo: tuple[int, int, int], tmp_path: pathlib.Path) -> list[pathlib.Path]:
    http_port, grpc_port, _ = demo
    files = [tmp_path / "rest.json", tmp_path / "grpc.json"]
    for mode, out in zip(["sse", "grpc-stream"], files, strict=True):
        argv = [
            f"http://127.0.0.1:{http_port}",
            "--model",
            "token-streamer",
            "--input",
            "n=3",
            "--mode",
            mode,
            "--grpc",
            f"127.0.0.1:{grpc_port}",
            "--concurrency",
            "1,2",
            "--requests",
            "10",
            "--quiet",
            "--json",
            str(out),
        ]
        assert main(argv) == 0  # in this process: no interpreter start-up
    return files


def test_compare_puts_two_runs_side_by_side(
    demo: tuple[int, int, int], tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rest, grpc = two_reports(demo, tmp_path)
    capsys.readouterr()  # the runs' own tables
    plot = ["--plot", str(tmp_path / "compare.png")] if matplotlib_installed() else []
    assert main(["--compare", str(rest), str(grpc), *plot]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["level", "figure", "rest", "grpc", "grpc/rest"]
    rows = [line.split() for line in lines[1:]]
    assert [row[:4] for row in rows[:2]] == [
        ["concurrency", "1", "req/s", rows[0][3]],
        ["concurrency", "1", "resp/s", rows[1][3]],
    ]
    assert {" ".join(row[:2]) for row in rows} == {"concurrency 1", "concurrency 2"}
    if plot:
        assert (tmp_path / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(not matplotlib_installed(), reason="matplotlib (the [bench] extra) absent")
def test_plot_writes_a_png(demo: tuple[int, int, int], tmp_path: pathlib.Path) -> None:
    http_port, _, _ = demo
    png = tmp_path / "run.png"
    main(
        [
            f"http://127.0.0.1:{http_port}",
            "--model",
            "token-streamer",
            "--requests",
            "10",
            "--plot",
            str(png),
        ]
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(matplotlib_installed(), reason="matplotlib is installed here")
def test_plot_without_matplotlib_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """Before any call: the run would be lost otherwise."""
    assert main(["http://127.0.0.1:1", "--model", "m", "--plot", "x.png"]) == 2
    assert capsys.readouterr().err == (
        "streamwise bench: --plot needs matplotlib: pip install 'streamwise[bench]' "
        "(or matplotlib)\n"
    )
