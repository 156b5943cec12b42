"""``inference.GRPCInferenceService`` (and MLServer's ``ModelRepositoryService``) on grpclib.

grpclib calls our handlers on the bridge's asyncio loop. A handler that calls a model
crosses into trio once (``AsyncioLoop.to_trio``) and works there, through the same
``DataPlane`` as REST: the model call is owned by that trio task, so a client cancel, a
lost connection or the deadline (grpclib cancels the handler) cancels the model. A stream
is written back on the asyncio loop, a batch of responses at a time as one HTTP/2 DATA
frame; an asyncio model's responses reach it without crossing into trio at all.

Errors are mapped once, in :func:`_grpc_errors`: our error tree to its gRPC status, the
message kept.

``ModelStreamInfer`` is two protocols on one method path (``grpc_stream_wrapper``):
MLServer's (:meth:`InferenceService.model_stream_infer`: a stream's requests are one model
call, its responses bare ``ModelInferResponse``) and Triton's
(:meth:`InferenceService.triton_stream_infer`: each request its own call, each response a
``ModelStreamInferResponse``, a request's failure in its ``error_message``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from grpclib import GRPCError, Status
from grpclib.const import Cardinality, Handler
from grpclib.exceptions import StreamTerminatedError
from grpclib.server import Stream

from .._bridge import ASYNCIO, AsyncioLoop
from .._proto import inference as pb
from .._proto.inference import model_repository as repo_pb
from ..errors import ClientTooSlow, InvalidRequest, StreamwiseError, cut, show
from ..logs import Access, log_grpc
from ..protocol.model_config import streams
from ..registry import ModelState
from ..runtime import Requests
from ..runtime import Stream as ModelStream
from ..runtime.dataplane import Call, DataPlane
from ..types import InferenceRequest, Parameters
from .codec import LimitedCodec, recv
from .convert import parameters_to_proto, request_from_proto
from .encode import (
    TRITON_FINAL,
    TRITON_NOT_FINAL,
    encode_response,
    frame,
    triton_error,
    triton_item,
)

__all__ = ["InferenceService", "RepositoryService"]

log = logging.getLogger(__name__)

SERVICE = "/inference.GRPCInferenceService/"
REPOSITORY_SERVICE = "/inference.model_repository.ModelRepositoryService/"


MAX_STATUS_MESSAGE = 1000
"""Characters of a ``grpc-message``: it is an HTTP/2 trailer, HPACK-encoded by pure Python
(a 200 kB one stalls the server for seconds) and clients cap metadata at 8-16 KiB."""


def _grpc_errors(fn: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """Our errors -> GRPCError with the matching status, in one place."""

    @functools.wraps(fn)
    async def handler(*args: Any) -> None:
        try:
            await fn(*args)
        except StreamwiseError as exc:
            if exc.grpc_status == "INTERNAL":
                log.error("%s: %s", fn.__name__, exc)
            raise GRPCError(Status[exc.grpc_status], cut(str(exc), MAX_STATUS_MESSAGE)) from exc

    return handler


_ACCESS: dict[Stream[Any, Any], Access] = {}
"""The access records of the calls in progress (access logs on). The asyncio loop and
trio share one thread: the handlers note in it from either side."""


def _access_logged(mapping: dict[str, Handler], enabled: bool) -> dict[str, Handler]:
    """Every handler of ``mapping`` writing one access line when its call ends."""
    if not enabled:
        return mapping
    return {rpc: h._replace(func=_logged(rpc, h.func)) for rpc, h in mapping.items()}


def _logged(rpc: str, fn: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    async def handler(stream: Stream[Any, Any]) -> None:
        access = _ACCESS[stream] = Access()
        start = time.perf_counter()
        code, outcome = "OK", "completed"
        try:
            await fn(stream)
        except GRPCError as exc:
            code, outcome = exc.status.name, exc.message or exc.status.name
            raise
        except (asyncio.CancelledError, StreamTerminatedError):
            deadline = stream.deadline
            if deadline is not None and deadline.time_remaining() <= 0:
                code, outcome = "DEADLINE_EXCEEDED", "deadline exceeded"
            else:
                code, outcome = "CANCELLED", "client disconnect"
            raise
        except Exception as exc:
            code, outcome = "UNKNOWN", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            del _ACCESS[stream]
            if access.responses is not None:  # a stream
                access.responses = stream._messages_sent
                access.outcome = outcome
            peer = stream.peer.addr()
            where = f"{peer[0]}:{peer[1]}" if peer else "-"
            log_grpc(access, rpc, code, (time.perf_counter() - start) * 1000, where)

    return handler


async def _model_request(stream: Stream[Any, Any]) -> Any:
    """A unary call's request that names a model (``name``, ``version``), noted for its
    access line."""
    msg = await recv(stream)
    if msg is None:
        raise InvalidRequest("the call ended without its request message")
    _note(stream, msg.name)
    return msg


def _note(stream: Stream[Any, Any], model: str, request_id: str | None = None) -> None:
    """The model (and request id) of a call, for its access line."""
    access = _ACCESS.get(stream)
    if access is not None:
        access.model = model or None
        access.request_id = request_id or access.request_id


def _with_headers(request: InferenceRequest, metadata: Any) -> InferenceRequest:
    """Invocation metadata reaches the model as ``parameters.headers``, as in MLServer."""
    if metadata:
        headers = {k: v for k, v in metadata.items() if not k.startswith("grpc-")}
        if headers:
            if request.parameters is None:
                request.parameters = Parameters()
            request.parameters.headers = headers
    return request


def _trailing(response_params: Parameters | None) -> dict[str, str] | None:
    headers = response_params.headers if response_params else None
    return {str(k): str(v) for k, v in headers.items()} if headers else None


async def _send_batch(stream: Stream[Any, Any], messages: list[bytes]) -> None:
    """Encoded messages, as one DATA payload (grpclib's ``send_message`` writes a frame
    per message). Uses grpclib's stream internals, checked against grpclib 0.4.9
    (``tests/test_grpc.py`` streams through it)."""
    if not stream._send_initial_metadata_done:
        await stream.send_initial_metadata()
    await stream._stream.send_data(frame(messages))
    stream._messages_sent += len(messages)
    connection = stream._stream.connection
    connection.messages_sent += len(messages)
    connection.last_message_sent = time.monotonic()


async def _write(stream: Stream[Any, Any], messages: list[bytes], write_timeout: float) -> None:
    """On the asyncio loop: ``messages`` sent, or :class:`ClientTooSlow`."""
    try:
        async with asyncio.timeout(write_timeout):  # blocks when the client reads nothing
            await _send_batch(stream, messages)
    except TimeoutError:
        raise ClientTooSlow(
            f"client read nothing for {write_timeout:g} s (write_timeout_s)"
        ) from None


async def _forward(
    stream: Stream[Any, Any], items: ModelStream[bytes], write_timeout: float
) -> None:
    """On the asyncio loop: every batch of the model's stream as it comes."""
    while batch := await items.take(ASYNCIO):
        await _write(stream, batch, write_timeout)


