"""Starting and stopping the grpclib server on the bridge's asyncio loop."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pydantic
import trio
from grpclib import GRPCError, Status
from grpclib.const import Handler
from grpclib.encoding.proto import ProtoCodec
from grpclib.server import Server

from .. import _bridge
from ..errors import PayloadTooLarge
from ..protocol import auth
from ..runtime.dataplane import DataPlane
from .convert import parse_message
from .service import InferenceService, RepositoryService

__all__ = ["open_grpc_server", "GrpcServer", "DEFAULT_MAX_MESSAGE_BYTES"]

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
CLOSE_TIMEOUT_S = 5.0


class LimitedCodec(ProtoCodec):
    """grpclib has no message size limit of its own: ours, both ways.

    Decoding raises our errors (:class:`PayloadTooLarge`, :class:`InvalidRequest`), not
    ``GRPCError``: on a bidi stream a later message is decoded inside the model's request
    iterator, and only our errors come out of the pipeline as themselves (anything else
    is the model failing, INTERNAL). ``_grpc_errors`` maps them in either place.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def _over(self, size: int, what: str) -> str | None:
        if size <= self.limit:
            return None
        return (
            f"{what} of {size} bytes is over the limit of {self.limit} bytes "
            "(grpc_max_message_length)"
        )

    def decode(self, data: bytes, message_type: Any) -> Any:
        if (problem := self._over(len(data), "request message")) is not None:
            raise PayloadTooLarge(problem)
        return parse_message(data, message_type)

    def encode(self, message: Any, message_type: Any) -> bytes:
        data = super().encode(message, message_type)
        if (problem := self._over(len(data), "response message")) is not None:
            raise GRPCError(Status.RESOURCE_EXHAUSTED, problem)
        return data


class _Server(Server):
    """grpclib's server, which also closes the connections still open when it stops.

    grpclib's ``close()`` cancels the calls but leaves each connection to its client, and
    Python 3.11's asyncio server does not close accepted connections either: an
    application embedding ``serve()`` would keep those sockets until it exits (and
    garbage-collect them with a ResourceWarning). ``_protocol_factory`` is grpclib's
    hook for each new connection."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._protocols: weakref.WeakSet[Any] = weakref.WeakSet()

    def _protocol_factory(self) -> Any:
        protocol = super()._protocol_factory()
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


async def _start(dataplane: DataPlane, host: str, port: int, limit: int) -> tuple[_Server, int]:
    """asyncio side: build and start the server; the port it is bound to."""
    services: list[Any] = [InferenceService(dataplane), RepositoryService(dataplane)]
    token = dataplane.settings.auth_token
    if token is not None:
        services = [_Authenticated(service, token) for service in services]
    server = _Server(services, codec=LimitedCodec(limit))
    await server.start(host, port)
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

    async def stop_accepting(self) -> None:
        """No new connections; open ones go on (the data plane refuses their new calls
        while draining: grpclib sends no GOAWAY)."""
        await _bridge.to_asyncio(_stop_accepting)(self._server)


@asynccontextmanager
async def open_grpc_server(dataplane: DataPlane) -> AsyncIterator[GrpcServer]:
    """Serve gRPC for the duration of the block (inside the bridge's loop). Leaving the
    block closes the server, cancelling any call still running."""
    settings = dataplane.settings
    limit = settings.grpc_max_message_length or DEFAULT_MAX_MESSAGE_BYTES
    server, port = await _bridge.to_asyncio(_start)(
        dataplane, settings.host, settings.grpc_port, limit
    )
    try:
        yield GrpcServer(port, server)
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT_S):
            await _bridge.to_asyncio(_stop)(server)
