"""Starting and stopping the grpclib server on the bridge's asyncio loop."""

from __future__ import annotations

import asyncio
import errno
import socket
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pydantic
import trio
from grpclib import GRPCError, Status
from grpclib.config import Configuration
from grpclib.const import Handler
from grpclib.server import Server

from .._bridge import AsyncioLoop
from ..errors import PortInUse
from ..protocol import auth
from ..runtime.dataplane import DataPlane
from .codec import LimitedCodec
from .http2 import Http2Limits, connection_for
from .service import InferenceService, RepositoryService

__all__ = ["open_grpc_server", "GrpcServer", "DEFAULT_MAX_MESSAGE_BYTES"]

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
CLOSE_TIMEOUT_S = 5.0


class _Server(Server):
    """grpclib's server, which also closes the connections still open when it stops.

    grpclib's ``close()`` cancels the calls but leaves each connection to its client, and
    Python 3.11's asyncio server does not close accepted connections either: an
    application embedding ``serve()`` would keep those sockets until it exits (and
    garbage-collect them with a ResourceWarning). ``_protocol_factory`` is grpclib's
    hook for each new connection; its connections get our HTTP/2 limits (``http2.py``)."""

    def __init__(self, *args: Any, limits: Http2Limits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = limits
        self._protocols: weakref.WeakSet[Any] = weakref.WeakSet()

    def _protocol_factory(self) -> Any:
        protocol = connection_for(self, self._limits)
        self._protocols.add(protocol)
        return protocol

    async def close_connections(self) -> None:
        for protocol in list(self._protocols):
            connection = getattr(protocol, "connection", None)  # set once connected
            if connection is not None:
                connection.close()
        await asyncio.sleep(0)  # the transports finish closing in callbacks of the loop


class _Authenticated:
    """A service whose handlers (but health's) first check the bearer token."""

    def __init__(self, service: Any, token: pydantic.SecretStr) -> None:
        self._service = service
        self._token = token

    def __mapping__(self) -> dict[str, Handler]:
        mapping: dict[str, Handler] = self._service.__mapping__()
        return {
            path: handler
            if path.rsplit("/", 1)[-1] in auth.OPEN_GRPC_METHODS
            else handler._replace(func=self._checked(handler.func))
            for path, handler in mapping.items()
        }

    def _checked(self, func: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
        async def handler(stream: Any) -> None:
            metadata = stream.metadata or {}
            if not auth.bearer_ok(metadata.get("authorization"), self._token):
                raise GRPCError(Status.UNAUTHENTICATED, auth.MESSAGE)
            await func(stream)

        return handler


async def _start(
    dataplane: DataPlane,
    aio: AsyncioLoop,
    host: str,
    port: int,
    limit: int,
    sock: socket.socket | None,
) -> tuple[_Server, int]:
    """asyncio side: build and start the server; the port it is bound to."""
    codec = LimitedCodec(limit)
    services: list[Any] = [
        InferenceService(dataplane, aio, codec),
        RepositoryService(dataplane, aio),
    ]
    token = dataplane.settings.auth_token
    if token is not None:
        services = [_Authenticated(service, token) for service in services]
    settings = dataplane.settings
    limits = Http2Limits(
        settings.grpc_max_concurrent_streams,
        settings.grpc_max_connections,
        settings.grpc_max_connection_idle_s,
        settings.grpc_max_connection_age_s,
        settings.grpc_max_connection_age_grace_s,
    )
    every = settings.grpc_keepalive_time_s
    keepalive = Configuration(
        _keepalive_time=every,
        _keepalive_timeout=settings.grpc_keepalive_timeout_s,
        # grpclib's defaults stop pinging after two pings without data, and never ping
        # more often than every 300 s: a slow stream (no data for minutes) would not be
        # watched, and a keepalive time under 300 s would not be kept
        _http2_max_pings_without_data=0,
        _http2_min_sent_ping_interval_without_data=every if every is not None else 300.0,
    )
    server = _Server(services, codec=codec, limits=limits, config=keepalive)
    try:
        if sock is None:
            await server.start(host, port)
        else:  # a worker's: the listening socket all workers share
            await server.start(sock=sock)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse("grpc_port", host, port) from None
        raise
    asyncio_server: Any = server._server  # grpclib keeps the asyncio server; ask it the port
    sockets = asyncio_server.sockets if asyncio_server else ()
    return server, sockets[0].getsockname()[1] if sockets else port


async def _stop(server: _Server) -> None:
    server.close()
    await server.wait_closed()
    await server.close_connections()


async def _stop_accepting(server: Server) -> None:
    listener: Any = server._server  # the asyncio server: closing it stops accepting only
    if listener is not None:
        listener.close()


@dataclass(frozen=True)
class GrpcServer:
    port: int
    _server: Server
    _aio: AsyncioLoop

    async def stop_accepting(self) -> None:
        """No new connections; open ones go on (the data plane refuses their new calls
        while draining: grpclib sends no GOAWAY)."""
        await self._aio.run(_stop_accepting, self._server)


@asynccontextmanager
async def open_grpc_server(
    dataplane: DataPlane, aio: AsyncioLoop, sock: socket.socket | None = None
) -> AsyncIterator[GrpcServer]:
    """Serve gRPC on ``aio``'s loop for the duration of the block (on ``sock`` if given, a
    listening socket, else on ``grpc_port``). Leaving the block closes the server,
    cancelling any call still running."""
    settings = dataplane.settings
    limit = settings.grpc_max_message_length or DEFAULT_MAX_MESSAGE_BYTES
    server, port = await aio.run(
        _start, dataplane, aio, settings.host, settings.grpc_port, limit, sock
    )
    try:
        yield GrpcServer(port, server, aio)
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT_S):
            await aio.run(_stop, server)
