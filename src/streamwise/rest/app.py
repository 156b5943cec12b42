"""The V2 REST API as a Quart-Trio app. Every route exists with and without
``/versions/<version>``; every error is ``{"error": "..."}`` (``rest/errors.py``)."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

import pydantic
import trio
from quart import Response, request
from quart_trio import QuartTrio

from ..errors import InvalidRequest, Unauthenticated
from ..protocol import auth
from ..runtime.dataplane import DataPlane
from ..types import InferenceRequest, RepositoryIndexRequest
from . import errors
from .sse import SSEBody

__all__ = ["create_app", "WriteTimeout"]

log = logging.getLogger(__name__)

JSON = "application/json"
EMPTY_OK = b""


def _json(body: bytes | str, status: int = 200) -> Response:
    return Response(body, status=status, content_type=JSON)


async def _read_request() -> InferenceRequest:
    body = await request.get_data(cache=False)
    try:
        return InferenceRequest.model_validate_json(body)
    except pydantic.ValidationError as exc:
        raise InvalidRequest(errors.describe_validation_error(exc)) from None


def create_app(dataplane: DataPlane) -> QuartTrio:
    settings = dataplane.settings
    app = QuartTrio("streamwise")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_body_bytes
    # "/v2/models/%2Fidentity/infer" is a request for a model named "/identity" (none
    # such: 404), not a 308 redirect to a path with the slashes merged
    app.url_map.merge_slashes = False
    errors.install(app)

    if settings.auth_token is not None:
        token = settings.auth_token

        @app.before_request
        async def _authenticate() -> None:
            path = request.path.removeprefix(settings.root_path)
            if path in auth.OPEN_REST_PATHS:
                return
            if not auth.bearer_ok(request.headers.get("Authorization"), token):
                raise Unauthenticated(auth.MESSAGE)

    def route(rule: str, methods: list[str]) -> Callable[[Callable[..., Awaitable[Any]]], Any]:
        """Register ``/v2/models/<name>{rule}`` with and without ``/versions/<version>``."""

        def register(fn: Callable[..., Awaitable[Any]]) -> Any:
            app.add_url_rule(f"/v2/models/<name>{rule}", view_func=fn, methods=methods)
            app.add_url_rule(
                f"/v2/models/<name>/versions/<version>{rule}",
                endpoint=f"{fn.__name__}_versioned",
                view_func=fn,
                methods=methods,
            )
            return fn

        return register

    # -- health and metadata --
    @app.get("/v2/health/live")
    async def live() -> Response:
        return Response(EMPTY_OK, status=200, mimetype="text/plain")

    @app.get("/v2/health/ready")
    async def ready() -> Response:
        if dataplane.ready():
            return Response(EMPTY_OK, status=200, mimetype="text/plain")
        why = "starting" if not dataplane.started.is_set() else "no model is ready"
        return errors.error_response(503, f"server not ready: {why}")

    @app.get("/v2")
    async def server_metadata() -> Response:
        return _json(dataplane.server_metadata().model_dump_json())

    @route("", ["GET"])
    async def model_metadata(name: str, version: str | None = None) -> Response:
        return _json((await dataplane.model_metadata(name, version)).model_dump_json())

    @route("/ready", ["GET"])
    async def model_ready(name: str, version: str | None = None) -> Response:
        dataplane.model_ready(name, version).check_ready()
        return Response(EMPTY_OK, status=200, mimetype="text/plain")

    # -- inference --
    @route("/infer", ["POST"])
    @route("/generate", ["POST"])
    async def infer(name: str, version: str | None = None) -> Response:
        call = dataplane.prepare(name, version, await _read_request())
        response = await dataplane.infer(call)
        return _json(response.model_dump_json())

    @route("/infer_stream", ["POST"])
    @route("/generate_stream", ["POST"])
    async def infer_stream(name: str, version: str | None = None) -> Response:
        call = dataplane.prepare(name, version, await _read_request())
        response = Response(SSEBody(dataplane, call), status=200, headers=SSEBody.HEADERS)
        response.timeout = None  # Quart's RESPONSE_TIMEOUT would cut long streams
        return response

    # -- repository --
    @app.post("/v2/repository/index")
    async def repository_index() -> Response:
        body = await request.get_data(cache=False)
        try:
            query = RepositoryIndexRequest.model_validate_json(body or b"{}")
        except pydantic.ValidationError as exc:
            raise InvalidRequest(errors.describe_validation_error(exc)) from None
        items = dataplane.repository_index(query.ready)
        return _json(json.dumps([i.model_dump(mode="json") for i in items]))

    @app.post("/v2/repository/models/<name>/load")
    async def repository_load(name: str) -> Response:
        await dataplane.load(name)
        return Response(EMPTY_OK, status=200, mimetype="text/plain")

    @app.post("/v2/repository/models/<name>/unload")
    async def repository_unload(name: str) -> Response:
        await dataplane.unload(name)
        return Response(EMPTY_OK, status=200, mimetype="text/plain")

    return app


class WriteTimeout:
    """ASGI middleware: a client that reads nothing for ``seconds`` is dropped.

    Each ``send`` to Hypercorn (a chunk of a stream) must complete within ``seconds``; it
    blocks only when the client stops reading and the socket's buffers are full. When it
    does not, the whole request (with the stream's pipeline, so its model) is cancelled and
    Hypercorn closes the connection, as for a response it could not finish. Waiting for the
    model is not writing: only ``send`` is timed.
    """

    def __init__(self, app: Any, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        guard = trio.CancelScope()

        async def timed_send(message: Any) -> None:
            guard.deadline = trio.current_time() + self.seconds
            try:
                await send(message)
            finally:
                guard.deadline = math.inf

        with guard:
            await self.app(scope, receive, timed_send)
        if guard.cancelled_caught:
            log.warning(
                "%s %s: client read nothing for %g s (write_timeout_s): dropped",
                scope.get("method"),
                scope.get("path"),
                self.seconds,
            )
