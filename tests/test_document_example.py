"""Must show 1: the document's files, served by ``python -m src serve DIR``, and the
document's REST client (httpx + httpx-sse), imports renamed, prints the six words as
the model produces them, about 0.5 s apart."""

from __future__ import annotations

import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time

import httpx
import pytest
from conftest import DOCUMENT

REPO = DOCUMENT.parent.parent
WORDS = ["What", " is", " the", " capital", " of", " France?"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, "server exited early"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("server did not become ready")


@pytest.fixture
def document_server(tmp_path: pathlib.Path):  # type: ignore[no-untyped-def]
    for name in ("settings.json", "model-settings.json", "text_model.py"):
        shutil.copy(DOCUMENT / name, tmp_path / name)
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "src",
            "serve",
            str(tmp_path),
            "--http-port",
            str(port),
            "--grpc-port",
            str(_free_port()),
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_ready(port, proc)
        yield port
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=15)
        assert proc.returncode == 0, stderr.decode()


def test_document_rest_client_prints_six_words_as_they_come(
    document_server: int, tmp_path: pathlib.Path
) -> None:
    client = (
        (DOCUMENT / "rest_client.py")
        .read_text()
        .replace("localhost:8080", f"localhost:{document_server}")
    )
    (tmp_path / "client.py").write_text(client)
    shutil.copy(DOCUMENT / "generate-request.json", tmp_path / "generate-request.json")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    start = time.monotonic()
    lines, arrivals = [], []
    with subprocess.Popen(
        [sys.executable, "-u", "client.py"], cwd=tmp_path, stdout=subprocess.PIPE, env=env
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.decode().rstrip("\n"))
            arrivals.append(time.monotonic() - start)
    assert proc.returncode == 0
    assert lines == [repr([w]) for w in WORDS]
    # Incremental delivery, not one burst at the end: the model sleeps 0.5 s before each
    # word, so six words span at least 2.5 s, and the typical gap is near 0.5 s. (Lower
    # bounds only: a slow machine can stretch the gaps, it cannot shrink them.)
    gaps = sorted(b - a for a, b in zip(arrivals, arrivals[1:], strict=False))
    assert arrivals[-1] - arrivals[0] >= 2.0, arrivals
    assert gaps[len(gaps) // 2] >= 0.3, arrivals
