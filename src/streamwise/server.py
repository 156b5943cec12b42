"""``serve()``: one nursery holding the asyncio bridge, Hypercorn and the models.

::

    serve(settings)                          cancel it to stop at once;
    │                                        info.shutdown() to drain, then it returns
    └── asyncio loop (a trio task runs it)   MLServer-style asyncio models, and grpclib
        ├── portal nursery                   trio tasks of gRPC handlers (one per call)
        ├── grpclib Server (on the loop)     gRPC; each handler crosses into trio once
        ├── models' nursery                  batchers of the models that batch (batching.py)
        └── nursery
            ├── hypercorn.trio.serve(app)    REST + SSE; request tasks live under it
            ├── watchdog                     logs an event loop blocked too long
            └── (loading the models, task_status.started(ServerInfo), then waiting
                 for info.shutdown(): drain, see _drain)
        finally: unload every model (shielded, bounded), after both transports stopped

Embed it in a trio program with ``info = await nursery.start(streamwise.serve, settings)``:
it returns once the sockets are bound and the models are loaded (a model that fails to
load is FAILED, with its reason, and does not stop the others).
"""

from __future__ import annotations

import errno
import gc
import logging
import pathlib
import socket
import sys
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from . import _bridge, watchdog
from .errors import PortInUse, ServerShuttingDown
from .registry import ModelRegistry, ModelState
from .runtime import Backends
from .runtime.dataplane import DataPlane
from .settings import Settings, find_model_settings

if TYPE_CHECKING:
    from .grpc.server import GrpcServer
    from .runtime.dataplane import Peers

__all__ = ["serve", "ServerInfo"]

log = logging.getLogger(__name__)

UNLOAD_TIMEOUT_S = 10.0
END_TIMEOUT_S = 2.0
"""After the grace period: how long the calls ended then get to tell their clients."""


@dataclass(frozen=True)
class ServerInfo:
    """What ``nursery.start(serve, ...)`` returns: where the server listens, and its state."""

    host: str
    http_port: int
    grpc_port: int | None
    """None when gRPC is switched off (``grpc_enabled``)."""
    dataplane: DataPlane
    metrics_port: int | None = None
    """The metrics listener's port; None when metrics are off (``metrics_endpoint`` null)
    or served by a supervisor (``parallel_workers``)."""

    def shutdown(self) -> None:
        """Start a graceful shutdown: stop accepting, let calls in flight finish within
        ``graceful_timeout``, end the rest with "server shutting down"; ``serve()``
        returns once done. (Cancelling ``serve()`` instead stops it at once.)"""
        self.dataplane.shutdown_requested.set()

    @property
    def shutting_down(self) -> bool:
        return self.dataplane.shutdown_requested.is_set()

    @property
    def http_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.http_port}"


ACCEPTING_SOCKETS = 8
"""Listening sockets on the REST port, where the system spreads new connections (Linux)."""


