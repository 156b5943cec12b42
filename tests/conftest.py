from __future__ import annotations

import os
import pathlib
from typing import Any

import httpx
import pytest
import trio
from hypothesis import settings as hypothesis_settings

from streamwise import ServerInfo, load_settings, serve
from tests.support import DEMO, TEST_MODELS, StartServer

# No per-example deadline: these machines are noisy, and a timing is not what these
# properties check. In CI (CI set) the examples are the same every run: a change lands or
# not on what it changed, not on the draw; a developer's runs draw new ones, and
# `python -m scripts.soak_fuzz` explores far more.
hypothesis_settings.register_profile(
    "streamwise", deadline=None, derandomize=bool(os.environ.get("CI"))
)
hypothesis_settings.load_profile("streamwise")

# The servers that tests start in subprocesses (which inherit this environment) put their
# metrics on a free port, not all on 8082 (in-process ones: start_server's metrics_port).
os.environ.setdefault("STREAMWISE_METRICS_PORT", "0")


@pytest.fixture
def start_server(nursery: trio.Nursery) -> StartServer:
    """Start an in-process server on a free port; the test's nursery stops it."""

    async def start(repository: pathlib.Path = DEMO, **overrides: Any) -> ServerInfo:
        overrides.setdefault("http_port", 0)
        overrides.setdefault("grpc_port", 0)
        overrides.setdefault("metrics_port", 0)
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
