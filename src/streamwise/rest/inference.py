"""The inference endpoints as a thin ASGI app in front of the Quart app.

``POST /v2/models/<name>[/versions/<version>]/{infer,generate,infer_stream,generate_stream}``
is the hot path of the REST API. Quart's request machinery (request and response objects,
hooks, context locals) cost more than everything else a small request needs, so these
four routes are answered here, straight on ASGI, through the same ``DataPlane`` and the
same error mapping (``rest/errors.answer_for``); every other path goes on to Quart.

Per request: the body is read (bounded by ``max_request_body_bytes``; decompressed when
its ``Content-Encoding`` says so, ``protocol/compression.py``), the bearer token checked, the
request parsed and validated once (``DataPlane.prepare``), then either one JSON answer or
a stream of server-sent events. A request with an
``Inference-Header-Content-Length`` header uses the binary tensor data extension
(``protocol/binary.py``): its inputs are decoded into the form JSON inputs have, on every
endpoint; a unary answer has binary outputs when the request asks for them (streams'
events stay JSON). Without that header, and without ``binary_data`` output parameters, a
request costs what it did before the extension. The request's nursery races a disconnect
watcher against the answer, so a client that goes away cancels its model at once.

``generate`` and ``generate_stream`` also take Triton's flat JSON
(``protocol/generate.py``): a body that is no V2 request is read again as a flat one, so
a V2 request costs what it always did, and the flat one is answered in its own dialect.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import pydantic
import trio

from ..errors import InvalidRequest, StreamwiseError, Unauthenticated
from ..logs import Access
from ..protocol import auth, binary, compression, generate, sse
from ..runtime.dataplane import Call, DataPlane
from ..types import InferenceRequest, InferenceResponse
from .errors import answer_for, describe_validation_error, error_body

__all__ = ["ACCESS_KEY", "InferenceRoutes"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[..., Awaitable[None]]

UNARY = frozenset({"infer", "generate"})
STREAMING = frozenset({"infer_stream", "generate_stream"})
GENERATE = frozenset({"generate", "generate_stream"})
"""The routes that also take Triton's flat generate request."""

_JSON = [(b"content-type", b"application/json")]
_BINARY = (b"content-type", b"application/octet-stream")  # as Triton answers
_SSE = [(k.lower().encode(), v.encode()) for k, v in sse.STREAM_HEADERS.items()]
_CLOSE = (b"connection", b"close")

ACCESS_KEY = "streamwise.access"
"""The scope's :class:`~streamwise.logs.Access` (``rest/access.py``), when access logs are on."""
_NOWHERE = Access()  # filled and never read: access logs off


def route_of(path: str) -> tuple[str, str | None, str] | None:
    """``(model, version, action)`` for an inference path, else None."""
    parts = path.split("/")
    if len(parts) == 5:
        _, v2, models, name, action = parts
        version = None
    elif len(parts) == 7:
        _, v2, models, name, versions, version, action = parts
        if versions != "versions" or not version:
            return None
    else:
        return None
    if v2 != "v2" or models != "models" or not name:
        return None
    if action not in UNARY and action not in STREAMING:
        return None
    return name, version, action


def _encode_event(response: InferenceResponse) -> bytes:
    return sse.data_event(response.model_dump_json())


def _encode_json(response: InferenceResponse) -> bytes:
    return response.model_dump_json().encode()


class _TooLarge(Exception):
    """The body is over ``max_request_body_bytes``: it is left unread."""


class _Gone(Exception):
    """The client left before its body ended: nobody to answer."""


