"""A raw HTTP/1.1 client over a trio socket, for checks where the exact bytes and their
timing matter (httpx reassembles them). Reads chunked bodies chunk by chunk."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import trio


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    stream: trio.SocketStream
    _buffer: bytearray = field(default_factory=bytearray)

    async def _fill(self) -> bool:
        data = await self.stream.receive_some(65536)
        self._buffer += data
        return bool(data)

    async def _read_line(self) -> bytes:
        while b"\r\n" not in self._buffer:
            if not await self._fill():
                raise EOFError("connection closed mid-line")
        line, _, rest = bytes(self._buffer).partition(b"\r\n")
        self._buffer = bytearray(rest)
        return line

    async def read_chunk(self) -> bytes | None:
        """The next chunk of a chunked body; None at its end."""
        size = int((await self._read_line()).split(b";")[0], 16)
        while len(self._buffer) < size + 2:
            if not await self._fill():
                raise EOFError("connection closed mid-chunk")
        chunk = bytes(self._buffer[:size])
        del self._buffer[: size + 2]
        return chunk if size else None

    async def read_body(self) -> bytes:
        if self.headers.get("transfer-encoding") == "chunked":
            parts = []
            while (chunk := await self.read_chunk()) is not None:
                parts.append(chunk)
            return b"".join(parts)
        length = int(self.headers.get("content-length", "0"))
        while len(self._buffer) < length:
            if not await self._fill():
                break
        return bytes(self._buffer[:length])


async def request(
    port: int, method: str, path: str, body: object = None, headers: dict[str, str] | None = None
) -> RawResponse:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    payload = (
        b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    )
    head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(payload)}"]
    if body is not None:
        head.append("Content-Type: application/json")
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    await stream.send_all(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
    response = RawResponse(0, {}, stream)
    status_line = await response._read_line()
    response.status = int(status_line.split()[1])
    while line := await response._read_line():
        name, _, value = line.decode("latin-1").partition(":")
        response.headers[name.strip().lower()] = value.strip()
    return response


def parse_sse(body: bytes) -> list[dict[str, str]]:
    """Split an SSE body into events ({field: value}); asserts the framing is exact."""
    assert body.endswith(b"\n\n") or body == b"", body[-50:]
    events = []
    for block in body.decode().split("\n\n")[:-1]:
        event: dict[str, str] = {}
        for line in block.split("\n"):
            name, sep, value = line.partition(": ")
            assert sep, f"malformed SSE line {line!r}"
            event[name] = value
        events.append(event)
    return events
