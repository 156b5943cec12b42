"""ASGI middleware: gzip for REST responses (``gzip_enabled``), as MLServer's (Starlette's
``GZipMiddleware``): a response of ``minimum_size`` bytes or more is compressed for a
client that accepts gzip. Server-sent events (``text/event-stream``) are never compressed
nor held back: each event goes out as it comes. A response the app already encoded is
left alone. Why our own and not a package: docs/dependencies.md.
"""

from __future__ import annotations

import zlib
from typing import Any

__all__ = ["GZip", "accepts_gzip"]

MINIMUM_SIZE = 1024
LEVEL = 6
"""zlib's default: close to 9 in size for JSON, several times faster."""


def accepts_gzip(value: str | None) -> bool:
    """Whether an ``Accept-Encoding`` value accepts gzip (``gzip;q=0`` refuses it)."""
    if not value:
        return False
    for item in value.split(","):
        coding, _, params = item.partition(";")
        if coding.strip().lower() not in ("gzip", "x-gzip"):
            continue
        params = params.strip().replace(" ", "").lower()
        if params.startswith("q="):
            try:
                return float(params[2:]) > 0
            except ValueError:
                return False
        return True
    return False


class GZip:
    def __init__(self, app: Any, minimum_size: int = MINIMUM_SIZE, level: int = LEVEL) -> None:
        self.app = app
        self.minimum_size = minimum_size
        self.level = level

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            for key, value in scope["headers"]:
                if key == b"accept-encoding":
                    if accepts_gzip(value.decode("latin-1")):
                        await self.app(scope, receive, _Responder(send, self).send)
                        return
                    break
        await self.app(scope, receive, send)


class _Responder:
    """One response's sends: the start is held until the first body message says whether
    (and how) to compress."""

    __slots__ = ("_send", "_gzip", "_start", "_held", "_compressor", "_passing")

    def __init__(self, send: Any, gzip: GZip) -> None:
        self._send = send
        self._gzip = gzip
        self._start: dict[str, Any] | None = None
        self._held: list[bytes] = []
        self._compressor: Any = None
        self._passing = False

    async def send(self, message: Any) -> None:
        if self._passing:
            await self._send(message)
            return
        kind = message["type"]
        if kind == "http.response.start":
            headers = message.get("headers", ())
            if any(
                (k.lower() == b"content-type" and v.startswith(b"text/event-stream"))
                or k.lower() == b"content-encoding"
                for k, v in headers
            ):
                self._passing = True  # events go out as they come; encoded already
                await self._send(message)
            else:
                self._start = message
            return
        if kind != "http.response.body":
            await self._send(message)
            return
        body: bytes = message.get("body", b"")
        more = message.get("more_body", False)
        if self._compressor is None:
            start = self._start
            assert start is not None
            if self._held:  # a body in parts (Quart's: the body, then an empty end)
                body = b"".join(self._held) + body
            if more and len(body) < self._gzip.minimum_size:
                self._held = [body]  # too small to tell yet
                return
            if not more and len(body) < self._gzip.minimum_size:
                self._passing = True
                await self._send(start)
                await self._send({**message, "body": body})
                return
            self._compressor = zlib.compressobj(self._gzip.level, zlib.DEFLATED, 31)
            headers = [
                (k, v) for k, v in start.get("headers", ()) if k.lower() != b"content-length"
            ]
            headers += [(b"content-encoding", b"gzip"), (b"vary", b"Accept-Encoding")]
            compressed = self._compressor.compress(body)
            if not more:
                compressed += self._compressor.flush()
                headers.append((b"content-length", str(len(compressed)).encode()))
            await self._send({**start, "headers": headers})
        else:
            compressed = self._compressor.compress(body)
            if not more:
                compressed += self._compressor.flush()
        await self._send({"type": "http.response.body", "body": compressed, "more_body": more})
