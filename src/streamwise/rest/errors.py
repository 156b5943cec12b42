"""Every REST error is ``{"error": "..."}`` with a meaningful status; mapped here, once."""

from __future__ import annotations

import json
import logging

import pydantic
from quart import Quart, Response, request
from werkzeug.exceptions import HTTPException

from ..errors import StreamwiseError

log = logging.getLogger(__name__)

JSON = "application/json"


def error_body(message: str) -> bytes:
    return json.dumps({"error": message}, ensure_ascii=False).encode()


def error_response(status: int, message: str) -> Response:
    return Response(error_body(message), status=status, content_type=JSON)


def answer_for(exc: Exception) -> tuple[int, list[tuple[str, str]], bytes]:
    """The one REST answer to each of our errors (status, extra headers, JSON body), and
    to anything else, which is a bug of ours: logged with its traceback, 500."""
    if not isinstance(exc, StreamwiseError):
        log.error("unexpected error", exc_info=exc)
        return 500, [], error_body(f"internal error: {type(exc).__name__}: {exc}")
    if exc.http_status == 500:
        log.error("%s", exc)
    headers = []
    if exc.retry_after is not None:
        headers.append(("Retry-After", str(exc.retry_after)))
    if exc.http_status == 401:
        headers.append(("WWW-Authenticate", "Bearer"))
    return exc.http_status, headers, error_body(str(exc))


def describe_validation_error(exc: pydantic.ValidationError) -> str:
    """One line a person can act on, instead of pydantic's list of dicts."""
    parts = []
    for err in exc.errors(include_url=False)[:5]:
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{loc}: {err['msg']}" if loc else err["msg"])
    more = exc.error_count() - len(parts)
    return "invalid request: " + "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def install(app: Quart) -> None:
    @app.errorhandler(StreamwiseError)
    async def _ours(exc: StreamwiseError) -> Response:
        status, headers, body = answer_for(exc)
        return Response(body, status=status, content_type=JSON, headers=dict(headers))

    @app.errorhandler(HTTPException)
    async def _http(exc: HTTPException) -> Response:
        status = exc.code or 500
        text = {
            404: "not found",
            405: "method not allowed",
            413: "request body too large",
        }.get(status, exc.description or exc.name)
        response = error_response(status, text)
        if status == 405 and exc.get_headers():
            for key, value in exc.get_headers():
                if key.lower() == "allow":
                    response.headers["Allow"] = value
        return response

    @app.after_request
    async def _read_the_body(response: Response) -> Response:
        """Every request's body is read before its answer goes out, whether its handler
        wanted it or not (no route, wrong method, refused by auth or a limit, repository
        load/unload). Hypercorn (0.18, h11) answering a keep-alive request whose body it
        has not finished reading can leave the connection stuck: the next request on it
        never gets an answer (tests/test_rest_api.py::
        test_unread_bodies_keep_the_connection_usable). A body read already costs
        nothing here (handlers read with ``cache=False``). A body that cannot be read (over
        ``max_request_body_bytes``, or too slow) is left unread: the connection closes."""
        try:
            await request.get_data(cache=False)
        except HTTPException:
            response.headers["Connection"] = "close"
        return response

    @app.errorhandler(Exception)
    async def _bug(exc: Exception) -> Response:
        status, _, body = answer_for(exc)
        return Response(body, status=status, content_type=JSON)
