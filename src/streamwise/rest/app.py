"""The V2 REST API: the inference endpoints (``rest/inference.py``) in front of a
Quart-Trio app for the rest. Every route exists with and without ``/versions/<version>``;
every error is ``{"error": "..."}`` (``rest/errors.py``)."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pydantic
import trio
from quart import Response, request
from quart_trio import QuartTrio

from ..errors import InvalidRequest, Unauthenticated
from ..protocol import auth
from ..runtime.dataplane import DataPlane
from ..types import RepositoryIndexRequest
from . import errors
from .inference import InferenceRoutes

__all__ = ["create_app", "WriteTimeout"]

log = logging.getLogger(__name__)

JSON = "application/json"
EMPTY_OK = b""


def _json(body: bytes | str, status: int = 200) -> Response:
    return Response(body, status=status, content_type=JSON)


def create_app(dataplane: DataPlane) -> InferenceRoutes:
    """The REST API's ASGI app: the V2 inference endpoints, then the OpenAI-compatible API
    (``openai_enabled``; ``rest/openai.py``), then Quart for the rest."""
    app: Any = _quart_app(dataplane)
    if dataplane.settings.openai_enabled:
        from .openai import OpenAIRoutes

        app = OpenAIRoutes(dataplane, app)
    return InferenceRoutes(dataplane, app)


def _quart_app(dataplane: DataPlane) -> QuartTrio:
    """Health, metadata, the repository, and the answers to paths nobody serves."""
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

    @route("/config", ["GET"])
    async def model_config(name: str, version: str | None = None) -> Response:
        """Triton's model configuration extension (``protocol/model_config.py``)."""
        return _json(json.dumps(dataplane.model_config(name, version)))

    @route("/ready", ["GET"])
    async def model_ready(name: str, version: str | None = None) -> Response:
        dataplane.model_ready(name, version).check_ready()
        return Response(EMPTY_OK, status=200, mimetype="text/plain")

    # -- inference: rest/inference.py, in front of this app --

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

    A send in progress is an entry in a dict; :meth:`watch` (``serve()`` runs it) looks at
    them every ``seconds / 4``, so a blocked send is noticed after ``seconds`` to
    ``1.25 * seconds``, and a send that completes costs no timer.
    """

    def __init__(self, app: Any, seconds: float) -> None:
        self.app = app
        self.seconds = seconds
        self._sending: dict[trio.CancelScope, float] = {}

    async def watch(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Cancel the requests whose send has been blocked for ``seconds``; until cancelled."""
        task_status.started()
        while True:
            await trio.sleep(self.seconds / 4)
            now = trio.current_time()
            for guard, since in list(self._sending.items()):
                if now - since >= self.seconds:
                    guard.cancel()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        guard = trio.CancelScope()
        sending = self._sending

        async def timed_send(message: Any) -> None:
            sending[guard] = trio.current_time()
            try:
                await send(message)
            finally:
                del sending[guard]

        with guard:
            await self.app(scope, receive, timed_send)
        if guard.cancelled_caught:
            log.warning(
                "%s %s: client read nothing for %g s (write_timeout_s): dropped",
                scope.get("method"),
                scope.get("path"),
                self.seconds,
            )