async def _send_stream(
    stream: Stream[Any, Any], items: ModelStream[bytes], write_timeout: float
) -> None:
    """On the asyncio loop: every batch of the model's stream as it comes, then its
    failure (after the messages before it: never a clean end)."""
    await _forward(stream, items, write_timeout)
    if items.failure is not None:
        raise items.failure


EMPTY_FINAL = "triton_enable_empty_final_response"
"""The request parameter by which a Triton client (``async_stream_infer(...,
enable_empty_final_response=True)``) asks for an empty last response of a streaming
model's request: the mark that the request is complete. Taken out of the request: it is
the protocol's, not the model's."""


def _take_flag(request: InferenceRequest, name: str) -> bool:
    params = request.parameters
    extra = params.__pydantic_extra__ if params is not None else None
    return bool(extra) and extra.pop(name, None) is True  # type: ignore[union-attr]


class InferenceService:
    """The V2 gRPC data plane. ``__mapping__`` is what grpclib serves."""

    def __init__(self, dataplane: DataPlane, aio: AsyncioLoop, codec: LimitedCodec) -> None:
        self.dataplane = dataplane
        self.aio = aio
        self.codec = codec

    def __mapping__(self) -> dict[str, Handler]:
        unary = Cardinality.UNARY_UNARY
        mapping = {
            SERVICE + "ServerLive": Handler(self.server_live, unary, pb.ServerLiveRequest, pb.ServerLiveResponse),
            SERVICE + "ServerReady": Handler(self.server_ready, unary, pb.ServerReadyRequest, pb.ServerReadyResponse),
            SERVICE + "ModelReady": Handler(self.model_ready, unary, pb.ModelReadyRequest, pb.ModelReadyResponse),
            SERVICE + "ServerMetadata": Handler(self.server_metadata, unary, pb.ServerMetadataRequest, pb.ServerMetadataResponse),
            SERVICE + "ModelMetadata": Handler(self.model_metadata, unary, pb.ModelMetadataRequest, pb.ModelMetadataResponse),
            SERVICE + "ModelInfer": Handler(self.model_infer, unary, pb.ModelInferRequest, pb.ModelInferResponse),
            SERVICE + "ModelStreamInfer": self._stream_handler(),
            SERVICE + "ModelConfig": Handler(self.model_config, unary, pb.ModelConfigRequest, pb.ModelConfigResponse),
            **repository_mapping(SERVICE, pb, self.dataplane, self.aio),
        }  # fmt: skip
        return counted(_access_logged(mapping, self.dataplane.settings.access_log), self.dataplane)

    def _stream_handler(self) -> Handler:
        """``ModelStreamInfer``, as ``grpc_stream_wrapper`` says."""
        bidi = Cardinality.STREAM_STREAM
        if self.dataplane.settings.grpc_stream_wrapper == "triton":
            return Handler(self.triton_stream_infer, bidi, pb.ModelInferRequest, pb.ModelStreamInferResponse)  # fmt: skip
        return Handler(self.model_stream_infer, bidi, pb.ModelInferRequest, pb.ModelInferResponse)

    # -- health and metadata (no model call: answered on the asyncio side) --
    @_grpc_errors
    async def server_live(self, stream: Stream[Any, Any]) -> None:
        await recv(stream)
        await stream.send_message(pb.ServerLiveResponse(live=True))

    @_grpc_errors
    async def server_ready(self, stream: Stream[Any, Any]) -> None:
        await recv(stream)
        await stream.send_message(pb.ServerReadyResponse(ready=self.dataplane.ready()))

    @_grpc_errors
    async def model_ready(self, stream: Stream[Any, Any]) -> None:
        msg = await _model_request(stream)
        slot = self.dataplane.model_ready(msg.name, msg.version or None)
        await stream.send_message(pb.ModelReadyResponse(ready=slot.state is ModelState.READY))

    @_grpc_errors
    async def server_metadata(self, stream: Stream[Any, Any]) -> None:
        await recv(stream)
        meta = self.dataplane.server_metadata()
        await stream.send_message(
            pb.ServerMetadataResponse(
                name=meta.name, version=meta.version, extensions=meta.extensions
            )
        )

    @_grpc_errors
    async def model_metadata(self, stream: Stream[Any, Any]) -> None:
        msg = await _model_request(stream)
        meta = await self.aio.to_trio(self.dataplane.model_metadata, msg.name, msg.version or None)

        def tensor(t: Any) -> pb.ModelMetadataResponseTensorMetadata:
            return pb.ModelMetadataResponseTensorMetadata(
                name=t.name, datatype=t.datatype, shape=t.shape,
                parameters=parameters_to_proto(t.parameters),
            )  # fmt: skip

        await stream.send_message(
            pb.ModelMetadataResponse(
                name=meta.name,
                versions=meta.versions or [],
                platform=meta.platform,
                inputs=[tensor(t) for t in meta.inputs or ()],
                outputs=[tensor(t) for t in meta.outputs or ()],
                parameters=parameters_to_proto(meta.parameters),
            )
        )

    @_grpc_errors
    async def model_config(self, stream: Stream[Any, Any]) -> None:
        """Triton's ``ModelConfig`` (``protocol/model_config.py``)."""
        msg = await _model_request(stream)
        config = self.dataplane.model_config(msg.name, msg.version or None)

        def tensors(items: list[dict[str, Any]], kind: Any) -> list[Any]:
            return [kind(**{**t, "data_type": pb.DataType[t["data_type"]]}) for t in items]

        await stream.send_message(
            pb.ModelConfigResponse(
                config=pb.ModelConfig(
                    name=config["name"],
                    platform=config["platform"],
                    backend=config["backend"],
                    max_batch_size=config["max_batch_size"],
                    input=tensors(config["input"], pb.ModelInput),
                    output=tensors(config["output"], pb.ModelOutput),
                    model_transaction_policy=pb.ModelTransactionPolicy(
                        **config["model_transaction_policy"]
                    ),
                )
            )
        )

    # -- inference --
    @_grpc_errors
    async def model_infer(self, stream: Stream[Any, Any]) -> None:
        msg = await recv(stream)
        assert msg is not None
        _note(stream, msg.model_name, msg.id)
        reply, trailing = await self.aio.to_trio(self._infer, msg, stream)
        await stream.send_message(reply)  # already encoded: the codec passes bytes on
        await stream.send_trailing_metadata(metadata=trailing)

    async def _infer(
        self, msg: pb.ModelInferRequest, stream: Stream[Any, Any]
    ) -> tuple[bytes, Any]:
        request, raw = request_from_proto(msg, checked=True)
        call = self.dataplane.prepare(
            msg.model_name,
            msg.model_version or None,
            _with_headers(request, stream.metadata),
            "grpc",
            stream.metadata,
        )
        _note(stream, msg.model_name, call.request_id)
        response = await self.dataplane.infer(call)
        return encode_response(response, raw), _trailing(response.parameters)

    @_grpc_errors
    async def model_stream_infer(self, stream: Stream[Any, Any]) -> None:
        first = await recv(stream)
        if first is None:
            return  # an empty request stream: nothing asked, nothing answered, status OK
        _note(stream, first.model_name, first.id)
        if (access := _ACCESS.get(stream)) is not None:
            access.responses = 0  # a stream: its count and outcome in its line
        await self.aio.to_trio(self._stream, stream, first)

    async def _stream(self, stream: Stream[Any, Any], first: pb.ModelInferRequest) -> None:
        request, raw = request_from_proto(first, checked=True)
        call = self.dataplane.prepare(
            first.model_name,
            first.model_version or None,
            _with_headers(request, stream.metadata),
            "grpc",
            stream.metadata,
        )
        _note(stream, first.model_name, call.request_id)
        requests = Requests(call.request, self._more(call, first, stream), on="asyncio")

        checked = self.codec.checked_response

        def encode(response: Any) -> bytes:
            return checked(encode_response(response, raw))

        write_timeout = self.dataplane.settings.write_timeout_s
        async with self.dataplane.stream(call, encode, requests) as items:
            await self.aio.run(_send_stream, stream, items, write_timeout)

    @_grpc_errors
    async def triton_stream_infer(self, stream: Stream[Any, Any]) -> None:
        """Triton's ``ModelStreamInfer`` (``grpc_stream_wrapper: "triton"``)."""
        if (access := _ACCESS.get(stream)) is not None:
            access.responses = 0  # a stream: its count and outcome in its line
        await self.aio.to_trio(self._triton_stream, stream)

    async def _triton_stream(self, stream: Stream[Any, Any]) -> None:
        """Request after request until the client's side ends, each served to its end
        before the next is read: responses come in the order of the requests (Triton's
        order for a model that does not stream; any order is Triton's for one that does).
        A client wanting requests served at once opens a stream for each."""
        while (msg := await self.aio.run(recv, stream)) is not None:
            _note(stream, msg.model_name, msg.id)
            await self._triton_request(stream, msg)

    async def _triton_request(self, stream: Stream[Any, Any], msg: pb.ModelInferRequest) -> None:
        """One request of Triton's stream. Its refusal or its model's failure is sent as a
        ``ModelStreamInferResponse`` with ``error_message``, and the stream goes on; a
        failure of the stream itself (a client too slow to read, a cancel) ends it.

        A model that streams (Triton's *decoupled*, :func:`~..protocol.model_config.streams`)
        sends each response with ``triton_final_response: false``, and, when the request
        asked for it (``triton_enable_empty_final_response``), an empty last response with
        ``triton_final_response: true``, as Triton does; one that does not stream sends its
        one response with ``triton_final_response: true``."""
        write_timeout = self.dataplane.settings.write_timeout_s
        try:
            request, raw = request_from_proto(msg, checked=True)
            empty_final = _take_flag(request, EMPTY_FINAL)
            call = self.dataplane.prepare(
                msg.model_name,
                msg.model_version or None,
                _with_headers(request, stream.metadata),
                "grpc",
                stream.metadata,
            )
            decoupled = streams(type(call.slot.check_ready()))
        except StreamwiseError as exc:
            await self.aio.run(_write, stream, [triton_error(str(exc), msg.id)], write_timeout)
            return
        _note(stream, msg.model_name, call.request_id)
        version = call.slot.version or ""
        checked = self.codec.checked_response
        failure: StreamwiseError | None = None
        if not decoupled:
            try:
                response = await self.dataplane.infer(call)
                item = checked(triton_item(encode_response(response, raw) + TRITON_FINAL))
            except StreamwiseError as exc:
                failure = exc
            else:
                await self.aio.run(_write, stream, [item], write_timeout)
        else:

            def encode(response: Any) -> bytes:
                return checked(triton_item(encode_response(response, raw) + TRITON_NOT_FINAL))

            opened = False
            try:
                async with self.dataplane.stream(call, encode) as items:
                    opened = True
                    await self.aio.run(_forward, stream, items, write_timeout)
                failure = items.failure
            except StreamwiseError as exc:
                if opened:  # the stream's own failure: its client too slow
                    raise
                failure = exc  # refused before it started (over the limit, draining...)
        if failure is not None:
            last = triton_error(str(failure), call.request_id, msg.model_name, version, True)
        elif decoupled and empty_final:
            ids = pb.ModelInferResponse(
                model_name=msg.model_name, model_version=version, id=call.request_id
            )
            last = triton_item(bytes(ids) + TRITON_FINAL)
        else:
            return
        await self.aio.run(_write, stream, [last], write_timeout)

    def _more(
        self, call: Call, first: pb.ModelInferRequest, stream: Stream[Any, Any]
    ) -> Callable[[], Awaitable[InferenceRequest | None]]:
        """On the asyncio loop: the stream's next request, checked, or None at its end."""

        async def more() -> InferenceRequest | None:
            msg = await recv(stream)
            if msg is None:
                return None
            if (msg.model_name, msg.model_version) != (first.model_name, first.model_version):
                raise InvalidRequest(
                    f"one stream serves one model: got {show(msg.model_name)} after "
                    f"{show(first.model_name)}"
                )
            request, _ = request_from_proto(msg, checked=True)
            return self.dataplane.follow(call, _with_headers(request, stream.metadata))

        return more


