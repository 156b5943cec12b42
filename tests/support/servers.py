"""Servers for tests and scripts: a free port, and ``python -m src serve`` in a subprocess.
(The in-process server is conftest.py's ``start_server`` fixture.)"""

from __future__ import annotations

import pathlib
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager

import httpx

from streamwise import ServerInfo

from .paths import ROOT

StartServer = Callable[..., Awaitable[ServerInfo]]
"""The type of conftest.py's ``start_server`` fixture."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ``python -m src`` (src/__main__.py), with modules made unimportable first
_HIDING = (
    "import sys; sys.path.insert(0, 'src'); sys.modules.update(dict.fromkeys({hide!r})); "
    "from streamwise.cli import main; sys.exit(main())"
)


@contextmanager
def served_in_subprocess(
    repository: pathlib.Path | None, *, hide: Sequence[str] = ()
) -> Iterator[tuple[int, int]]:
    """``python -m src serve [REPOSITORY]`` on free ports, ready; (http_port, grpc_port).
    Stopped with SIGTERM at the end, and it must exit 0. ``hide``: modules that the server
    cannot import, as if they were not installed (``import`` raises ImportError)."""
    http_port, grpc_port = free_port(), free_port()
    python = ["-c", _HIDING.format(hide=list(hide))] if hide else ["-m", "src"]
    argv = [
        sys.executable,
        *python,
        "serve",
        "--http-port",
        str(http_port),
        "--grpc-port",
        str(grpc_port),
        "--metrics-port",
        "0",
    ] + ([str(repository)] if repository else [])
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, "server exited early"
            assert time.monotonic() < deadline, "server did not become ready"
            try:
                r = httpx.get(f"http://127.0.0.1:{http_port}/v2/health/ready")
                if r.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        yield http_port, grpc_port
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=15)
        assert proc.returncode == 0, stderr.decode()
