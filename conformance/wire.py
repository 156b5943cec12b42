"""REST helpers: request builders, SSE through httpx-sse, and a raw HTTP/1.1 reader.

httpx and httpx-sse are what users of other V2 servers already have, so most checks use
them. Where the exact bytes and their arrival times matter (SSE framing, incremental
delivery, gzip), :func:`raw_stream` reads the socket itself, chunk by chunk.
"""

from __future__ import annotations

import json
import socket
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from httpx_sse import connect_sse

Json = dict[str, Any]


# -- request builders --
def tensor(
    name: str, datatype: str, shape: list[int], data: Any, parameters: Json | None = None
) -> Json:
    t: Json = {"name": name, "datatype": datatype, "shape": shape, "data": data}
    if parameters is not None:
        t["parameters"] = parameters
    return t


def text_input(name: str, text: str) -> Json:
    return tensor(name, "BYTES", [1], [text], {"content_type": "str"})


def request(*inputs: Json, **fields: Any) -> Json:
    body: Json = {"inputs": list(inputs)}
    body.update({k: v for k, v in fields.items() if v is not None})
    return body


def tokens(n: int, delay_s: float | None = None, **fields: Any) -> Json:
    """A request for the token-streamer (and slow-stream, fail-mid-stream) models."""
    inputs = [tensor("n", "INT64", [1], [n])]
    if delay_s is not None:
        inputs.append(tensor("delay_s", "FP64", [1], [delay_s]))
    return request(*inputs, **fields)


def first_text(response: Json, output: str | None = None) -> str:
    """The first element of a BYTES output (the first one unless named) as text."""
    outputs = response["outputs"]
    out = next(o for o in outputs if o["name"] == output) if output else outputs[0]
    value = out["data"]
    while isinstance(value, list):
        value = value[0]
    return str(value)


def flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    return [x for item in data for x in flatten(item)]


def error_body(response: httpx.Response) -> str | None:
    """The message of a V2 error body ``{"error": "..."}``; None if it isn't one."""
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"]:
        return str(body["error"])
    return None


def describe(response: httpx.Response) -> str:
    return f"{response.status_code} {response.headers.get('content-type')} {response.text[:200]!r}"


# -- SSE through httpx-sse --
@dataclass
class Event:
    event: str
    data: str
    at: float
    """time.monotonic() when it was read"""

    def json(self) -> Any:
        return json.loads(self.data)


def sse(
    client: httpx.Client, path: str, body: Json, headers: dict[str, str] | None = None
) -> tuple[httpx.Response, list[Event]]:
    """POST a streaming request; the response and every event, read to the end."""
    with connect_sse(client, "POST", path, json=body, headers=dict(headers or {})) as source:
        events = [Event(e.event, e.data, time.monotonic()) for e in source.iter_sse()]
        return source.response, events


# -- raw HTTP/1.1 --
@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    sock: socket.socket
    _buffer: bytearray = field(default_factory=bytearray)
    _inflate: Any = None

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self._buffer += data
        return bool(data)

    def _line(self) -> bytes:
        while b"\r\n" not in self._buffer:
            if not self._fill():
                raise EOFError("connection closed mid-line")
        line, _, rest = bytes(self._buffer).partition(b"\r\n")
        self._buffer = bytearray(rest)
        return line

    def chunks(self) -> Iterator[tuple[float, bytes]]:
        """(arrival time, bytes) of each piece of the body as it is read, decoded
        (chunked transfer, then gzip if the server chose it). EOFError if the body is
        cut before its end."""
        if self.headers.get("content-encoding") == "gzip":
            self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        for at, piece in self._raw_chunks():
            if self._inflate is not None:
                piece = self._inflate.decompress(piece)
            if piece:
                yield at, piece

    def _raw_chunks(self) -> Iterator[tuple[float, bytes]]:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line():  # trailers, then the blank line
                        pass
                    return
                while len(self._buffer) < size + 2:
                    if not self._fill():
                        raise EOFError("connection closed mid-chunk")
                yield time.monotonic(), bytes(self._buffer[:size])
                del self._buffer[: size + 2]
        elif "content-length" in self.headers:
            remaining = int(self.headers["content-length"])
            while remaining > 0:
                if not self._buffer and not self._fill():
                    raise EOFError("connection closed before content-length bytes")
                piece = bytes(self._buffer[:remaining])
                del self._buffer[: len(piece)]
                remaining -= len(piece)
                yield time.monotonic(), piece
        else:  # delimited by the end of the connection
            if self._buffer:
                yield time.monotonic(), bytes(self._buffer)
                self._buffer.clear()
            while self._fill():
                yield time.monotonic(), bytes(self._buffer)
                self._buffer.clear()

    def body(self) -> bytes:
        return b"".join(piece for _, piece in self.chunks())

    def events(self) -> Iterator[tuple[float, bytes]]:
        """Each SSE event block (without its blank-line terminator) and when its end
        arrived. A body whose last event is not terminated raises ValueError."""
        pending = b""
        for at, piece in self.chunks():
            pending += piece
            while b"\n\n" in pending:
                block, _, pending = pending.partition(b"\n\n")
                yield at, block
        if pending:
            raise ValueError(f"body ends inside an event: {pending[:200]!r}")


@contextmanager
def raw_request(
    base_url: str, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> Iterator[RawResponse]:
    """Send one HTTP/1.1 request on a fresh socket and read the status and headers; the
    socket is closed when the block ends (so leaving early is a client disconnect)."""
    url = urlsplit(base_url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    if body is None or isinstance(body, bytes):
        payload = body or b""
    else:
        payload = json.dumps(body).encode()
    head = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(payload)}"]
    if body is not None:
        head.append("Content-Type: application/json")
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    sock = socket.create_connection((host, port), timeout=30)
    try:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
        response = RawResponse(0, {}, sock)
        response.status = int(response._line().split()[1])
        while line := response._line():
            name, _, value = line.decode("latin-1").partition(":")
            response.headers[name.strip().lower()] = value.strip()
        yield response
    finally:
        sock.close()


def parse_event(block: bytes) -> dict[str, str]:
    """The fields of one SSE event block ({"data": ..., "event": ...}); data lines joined
    with newlines, comments dropped."""
    fields: dict[str, str] = {}
    for line in block.decode("utf-8").split("\n"):
        if not line or line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        fields[name] = fields[name] + "\n" + value if name in fields and name == "data" else value
    return fields


def client_error(response: httpx.Response, deviation: Any, what: str, preferred: int = 400) -> None:
    """Assert a client mistake got a 4xx with a V2 error body ``{"error": "..."}``; a 4xx
    other than ``preferred`` is a deviation, anything else a failure."""
    assert 400 <= response.status_code < 500, f"{what}: {describe(response)}"
    assert error_body(response), f"{what}: no {{'error': ...}} body: {describe(response)}"
    if response.status_code != preferred:
        deviation(f"{what}: {response.status_code}, not {preferred}")


def versions_unsupported(response: httpx.Response, deviation: Any) -> bool:
    """Model versions are optional in the protocol: a server without them may answer a
    versioned path 501. That is recorded as a deviation, and the check ends there."""
    if response.status_code == 501:
        deviation(f"model versions not supported: {describe(response)}")
        return True
    return False
