from __future__ import annotations

import pathlib
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
import trio

from streamwise import ServerInfo, load_settings, serve

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
