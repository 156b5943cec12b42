"""The command a person meets first: help, version, MLServer's ``start``, and the day-one
mistakes (a busy port, a folder without models) as one clear line."""

from __future__ import annotations

import pathlib
import re
import socket
import subprocess
import sys

import pytest

from streamwise import __version__
from tests.support import TESTS, free_port

ROOT = TESTS.parent


def streamwise(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "src", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_no_command_prints_help() -> None:
    done = streamwise()
    assert done.returncode == 0
    assert "usage: streamwise" in done.stdout and "serve (start)" in done.stdout


def test_version() -> None:
    done = streamwise("--version")
    assert (done.returncode, done.stdout) == (0, f"streamwise {__version__}\n")


@pytest.mark.parametrize("setting", ["http_port", "grpc_port"])
def test_a_busy_port_is_one_line_naming_the_setting(setting: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        ports = {"http_port": free_port(), "grpc_port": free_port(), setting: busy}
        done = streamwise(
            "serve", "--http-port", str(ports["http_port"]), "--grpc-port", str(ports["grpc_port"])
        )
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()[-1:]
    assert line.startswith(f"streamwise: {setting} {busy} on 127.0.0.1: address already in use")
    assert "Traceback" not in done.stderr
    assert f"--{setting.replace('_', '-')}" in line


def first_line_with(marker: str, command: str, folder: pathlib.Path) -> str:
    """Serve ``folder`` with ``command`` on free ports; its first log line holding
    ``marker``. The server is stopped (SIGTERM) and must exit 0."""
    argv = [sys.executable, "-m", "src", command, str(folder),
            "--http-port", str(free_port()), "--grpc-port", str(free_port())]  # fmt: skip
    server = subprocess.Popen(argv, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stderr is not None
        for line in server.stderr:
            if marker in line:
                return line
        raise AssertionError(f"no line with {marker!r}")
    finally:
        server.terminate()
        server.communicate(timeout=15)
        assert server.returncode == 0


def test_a_folder_without_models_is_served_with_a_warning_naming_it(
    tmp_path: pathlib.Path,
) -> None:
    line = first_line_with("WARNING", "serve", tmp_path)
    assert f"no model in {tmp_path.resolve()}" in line and "model-settings.json" in line


def test_mlservers_start_command_serves() -> None:
    """MLServer's documents say ``mlserver start .``: ``streamwise start`` is ``serve``."""
    line = first_line_with("serving", "start", TESTS / "document")
    assert "serving 1 model version(s) ready, 0 failed" in line


def test_the_summary_counts_models_that_failed() -> None:
    """tests/models holds one model whose weights are missing (broken-load); the others
    load, those importing ``tests.support.probe`` included (``python -m src`` from the
    repository root has the root on ``sys.path``)."""
    line = first_line_with("serving", "serve", TESTS / "models")
    ready, failed = re.search(r"(\d+) model version\(s\) ready, (\d+) failed", line).groups()  # type: ignore[union-attr]
    assert (int(ready), int(failed)) == (len(list((TESTS / "models").iterdir())) - 1, 1)