def repository_mapping(
    prefix: str, messages: Any, dataplane: DataPlane, aio: AsyncioLoop
) -> dict[str, Handler]:
    """The three repository RPCs under ``prefix``, with ``messages``' types: the same
    handlers serve ``GRPCInferenceService`` and MLServer's ``ModelRepositoryService``."""

    @_grpc_errors
    async def index(stream: Stream[Any, Any]) -> None:
        msg = await recv(stream)
        assert msg is not None
        items = dataplane.repository_index(msg.ready or None)
        await stream.send_message(messages.RepositoryIndexResponse(models=[
            messages.RepositoryIndexResponseModelIndex(
                name=i.name, version=i.version or "", state=str(i.state), reason=i.reason
            ) for i in items
        ]))  # fmt: skip

    def change(action: Callable[[str], Awaitable[None]], reply: Any) -> Any:
        @_grpc_errors
        async def handler(stream: Stream[Any, Any]) -> None:
            msg = await recv(stream)
            assert msg is not None
            _note(stream, msg.model_name)
            await aio.to_trio(action, msg.model_name)
            await stream.send_message(reply())

        return handler

    unary = Cardinality.UNARY_UNARY
    m = messages
    return {
        prefix + "RepositoryIndex": Handler(index, unary, m.RepositoryIndexRequest, m.RepositoryIndexResponse),
        prefix + "RepositoryModelLoad": Handler(change(dataplane.load, m.RepositoryModelLoadResponse), unary, m.RepositoryModelLoadRequest, m.RepositoryModelLoadResponse),
        prefix + "RepositoryModelUnload": Handler(change(dataplane.unload, m.RepositoryModelUnloadResponse), unary, m.RepositoryModelUnloadRequest, m.RepositoryModelUnloadResponse),
    }  # fmt: skip