def _listening_sockets(host: str, port: int) -> list[socket.socket]:
    """The REST port's listening sockets. trio accepts one connection per scheduling round
    and listening socket: a hundred clients arriving while a hundred streams run would
    each wait rounds for their turn. So on Linux there are :data:`ACCEPTING_SOCKETS`
    sockets on the one port (``SO_REUSEPORT``, the system spreads new connections across
    them), each with its own accept task. The port is first bound alone, to prove it free:
    a second server on a port in use fails with "address already in use", as it would
    without the option, instead of silently sharing it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    shared = sys.platform == "linux" and hasattr(socket, "SO_REUSEPORT")
    for attempt in range(3):
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
            if not shared:
                return [_detached_copy(probe)]
            free = probe.getsockname()[1]
        try:
            return _bind_group(family, host, free, ACCEPTING_SOCKETS)
        except OSError as exc:  # the probe's port was taken in between: try another
            if exc.errno != errno.EADDRINUSE or port != 0 or attempt == 2:
                raise
    raise AssertionError("unreachable")


def _detached_copy(sock: socket.socket) -> socket.socket:
    return socket.socket(sock.family, sock.type, fileno=sock.detach())


def _bind_group(family: int, host: str, port: int, count: int) -> list[socket.socket]:
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _hypercorn_config(settings: Settings, sockets: list[socket.socket]) -> HypercornConfig:
    config = HypercornConfig()
    config.bind = [f"fd://{sock.fileno()}" for sock in sockets]
    config.root_path = settings.root_path
    config.accesslog = None
    config.keep_alive_timeout = settings.keep_alive_timeout_s
    config.errorlog = logging.getLogger("hypercorn.error")
    if not any(isinstance(f, _RunningOnOnce) for f in config.errorlog.filters):
        config.errorlog.addFilter(_RunningOnOnce())
    # our own drain decides when calls end (_drain); this is Hypercorn's hard backstop
    config.graceful_timeout = settings.graceful_timeout + END_TIMEOUT_S + 1.0
    return config


async def _serve_http(
    app: object,
    config: HypercornConfig,
    stop: trio.Event,
    stopped: trio.Event,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    try:
        await hypercorn_serve(app, config, shutdown_trigger=stop.wait, task_status=task_status)  # type: ignore[arg-type]
    finally:
        stopped.set()


async def _drain(
    dataplane: DataPlane, grpc_server: GrpcServer | None, stop_http: trio.Event
) -> None:
    """Graceful shutdown: refuse new work on both transports at once, give the calls in
    flight ``graceful_timeout`` to finish, then end the rest with "server shutting down"
    (SSE ``event: error``, gRPC UNAVAILABLE, unary 503)."""
    grace = dataplane.settings.graceful_timeout
    log.info("shutting down: %d call(s) in flight, %g s to finish", dataplane.in_flight, grace)
    dataplane.start_draining()  # new calls: 503 / UNAVAILABLE, also on open connections
    stop_http.set()  # Hypercorn stops accepting
    if grpc_server is not None:
        await grpc_server.stop_accepting()
    with trio.move_on_after(grace):
        await dataplane.wait_idle()
    if dataplane.in_flight:
        ended = dataplane.end_all(ServerShuttingDown())
        log.warning("grace period over: ended %d call(s)", ended)
        with trio.move_on_after(END_TIMEOUT_S):
            await dataplane.wait_idle()
    log.info("drained")


GC_YOUNG_THRESHOLD = 20_000
"""Allocations between two collections of the youngest generation while serving (Python:
700). With a thousand open streams, Python's default spent a third of the server's CPU
collecting (docs/performance.md, "Thousands of streams"); the garbage of a request is freed
by reference counting all the same."""


_gc_saved: list[tuple[int, int, int]] = []
"""The collector's thresholds before the first of the servers serving with ``gc_tuning``
tuned it: one entry per such server (several may serve in one process); the last one out
restores them."""


@contextmanager
def _tuned_gc(settings: Settings) -> Iterator[None]:
    """``settings.gc_tuning`` for the block; the collector as it was once no server uses it."""
    if not settings.gc_tuning:
        yield
        return
    if not _gc_saved:
        original = gc.get_threshold()
        gc.collect()
        gc.freeze()  # startup's objects: scanned by no collection from here on
        gc.set_threshold(max(original[0], GC_YOUNG_THRESHOLD), *original[1:])
    else:
        original = _gc_saved[0]
    _gc_saved.append(original)
    try:
        yield
    finally:
        _gc_saved.pop()
        if not _gc_saved:
            gc.set_threshold(*original)
            gc.unfreeze()


class _RunningOnOnce(logging.Filter):
    """Hypercorn says "Running on <url>" once per listening socket: the REST port has
    several (``ACCEPTING_SOCKETS``); once per address is enough."""

    def __init__(self) -> None:
        super().__init__()
        self._said: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.startswith("Running on"):
            return True
        if message in self._said:
            return False
        self._said.add(message)
        return True


def _log_started(
    settings: Settings, registry: ModelRegistry, http_url: str, grpc_port: int | None
) -> None:
    """One line that says what is served (each failure was logged with its reason as it
    happened), and a warning for a folder with no model in it."""
    slots = registry.slots()
    ready = [s for s in slots if s.state is ModelState.READY]
    failed = [s for s in slots if s.state is ModelState.FAILED]
    log.info(
        "streamwise %s serving %d model version(s) ready, %d failed, %d not loaded, on %s, "
        "gRPC on port %s",
        settings.version,
        len(ready),
        len(failed),
        len(slots) - len(ready) - len(failed),
        http_url,
        grpc_port,
    )
    if not slots:
        log.warning(
            "no model in %s: a model is a folder below it holding a model-settings.json "
            "(and its code); serving none",
            pathlib.Path(settings.model_repository_root).resolve(),
        )


def _bound_port(binds: list[str]) -> int:
    return int(binds[0].rsplit(":", 1)[1])


def rest_sockets(settings: Settings) -> list[socket.socket]:
    """The REST port's listening sockets (:func:`_listening_sockets`); a port in use is
    :class:`PortInUse`."""
    try:
        return _listening_sockets(settings.host, settings.http_port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse("http_port", settings.host, settings.http_port) from None
        raise


async def serve(
    settings: Settings,
    *,
    task_status: trio.TaskStatus[ServerInfo] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``settings.model_repository_root`` until cancelled (one process: the
    ``parallel_workers`` of the command line are :mod:`streamwise.workers`)."""
    if settings.parallel_workers not in (None, 0, 1):
        log.warning(
            "parallel_workers=%r is for `streamwise serve`: an embedded serve() is one process",
            settings.parallel_workers,
        )
    await serve_on(settings, rest_sockets(settings), task_status=task_status)


