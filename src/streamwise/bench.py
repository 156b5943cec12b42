"""``streamwise bench``: throughput figures, as ratios against a baseline of the same run.

The baseline is a bare Hypercorn-trio ASGI app (no Quart, no models, no validation) that
answers the same routes with the same bytes: the floor our HTTP stack sets. Both servers
run as subprocesses on free ports; the client is this process, on raw sockets (keep-alive
HTTP/1.1, minimal parsing), so that it costs less than the servers it measures.

    python -m src bench [--events 50000] [--requests 5000] [--concurrency 1,32]
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import trio

TOKEN_STREAM = "/v2/models/token-streamer/generate_stream"
IDENTITY_INFER = "/v2/models/identity/infer"
UNARY_BODY = json.dumps(
    {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1.0, 2.0, 3.0, 4.0]}]}
).encode()


def _stream_body(n: int) -> bytes:
    return json.dumps(
        {"inputs": [{"name": "n", "shape": [1], "datatype": "INT64", "data": [n]}]}
    ).encode()


# -- the baseline server: bare ASGI on hypercorn-trio --------------------------------------
def _event(i: int) -> bytes:
    payload = {
        "model_name": "token-streamer",
        "id": "00000000-0000-0000-0000-000000000000",
        "outputs": [
            {
                "name": "token",
                "shape": [1, 1],
                "datatype": "BYTES",
                "parameters": {"content_type": "str"},
                "data": [f"token-{i}"],
            }
        ],
    }
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


async def _baseline_app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] == "lifespan":
        while (message := await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == TOKEN_STREAM:
        n = json.loads(body)["inputs"][0]["data"][0]
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream; charset=utf-8")],
            }
        )
        for i in range(n):  # one write per event: what a naive streaming server does
            await send({"type": "http.response.body", "body": _event(i), "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    else:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _run_baseline(port: int) -> None:
    from hypercorn.config import Config
    from hypercorn.trio import serve

    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    trio.run(serve, _baseline_app, config)


# -- the client ----------------------------------------------------------------------------
class _Conn:
    """One keep-alive connection; reconnects when the server closes it (Hypercorn closes
    a connection after ``keep_alive_max_requests``, 1000 by default)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stream: trio.SocketStream | None = None
        self.buf = bytearray()

    async def _receive(self) -> None:
        assert self.stream is not None
        data = await self.stream.receive_some(65536)
        if not data:
            raise EOFError("server closed the connection")
        self.buf += data

    async def request(self, path: str, body: bytes) -> bytes:
        if self.stream is None:
            self.stream = await trio.open_tcp_stream("127.0.0.1", self.port)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        await self.stream.send_all(head + body)
        while b"\r\n\r\n" not in self.buf:
            await self._receive()
        head_end = self.buf.index(b"\r\n\r\n") + 4
        headers = bytes(self.buf[:head_end]).lower()
        del self.buf[:head_end]
        length = int(headers.split(b"content-length:")[1].split(b"\r\n")[0])
        while len(self.buf) < length:
            await self._receive()
        out = bytes(self.buf[:length])
        del self.buf[:length]
        if b"connection: close" in headers:
            await self.aclose()
        return out

    async def aclose(self) -> None:
        if self.stream is not None:
            await self.stream.aclose()
        self.stream, self.buf = None, bytearray()


async def _count_events(port: int, n: int) -> float:
    """Events/s of one stream of ``n`` events; reads until the chunked body's last chunk."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    body = _stream_body(n)
    head = (
        f"POST {TOKEN_STREAM} HTTP/1.1\r\nHost: x\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    start = time.perf_counter()
    await stream.send_all(head + body)
    seen, tail = 0, b""
    while not tail.endswith(b"\r\n0\r\n\r\n"):
        data = await stream.receive_some(1 << 20)
        if not data:
            raise RuntimeError("connection closed mid-stream")
        seen += (tail[-1:] + data).count(b"\n\n")
        tail = (tail + data)[-16:]
    elapsed = time.perf_counter() - start
    await stream.aclose()
    if seen != n:  # the headers end in \r\n\r\n, every event in \n\n
        raise RuntimeError(f"expected {n} events, saw {seen}")
    return n / elapsed


async def _unary_rate(port: int, total: int, concurrency: int) -> float:
    per_conn = max(1, total // concurrency)

    async def worker() -> None:
        conn = _Conn(port)
        for _ in range(per_conn):
            await conn.request(IDENTITY_INFER, UNARY_BODY)
        await conn.aclose()

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(worker)
    return per_conn * concurrency / (time.perf_counter() - start)


# -- orchestration -------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not start")


@contextmanager
def _server(argv: list[str], port: int) -> Iterator[None]:
    proc = subprocess.Popen([sys.executable, *argv], stdout=subprocess.DEVNULL)
    try:
        _wait_port(port, proc)
        time.sleep(0.5)  # models loaded (the demo repository loads in milliseconds)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=15)


async def _measure(port: int, events: int, requests: int, levels: list[int]) -> dict[str, float]:
    await _count_events(port, 100)  # warm up
    await _unary_rate(port, 50, 1)
    figures = {"sse events/s": await _count_events(port, events)}
    for c in levels:
        figures[f"unary req/s, {c} conn"] = await _unary_rate(port, requests, c)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="streamwise bench",
        description="Our own regression figures: streamwise against a bare Hypercorn app "
        "answering the same bytes, on its built-in demo model (not a comparison with "
        "other servers).",
    )
    parser.add_argument(
        "--events", type=int, default=50_000, help="events in the streaming test (default 50000)"
    )
    parser.add_argument(
        "--requests", type=int, default=5_000, help="requests per unary test (default 5000)"
    )
    parser.add_argument(
        "--concurrency",
        default="1,32",
        help="client connections for the unary tests, comma-separated (default 1,32)",
    )
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]

    results: dict[str, dict[str, float]] = {}
    port = _free_port()
    with _server(
        ["-c", f"from streamwise.bench import _run_baseline; _run_baseline({port})"], port
    ):
        results["baseline"] = trio.run(_measure, port, args.events, args.requests, levels)
    port = _free_port()
    argv_sw = [
        "-m",
        "streamwise",
        "serve",
        "--http-port",
        str(port),
        "--grpc-port",
        str(_free_port()),
        "--log-level",
        "WARNING",
    ]
    with _server(argv_sw, port):
        results["streamwise"] = trio.run(_measure, port, args.events, args.requests, levels)

    print(f"{'figure':28s} {'baseline':>12s} {'streamwise':>12s} {'ratio':>7s}")
    for key, base in results["baseline"].items():
        ours = results["streamwise"][key]
        print(f"{key:28s} {base:12.0f} {ours:12.0f} {ours / base:7.2f}")
    print("baseline: bare ASGI app on hypercorn-trio, same routes and bytes, no model")
    return 0


if __name__ == "__main__":
    sys.exit(main())