class RepositoryService:
    """MLServer's separate ``inference.model_repository.ModelRepositoryService``."""

    def __init__(self, dataplane: DataPlane, aio: AsyncioLoop) -> None:
        self.dataplane = dataplane
        self.aio = aio

    def __mapping__(self) -> dict[str, Handler]:
        mapping = repository_mapping(REPOSITORY_SERVICE, repo_pb, self.dataplane, self.aio)
        return counted(_access_logged(mapping, self.dataplane.settings.access_log), self.dataplane)


_GRPC_TYPES = {
    Cardinality.UNARY_UNARY: "UNARY",
    Cardinality.UNARY_STREAM: "SERVER_STREAM",
    Cardinality.STREAM_UNARY: "CLIENT_STREAM",
    Cardinality.STREAM_STREAM: "BIDI_STREAM",
}


def counted(mapping: dict[str, Handler], dataplane: DataPlane) -> dict[str, Handler]:
    """Each handler counted in ``grpc_server_started`` / ``grpc_server_handled`` (the
    labels of py-grpc-prometheus, MLServer's interceptor), when metrics are on."""
    if dataplane.metrics is None:
        return mapping
    from ..metrics import GRPC_HANDLED, GRPC_STARTED

    def wrap(path: str, handler: Handler) -> Handler:
        service, method = path.strip("/").rsplit("/", 1)
        labels = (_GRPC_TYPES[handler.cardinality], service, method)
        started = GRPC_STARTED.labels(*labels)
        fn = handler.func

        async def func(stream: Stream[Any, Any]) -> None:
            started.inc()
            code = Status.UNKNOWN
            try:
                await fn(stream)
                code = Status.OK
            except GRPCError as exc:
                code = exc.status
                raise
            except asyncio.CancelledError:
                code = Status.CANCELLED
                raise
            finally:
                GRPC_HANDLED.labels(*labels, code.name).inc()

        return handler._replace(func=func)

    return {path: wrap(path, handler) for path, handler in mapping.items()}