async def serve_on(
    settings: Settings,
    sockets: list[socket.socket],
    grpc_socket: socket.socket | None = None,
    *,
    peers: Peers | None = None,
    metrics_listener: bool = True,
    task_status: trio.TaskStatus[ServerInfo] = trio.TASK_STATUS_IGNORED,
) -> None:
    """:func:`serve` on listening sockets bound already (a worker's, shared with the
    others): REST on ``sockets``, gRPC on ``grpc_socket`` or on its own port; ``peers``
    carries the repository API's loads and unloads to every worker; ``metrics_listener``
    False: the metrics are recorded, and served by someone else (a worker's supervisor)."""
    from .rest import _hypercorn_guard

    _hypercorn_guard.install()
    try:
        await _serve(settings, sockets, grpc_socket, peers, metrics_listener, task_status)
    finally:
        for sock in sockets:
            sock.close()  # unless Hypercorn took them (detached): then a no-op


async def _serve(
    settings: Settings,
    sockets: list[socket.socket],
    grpc_socket: socket.socket | None,
    peers: Peers | None,
    metrics_listener: bool,
    task_status: trio.TaskStatus[ServerInfo],
) -> None:
    from .rest import WriteTimeout, create_app
    from .rest.access import AccessLog
    from .rest.gzip import GZip
    from .rest.metrics import RestMetrics

    registry = ModelRegistry(find_model_settings(settings.model_repository_root))

    async with _bridge.open_loop() as aio:
        dataplane = DataPlane(settings, registry, Backends.on(aio), peers)
        rest_app: object = create_app(dataplane)
        if settings.gzip_enabled:
            rest_app = GZip(rest_app)
        if dataplane.metrics is not None:
            rest_app = RestMetrics(
                rest_app,
                settings.metrics_rest_server_prefix,
                settings.root_path,
                settings.openai_route_prefix if settings.openai_enabled else None,
            )
        app = WriteTimeout(rest_app, settings.write_timeout_s)
        logged = AccessLog(app, settings.root_path) if settings.access_log else app
        try:
            # Both transports stop (gRPC server closed, Hypercorn's nursery cancelled)
            # before the models are unloaded in the finally below.
            async with (
                dataplane.loader.serving(),  # the models' nursery: batchers, until the end
                AsyncExitStack() as stack,
                trio.open_nursery() as nursery,
            ):
                grpc_server = None
                if settings.grpc_enabled:
                    from .grpc.server import open_grpc_server  # grpclib only when gRPC is on

                    grpc_server = await stack.enter_async_context(
                        open_grpc_server(dataplane, aio, grpc_socket)
                    )
                grpc_port = grpc_server.port if grpc_server else None
                metrics_port = None
                if settings.metrics_endpoint and metrics_listener:
                    from .metrics import serve_metrics

                    metrics_port = await nursery.start(
                        serve_metrics, settings.host, settings.metrics_port,
                        settings.metrics_endpoint,
                    )  # fmt: skip
                stop_http, http_stopped = trio.Event(), trio.Event()
                config = _hypercorn_config(settings, sockets)
                binds = await nursery.start(
                    partial(_serve_http, logged, config, stop_http, http_stopped)
                )
                for sock in sockets:  # Hypercorn has them now: it listens, it closes them
                    sock.detach()
                await nursery.start(app.watch)
                if settings.event_loop_watchdog_s is not None:
                    await nursery.start(watchdog.run, settings.event_loop_watchdog_s)
                info = ServerInfo(
                    settings.host, _bound_port(binds), grpc_port, dataplane, metrics_port
                )
                if settings.load_models_at_startup:
                    await dataplane.loader.load_all()
                dataplane.started.set()
                _log_started(settings, registry, info.http_url, grpc_port)
                with _tuned_gc(settings):
                    task_status.started(info)
                    await dataplane.shutdown_requested.wait()
                    await _drain(dataplane, grpc_server, stop_http)
                    with trio.move_on_after(END_TIMEOUT_S):  # the last writes of ended calls
                        await http_stopped.wait()
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(UNLOAD_TIMEOUT_S):
                await dataplane.loader.unload_all()