class InferenceRoutes:
    """ASGI: the inference endpoints here, everything else to ``app``."""

    def __init__(self, dataplane: DataPlane, app: ASGIApp) -> None:
        self.dataplane = dataplane
        self.app = app
        settings = dataplane.settings
        self.root_path = settings.root_path
        self.max_body = settings.max_request_body_bytes
        self.token = settings.auth_token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if self.root_path and path.startswith(self.root_path):
                path = path[len(self.root_path) :]
            route = route_of(path)
            if route is not None:
                await self._answer(scope, receive, send, *route)
                return
        await self.app(scope, receive, send)

    async def _answer(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        name: str,
        version: str | None,
        action: str,
    ) -> None:
        if scope["method"] != "POST":
            refusal = (405, error_body("method not allowed"), [(b"allow", b"POST")])
            await self._refuse(scope, receive, send, *refusal)
            return
        if self.token is not None and not auth.bearer_ok(
            _header(scope, b"authorization"), self.token
        ):
            await self._refuse(scope, receive, send, *_answer_for(Unauthenticated(auth.MESSAGE)))
            return
        try:
            body = await self._read_body(scope, receive)
        except _TooLarge:
            message = f"request body too large (over {self.max_body} bytes: max_request_body_bytes)"
            await _send_json(send, 413, error_body(message), [_CLOSE])
            return
        except _Gone:
            return
        flat: generate.FlatRequest | None = None
        try:
            if (coding := _header(scope, b"content-encoding")) is not None:
                body = compression.decode(body, coding, self.max_body)
            header_length = _header(scope, binary.HEADER)
            choice: binary.OutputChoice | None = None
            request: InferenceRequest | generate.FlatRequest
            if header_length is not None:
                request = _parse_binary(body, header_length)
                choice = binary.output_choice(request)  # streams ignore it: events are JSON
            else:
                try:
                    request = _parse(body)
                    choice = binary.output_choice(request)
                except InvalidRequest:  # no V2 request: maybe Triton's flat one
                    if action not in GENERATE or (flat := generate.read(body)) is None:
                        raise
                    request = flat
            call = self.dataplane.prepare(name, version, request, headers=scope["headers"])
        except StreamwiseError as exc:
            await _send_json(send, *_answer_for(exc))
            return
        access: Access = scope.get(ACCESS_KEY, _NOWHERE)
        access.request_id = call.request_id
        async with trio.open_nursery() as nursery:
            watch = _Disconnect(nursery.cancel_scope)
            nursery.start_soon(watch.wait, receive)
            if flat is not None:  # answered in Triton's dialect; `id` only if it had one
                encode = generate.encoder(call.request.id is not None, action in STREAMING)
                if action in STREAMING:
                    await self._stream(call, send, access, encode, generate.error_event)
                else:
                    await self._infer(call, send, encode=encode)
            elif action in STREAMING:
                await self._stream(call, send, access)
            else:
                await self._infer(call, send, choice)
            watch.answered(nursery.cancel_scope)
        if watch.left and access.outcome is None:  # else: it left once all was sent
            access.outcome = "client disconnect"

    async def _refuse(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        status: int,
        body: bytes,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        """Answer without using the request's body; it is read all the same, so that the
        connection stays usable (one too large to read is left, and the connection
        closes)."""
        try:
            if _header(scope, b"content-length") not in (None, "0") or _header(
                scope, b"transfer-encoding"
            ):
                await self._read_body(scope, receive)
        except _TooLarge:
            headers = [*headers, _CLOSE]
        except _Gone:
            return
        await _send_json(send, status, body, headers)

    async def _infer(
        self,
        call: Call,
        send: Send,
        choice: binary.OutputChoice | None = None,
        encode: Callable[[InferenceResponse], bytes] = _encode_json,
    ) -> None:
        try:
            response = await self.dataplane.infer(call)
            encoded = None if choice is None else binary.encode_response(response, choice)
            body = encode(response) if encoded is None else encoded[0]
        except Exception as exc:  # ours: its status; anything else: 500, logged
            await _send_json(send, *_answer_for(exc))
            return
        if encoded is None:
            await _send_json(send, 200, body)
            return
        await _send_binary(send, body, encoded[1])

    async def _stream(
        self,
        call: Call,
        send: Send,
        access: Access,
        encode: Callable[[InferenceResponse], bytes] = _encode_event,
        error_event: Callable[[str], bytes] = sse.error_event,
    ) -> None:
        """The model's stream is opened first, so that it starts while the headers go out
        (and a refusal at the start, such as the concurrency limit, is a JSON error, not a
        200, or a bug of ours, a logged 500); then 200 and the events; a failure after
        that is a last error event (V2: ``event: error``; Triton's dialect: a ``data:``
        event holding ``{"error": ...}``), never a clean end (a bug of ours there goes on
        to Hypercorn, which cuts the connection)."""
        started = False
        try:
            async with self.dataplane.stream(call, encode) as stream:
                await send({"type": "http.response.start", "status": 200, "headers": _SSE})
                started = True
                access.responses = 0
                while batch := await stream.take():
                    access.responses += len(batch)
                    await send({"type": "http.response.body", "body": b"".join(batch),
                                "more_body": True})  # fmt: skip
                failure = stream.failure
        except Exception as exc:
            if not started:  # could not start: unloaded since, over the limit...
                await _send_json(send, *_answer_for(exc))
                return
            if not isinstance(exc, StreamwiseError):
                raise
            failure = exc
        end = error_event(str(failure)) if failure is not None else b""
        access.outcome = "completed" if failure is None else str(failure)
        await send({"type": "http.response.body", "body": end, "more_body": False})

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            raise _TooLarge()
        chunks = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # http.disconnect
                raise _Gone()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise _TooLarge()
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _parse(body: bytes) -> InferenceRequest:
    try:
        return InferenceRequest.model_validate_json(body)
    except pydantic.ValidationError as exc:
        raise InvalidRequest(describe_validation_error(exc)) from None


def _parse_binary(body: bytes, header_length: str) -> InferenceRequest:
    try:
        return binary.decode_request(body, header_length)
    except pydantic.ValidationError as exc:
        raise InvalidRequest(describe_validation_error(exc)) from None


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")  # type: ignore[no-any-return]
    return None


async def _send_json(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*_JSON, (b"content-length", str(len(body)).encode()), *(headers or ())],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _send_binary(send: Send, body: bytes, header_length: int) -> None:
    headers = [_BINARY, (binary.HEADER, str(header_length).encode())]
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _answer_for(exc: Exception) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    status, headers, body = answer_for(exc)
    return status, body, [(k.lower().encode(), v.encode()) for k, v in headers]


class _Disconnect:
    """After its body, a request's next message is ``http.disconnect``: the client going
    away (the request is cancelled, with its model), or Hypercorn closing the request once
    its answer is complete (the watcher just ends: no cancellation, no exception)."""

    __slots__ = ("_scope", "_answered", "left")

    GRACE_S = 5.0
    """After the answer, how long the watcher may wait for that ``http.disconnect``."""

    def __init__(self, scope: trio.CancelScope) -> None:
        self._scope = scope
        self._answered = False
        self.left = False
        """The client went away before its answer was complete."""

    async def wait(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        if not self._answered:
            self.left = True
            self._scope.cancel()

    def answered(self, scope: trio.CancelScope) -> None:
        self._answered = True
        scope.deadline = trio.current_time() + self.GRACE_S  # a safety net only
