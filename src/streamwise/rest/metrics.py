"""ASGI middleware: the REST requests in starlette_exporter's metrics, as MLServer's
(``rest_server_requests_total``, ``..._request_duration_seconds``,
``..._requests_in_progress``; labels ``method``, ``path``, ``status_code``, ``app_name``).

``path`` is the route's template (``/v2/models/{model_name}/infer``), never the path itself:
one series per route, whatever the model names. The health checks are left out, as
MLServer leaves them out.
"""

from __future__ import annotations

import time
from typing import Any

from ..metrics import rest_metrics
from .inference import route_of

__all__ = ["RestMetrics", "template_of"]

SKIPPED = frozenset({"/v2/health/live", "/v2/health/ready"})
APP_NAME = "streamwise"


def template_of(path: str, openai_prefix: str | None = None) -> str:
    """The route template of a REST path; ``"unmatched"`` for a path no route serves.
    ``openai_prefix``: where the OpenAI-compatible API is (None: it is off)."""
    route = route_of(path)
    if route is not None:
        _, version, action = route
        if version is None:
            return f"/v2/models/{{model_name}}/{action}"
        return f"/v2/models/{{model_name}}/versions/{{model_version}}/{action}"
    if path in ("/v2", "/v2/repository/index"):
        return path
    if openai_prefix is not None and path.startswith(openai_prefix + "/v1/"):
        tail = path[len(openai_prefix) :]
        if tail in ("/v1/models", "/v1/completions", "/v1/chat/completions"):
            return path
        if tail.startswith("/v1/models/"):
            return f"{openai_prefix}/v1/models/{{model}}"
    parts = path.split("/")
    if parts[:3] == ["", "v2", "models"] and len(parts) >= 4 and parts[3]:
        rest = parts[4:]
        base = "/v2/models/{model_name}"
        if rest[:1] == ["versions"] and len(rest) >= 2:
            base += "/versions/{model_version}"
            rest = rest[2:]
        if rest in ([], ["ready"]):
            return base + "".join(f"/{p}" for p in rest)
    if parts[:4] == ["", "v2", "repository", "models"] and len(parts) == 6:
        if parts[5] in ("load", "unload"):
            return f"/v2/repository/models/{{model_name}}/{parts[5]}"
    return "unmatched"


class RestMetrics:
    def __init__(
        self, app: Any, prefix: str, root_path: str = "", openai_prefix: str | None = None
    ) -> None:
        self.app = app
        self.root_path = root_path
        self.openai_prefix = openai_prefix
        self.requests, self.duration, self.in_progress = rest_metrics(prefix)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if self.root_path and path.startswith(self.root_path):
            path = path[len(self.root_path) :]
        if path in SKIPPED:
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        template = template_of(path, self.openai_prefix)
        status = [500]

        async def counted_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        in_progress = self.in_progress.labels(method, template, APP_NAME)
        in_progress.inc()
        started = time.perf_counter()
        try:
            await self.app(scope, receive, counted_send)
        finally:
            labels = (method, template, str(status[0]), APP_NAME)
            self.requests.labels(*labels).inc()
            self.duration.labels(*labels).observe(time.perf_counter() - started)
            in_progress.dec()
