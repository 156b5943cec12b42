"""The README's examples, run as they are written: its fenced code blocks are read from
README.md at test time (so the test cannot drift from the text), the only change being
the ports (the README's 8080 / 8081 become free ones: tests never take fixed ports)."""

from __future__ import annotations

import os
import pathlib
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.support import free_port

ROOT = pathlib.Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", README, flags=re.S)
TOKENS = ["['What']", "[' is']", "[' the']", "[' capital']", "[' of']", "[' France?']"]


def block(language: str, marker: str) -> str:
    """The one ``language`` block of the README that contains ``marker``."""
    (code,) = [code for lang, code in BLOCKS if lang == language and marker in code]
    return code


def on_ports(code: str, http_port: int, grpc_port: int) -> str:
    return code.replace(":8080", f":{http_port}").replace(":8081", f":{grpc_port}")


def run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, **kwargs)  # type: ignore[call-overload]
    assert done.returncode == 0, done.stderr
    return done  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def document_server() -> object:
    """The README's serve command for the streaming example, on free ports."""
    command = block("bash", "serve tests/document").splitlines()[0].split("#")[0]
    http_port, grpc_port = free_port(), free_port()
    argv = [sys.executable if word == "python" else word for word in shlex.split(command)]
    argv += ["--http-port", str(http_port), "--grpc-port", str(grpc_port)]
    server = subprocess.Popen(argv, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            assert time.monotonic() < deadline, "the document server did not become ready"
            try:
                if httpx.get(f"http://127.0.0.1:{http_port}/v2/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield http_port, grpc_port
    finally:
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=15)
        assert server.returncode == 0, err


def test_the_python_sse_client_prints_the_tokens(document_server: tuple[int, int]) -> None:
    code = on_ports(block("python", "connect_sse"), *document_server)
    done = run([sys.executable, "-c", code], cwd=ROOT / "tests" / "document")
    assert done.stdout.split("\n")[:-1] == TOKENS


def test_the_grpc_client_streams_the_tokens(
    document_server: tuple[int, int], tmp_path: pathlib.Path
) -> None:
    (tmp_path / "proto").symlink_to(ROOT / "proto")
    compile_stubs = block("bash", "grpc_tools.protoc").strip()
    run(["bash", "-c", compile_stubs.replace("python ", f"{sys.executable} ", 1)], cwd=tmp_path)
    code = on_ports(block("python", "ModelStreamInfer"), *document_server)
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "stubs"))
    done = run([sys.executable, "-c", code], cwd=tmp_path, env=env)
    words = [b"What", b" is", b" the", b" capital", b" of", b" France?"]
    assert done.stdout.split("\n")[:-1] == [str([word]) for word in words]


@pytest.mark.skipif(shutil.which("curl") is None, reason="no curl here")
def test_curl_streams_the_events(document_server: tuple[int, int]) -> None:
    code = on_ports(block("bash", "curl -N"), *document_server)
    done = run(["bash", "-c", code], cwd=ROOT)
    assert done.stdout.count("data: ") == len(TOKENS) and "France?" in done.stdout


def test_the_embedding_example_serves_and_stops() -> None:
    done = run([sys.executable, "-c", block("python", "nursery.start(streamwise.serve")], cwd=ROOT)
    assert re.fullmatch(r"serving on http://127\.0\.0\.1:\d+\n", done.stdout)
