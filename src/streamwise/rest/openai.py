"""The OpenAI-compatible API as a thin ASGI layer, in front of the Quart app (docs/openai.md).

``GET {prefix}/v1/models[/<id>]``, ``POST {prefix}/v1/completions`` and
``POST {prefix}/v1/chat/completions`` are answered here, on the REST port, through the
same ``DataPlane`` as the V2 endpoints (``rest/inference.py``, whose body reading,
refusals and disconnect watcher this reuses): the same bearer token, limits, timeouts,
drain, metrics (transport ``openai``) and access log. The protocol itself (requests,
chunks, stop strings) is ``protocol/openai.py``, sans-IO.

Every completion runs the model's stream, streamed or not (a model with ``predict`` only
streams its one response): a model made for the document's ``generate_stream`` serves as
it is, and the server can end it at a stop string or ``max_tokens``, cancelling it, as a
client that leaves does.
"""

from __future__ import annotations

import json
import time
from typing import Any

import trio
from pydantic_core import to_json

from ..errors import ModelNotFound, StreamwiseError, Unauthenticated
from ..logs import Access
from ..protocol import auth, compression
from ..protocol import openai as oa
from ..registry import ModelState
from ..runtime.dataplane import Call, DataPlane
from .errors import answer_for
from .inference import (
    _NOWHERE,
    _SSE,
    ACCESS_KEY,
    ASGIApp,
    InferenceRoutes,
    Receive,
    Scope,
    Send,
    _Disconnect,
    _Gone,
    _header,
    _send_json,
    _TooLarge,
)

__all__ = ["OpenAIRoutes"]

_METHODS = {"models": b"GET", "model": b"GET", "completion": b"POST", "chat": b"POST"}


