"""``serve()``: one nursery holding the asyncio bridge, Hypercorn and the models.

::

    serve(settings)                          cancel it to stop everything
    └── asyncio loop (trio-asyncio)          for MLServer-style asyncio models, and grpclib
        ├── grpclib Server (on the loop)     gRPC; each handler crosses into trio once
        └── nursery
            ├── hypercorn.trio.serve(app)    REST + SSE; request tasks live under it
            └── (loading the models, then task_status.started(ServerInfo))
        finally: unload every model (shielded, bounded), after both transports stopped

Embed it in a trio program with ``info = await nursery.start(streamwise.serve, settings)``:
it returns once the sockets are bound and the models are loaded (a model that fails to
load is FAILED, with its reason, and does not stop the others).
"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from dataclasses import dataclass

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from . import _bridge
from .registry import ModelRegistry
from .runtime.dataplane import DataPlane
from .settings import Settings, find_model_settings

__all__ = ["serve", "ServerInfo"]

log = logging.getLogger(__name__)

UNLOAD_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ServerInfo:
    """What ``nursery.start(serve, ...)`` returns: where the server listens, and its state."""

    host: str
    http_port: int
    grpc_port: int | None
    """None when gRPC is switched off (``grpc_enabled``)."""
    dataplane: DataPlane

    @property
    def http_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.http_port}"


def _hypercorn_config(settings: Settings) -> HypercornConfig:
    config = HypercornConfig()
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    config.bind = [f"{host}:{settings.http_port}"]
    config.root_path = settings.root_path
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    return config


def _bound_port(binds: list[str]) -> int:
    return int(binds[0].rsplit(":", 1)[1])


async def serve(
    settings: Settings,
    *,
    task_status: trio.TaskStatus[ServerInfo] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``settings.model_repository_root`` until cancelled."""
    from .rest import create_app

    registry = ModelRegistry(find_model_settings(settings.model_repository_root))
    dataplane = DataPlane(settings, registry)
    app = create_app(dataplane)
    for name in ("parallel_workers", "gzip_enabled", "metrics_endpoint"):
        if getattr(settings, name):
            log.warning(
                "setting %s=%r is accepted but not acted upon yet", name, getattr(settings, name)
            )

    async with _bridge.open_loop():
        try:
            # Both transports stop (gRPC server closed, Hypercorn's nursery cancelled)
            # before the models are unloaded in the finally below.
            async with AsyncExitStack() as stack, trio.open_nursery() as nursery:
                grpc_port = None
                if settings.grpc_enabled:
                    from .grpc.server import open_grpc_server  # grpclib only when gRPC is on

                    grpc_port = await stack.enter_async_context(open_grpc_server(dataplane))
                binds = await nursery.start(hypercorn_serve, app, _hypercorn_config(settings))
                info = ServerInfo(settings.host, _bound_port(binds), grpc_port, dataplane)
                if settings.load_models_at_startup:
                    await registry.load_all()
                dataplane.started.set()
                log.info(
                    "streamwise %s serving %d model version(s) on %s, gRPC on port %s",
                    settings.version,
                    len(registry.slots()),
                    info.http_url,
                    grpc_port,
                )
                task_status.started(info)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(UNLOAD_TIMEOUT_S):
                await registry.unload_all()
