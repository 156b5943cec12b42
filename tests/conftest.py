from __future__ import annotations

import pathlib
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import trio
from hypothesis import settings as hypothesis_settings

from streamwise import ServerInfo, load_settings, serve

# No per-example deadline: these machines are noisy, and a timing is not what these
# properties check.
hypothesis_settings.register_profile("streamwise", deadline=None)
hypothesis_settings.load_profile("streamwise")

TESTS = pathlib.Path(__file__).parent
sys.path.insert(0, str(TESTS))  # test models import `probe`

DEMO = TESTS.parent / "src" / "streamwise" / "demo"
TEST_MODELS = TESTS / "models"
DOCUMENT = TESTS / "document"

StartServer = Callable[..., Awaitable[ServerInfo]]


@pytest.fixture
def start_server(nursery: trio.Nursery) -> StartServer:
    """Start an in-process server on a free port; the test's nursery stops it."""

    async def start(repository: pathlib.Path = DEMO, **overrides: Any) -> ServerInfo:
        overrides.setdefault("http_port", 0)
        overrides.setdefault("grpc_port", 0)
        # a full collection and a freeze of pytest's whole heap per server: not in tests
        # (test_shutdown.py checks the tuning itself)
        overrides.setdefault("gc_tuning", False)
        settings = load_settings(repository, overrides=overrides, environ={})
        return await nursery.start(serve, settings)

    return start


@pytest.fixture
async def demo(start_server: StartServer) -> ServerInfo:
    return await start_server(DEMO)


@pytest.fixture
async def models(start_server: StartServer) -> ServerInfo:
    return await start_server(TEST_MODELS)


@pytest.fixture
async def client() -> Any:
    async with httpx.AsyncClient(timeout=30) as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def served_in_subprocess(repository: pathlib.Path | None) -> Iterator[tuple[int, int]]:
    """``python -m src serve [REPOSITORY]`` on free ports, ready; (http_port, grpc_port).
    Stopped with SIGTERM at the end, and it must exit 0."""
    http_port, grpc_port = free_port(), free_port()
    argv = [
        sys.executable,
        "-m",
        "src",
        "serve",
        "--http-port",
        str(http_port),
        "--grpc-port",
        str(grpc_port),
    ] + ([str(repository)] if repository else [])
    proc = subprocess.Popen(
        argv, cwd=TESTS.parent, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
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