class OpenAIRoutes(InferenceRoutes):
    """ASGI: the OpenAI-compatible endpoints here, everything else to ``app``."""

    def __init__(self, dataplane: DataPlane, app: ASGIApp) -> None:
        super().__init__(dataplane, app)
        base = dataplane.settings.openai_route_prefix + "/v1"
        self.routes = {
            base + "/models": "models",
            base + "/completions": "completion",
            base + "/chat/completions": "chat",
        }
        self.model_path = base + "/models/"
        self.created = int(time.time())
        self.owner = dataplane.settings.server_name

    def route(self, path: str) -> tuple[str, str | None] | None:
        """``(action, model id)`` for an OpenAI path, else None."""
        action = self.routes.get(path)
        if action is not None:
            return action, None
        if path.startswith(self.model_path) and len(path) > len(self.model_path):
            return "model", path[len(self.model_path) :]
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if self.root_path and path.startswith(self.root_path):
                path = path[len(self.root_path) :]
            route = self.route(path)
            if route is not None:
                await self._openai(scope, receive, send, *route)
                return
        await self.app(scope, receive, send)

    async def _openai(
        self, scope: Scope, receive: Receive, send: Send, action: str, model_id: str | None
    ) -> None:
        method = _METHODS[action]
        if scope["method"].encode() != method:
            body = oa.error_body("method not allowed", 405)
            await self._refuse(scope, receive, send, 405, body, [(b"allow", method)])
            return
        if self.token is not None and not auth.bearer_ok(
            _header(scope, b"authorization"), self.token
        ):
            await self._refuse(scope, receive, send, *_error(Unauthenticated(auth.MESSAGE)))
            return
        # _refuse answers without using the request's body (reading it all the same), which
        # is what a GET of the models needs too, whatever the status
        if action == "models":
            await self._refuse(scope, receive, send, 200, self._models(), [])
            return
        if action == "model":
            assert model_id is not None
            answer = self._model(model_id)
            if answer is None:
                answer = _error(ModelNotFound(model_id))
            await self._refuse(scope, receive, send, *answer)
            return
        try:
            body = await self._read_body(scope, receive)
        except _TooLarge:
            message = f"request body too large (over {self.max_body} bytes: max_request_body_bytes)"
            await _send_json(send, 413, oa.error_body(message, 413), [(b"connection", b"close")])
            return
        except _Gone:
            return
        kind: oa.Kind = "chat" if action == "chat" else "completion"
        access: Access = scope.get(ACCESS_KEY, _NOWHERE)
        try:
            if (coding := _header(scope, b"content-encoding")) is not None:
                body = compression.decode(body, coding, self.max_body)
            request = oa.parse(kind, body)
            access.model = request.model
            call, prompt, target = self._prepare(kind, request, scope)
        except Exception as exc:  # ours: its status; anything else: 500, logged
            await _send_json(send, *_error(exc))
            return
        access.request_id = call.request_id
        async with trio.open_nursery() as nursery:
            watch = _Disconnect(nursery.cancel_scope)
            nursery.start_soon(watch.wait, receive)
            await self._complete(kind, request, call, prompt, target, send, access)
            watch.answered(nursery.cancel_scope)
        if watch.left and access.outcome is None:
            access.outcome = "client disconnect"

    def _prepare(
        self, kind: oa.Kind, request: oa.CompletionRequest | oa.ChatRequest, scope: Scope
    ) -> tuple[Call, str, oa.Target]:
        """The model's V2 call for ``request`` (checked as a V2 request is), and the prompt."""
        slot = self.dataplane.registry.find(request.model)
        target = oa.target_of(slot.settings)
        if isinstance(request, oa.CompletionRequest):
            prompt = request.text()
        else:
            prompt = oa.render_chat(request.messages, target.template)
        v2 = oa.inference_request(request, target, prompt, oa.new_id(kind))
        call = self.dataplane.prepare(
            request.model, None, v2, transport="openai", headers=scope["headers"]
        )
        return call, prompt, target

    async def _complete(
        self,
        kind: oa.Kind,
        request: oa.CompletionRequest | oa.ChatRequest,
        call: Call,
        prompt: str,
        target: oa.Target,
        send: Send,
        access: Access,
    ) -> None:
        """Run the model's stream, cut at a stop string or ``max_tokens`` (leaving the
        stream's block cancels the model, whose ``finally`` runs before the answer ends),
        and answer: chunks then ``[DONE]``, or one JSON answer. A failure once the chunks
        have started is a last ``data: {"error": ...}`` chunk, never a ``[DONE]``."""
        streaming = request.stream
        chunks = oa.Chunks(kind, call.request_id, request.model, request.include_usage)
        cutter = oa.StopCutter(request.stops)
        limit = request.limit
        tokens = 0
        finish: str | None = None
        failure: StreamwiseError | None = None
        texts: list[str] = []
        started = False
        try:
            async with self.dataplane.stream(call, oa.text_reader(target)) as stream:
                if streaming:
                    await send({"type": "http.response.start", "status": 200, "headers": _SSE})
                    started = True
                    if kind == "chat":
                        await send({"type": "http.response.body", "body": chunks.role(),
                                    "more_body": True})  # fmt: skip
                access.responses = 0
                while finish is None and (batch := await stream.take()):
                    out: list[str] = []
                    for piece in batch:
                        tokens += 1
                        text, stopped = cutter.feed(piece)
                        if text:
                            out.append(text)
                        if stopped:
                            finish = "stop"
                            break
                        if limit is not None and tokens >= limit:
                            finish = "length"
                            break
                    access.responses = tokens
                    if not streaming:
                        texts += out
                    elif out:
                        body = b"".join([chunks.text(t) for t in out])
                        await send({"type": "http.response.body", "body": body, "more_body": True})
                if finish is None:
                    failure = stream.failure
        except Exception as exc:
            if not started:  # could not start (over the limit...), or failed unstreamed
                await _send_json(send, *_error(exc))
                return
            if not isinstance(exc, StreamwiseError):
                raise
            failure = exc
        if failure is not None:
            access.outcome = str(failure)
            if streaming:
                await send({"type": "http.response.body", "body": oa.error_chunk(failure),
                            "more_body": False})  # fmt: skip
            else:
                await _send_json(send, *_error(failure))
            return
        tail = cutter.flush()  # ended by itself, or at max_tokens: what was held back
        reason = finish or "stop"
        access.outcome = "completed"
        if not streaming:
            whole = chunks.whole("".join(texts) + tail, reason, oa.prompt_tokens(prompt), tokens)
            await _send_json(send, 200, whole)
            return
        parts = [chunks.text(tail)] if tail else []
        parts.append(chunks.finish(reason))
        if request.include_usage:
            parts.append(chunks.usage(oa.prompt_tokens(prompt), tokens))
        parts.append(oa.DONE)
        await send({"type": "http.response.body", "body": b"".join(parts), "more_body": False})

    # -- models --
    def _listed(self) -> list[dict[str, Any]]:
        """The models that can serve completions now: READY, with a prompt input."""
        listed: dict[str, dict[str, Any]] = {}
        for slot in self.dataplane.registry.slots():
            if slot.state is not ModelState.READY or slot.name in listed:
                continue
            try:
                oa.target_of(slot.settings)
            except StreamwiseError:
                continue  # not a text model, or its openai settings are wrong
            listed[slot.name] = {
                "id": slot.name,
                "object": "model",
                "created": self.created,
                "owned_by": self.owner,
            }
        return list(listed.values())

    def _models(self) -> bytes:
        return to_json({"object": "list", "data": self._listed()})

    def _model(self, model_id: str) -> tuple[int, bytes, list[tuple[bytes, bytes]]] | None:
        for item in self._listed():
            if item["id"] == model_id:
                return 200, to_json(item), []
        return None


def _error(exc: Exception) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """The V2 answer's status and headers (``rest/errors.answer_for``: one mapping, and a
    bug of ours logged), with OpenAI's error body."""
    status, headers, v2_body = answer_for(exc)
    message = json.loads(v2_body)["error"]
    return (
        status,
        oa.error_body(message, status, exc),
        [(k.lower().encode(), v.encode()) for k, v in headers],
    )
