"""ASGI middleware: the REST access log (``streamwise.access``; ``logs.py``).

One record per request, written when the app is done with it (for a stream: when the
stream ended). The status is the one sent; the model comes from an inference path; the
request id, responses streamed and a stream's outcome are filled in by
``rest/inference.py`` through the :class:`~streamwise.logs.Access` put in the scope.
"""

from __future__ import annotations

import time
from typing import Any

from ..logs import Access, log_rest
from .inference import ACCESS_KEY, route_of

__all__ = ["AccessLog"]


class AccessLog:
    def __init__(self, app: Any, root_path: str = "") -> None:
        self.app = app
        self.root_path = root_path

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        path: str = scope["path"]
        route = route_of(path.removeprefix(self.root_path) if self.root_path else path)
        access = scope[ACCESS_KEY] = Access(route[0] if route else None)
        status: int | None = None

        async def sent(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sent)
        finally:
            client = scope.get("client")
            log_rest(
                access,
                scope["method"],
                path,
                status,
                (time.perf_counter() - start) * 1000,
                f"{client[0]}:{client[1]}" if client else "-",
            )
