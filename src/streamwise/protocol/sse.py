"""Server-sent events framing, as MLServer frames its streams (sans-IO).

One event per model response: ``data: <compact JSON>\\n\\n``. No ``event:`` or ``id:``
lines on data events, no end marker: a stream that ends cleanly ends with its body.
A failure after the stream started is one last event, ``event: error`` with
``data: {"error": "..."}``, so that a client can always tell a failure from a short
answer. JSON never holds a raw newline, so one ``data:`` line per event is enough.
"""

from __future__ import annotations

import json

__all__ = ["CONTENT_TYPE", "STREAM_HEADERS", "data_event", "error_event"]

CONTENT_TYPE = "text/event-stream; charset=utf-8"
STREAM_HEADERS = {
    "Content-Type": CONTENT_TYPE,
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # tell nginx-style proxies not to buffer the stream
}


def data_event(payload_json: str) -> bytes:
    """One ``data:`` event around an already-serialised, newline-free JSON document."""
    return b"data: " + payload_json.encode() + b"\n\n"


def error_event(message: str) -> bytes:
    """The terminal ``event: error`` event."""
    body = json.dumps({"error": message}, ensure_ascii=False, separators=(",", ":"))
    return b"event: error\ndata: " + body.encode() + b"\n\n"
