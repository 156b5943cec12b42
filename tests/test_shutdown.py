"""Graceful shutdown with real signals, on a server in its own process.

SIGTERM (or SIGINT): both transports stop accepting at once, idle HTTP/1.1 connections
are closed, RPCs arriving on HTTP/2 connections already open are refused, calls in
flight finish within ``graceful_timeout``, the rest are ended with "server shutting down"
(SSE ``event: error``, gRPC UNAVAILABLE), models are unloaded, the process exits 0. A
second signal stops it at once.
"""

from __future__ import annotations

import gc
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import grpc
import httpx
import pytest
import trio

from streamwise import ServerInfo, load_settings, serve
from streamwise.server import GC_YOUNG_THRESHOLD
from tests.support import free_port
from tests.support.grpc_stubs import load_stubs

ROOT = pathlib.Path(__file__).parent.parent
MODELS = ROOT / "conformance" / "models" / "streamwise"  # token-streamer: n tokens, paced


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    http: str
    grpc: str
    stderr: list[bytes]

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def log(self) -> str:
        return b"".join(self.stderr).decode(errors="replace")


@contextmanager
def server(graceful_timeout: float) -> Iterator[Server]:
    http_port, grpc_port = free_port(), free_port()
    argv = [sys.executable, "-m", "src", "serve", str(MODELS)]
    argv += ["--http-port", str(http_port), "--grpc-port", str(grpc_port)]
    env = {**os.environ, "STREAMWISE_GRACEFUL_TIMEOUT": str(graceful_timeout)}
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    stderr: list[bytes] = []
    reader = threading.Thread(target=lambda: stderr.extend(proc.stderr), daemon=True)  # type: ignore[arg-type]
    reader.start()
    srv = Server(proc, f"http://127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}", stderr)
    try:
        for _ in range(300):
            assert proc.poll() is None, f"server exited early:\n{srv.log()}"
            try:
                if httpx.get(f"{srv.http}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            threading.Event().wait(0.1)
        yield srv
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        reader.join(timeout=5)
        proc.stderr.close()  # type: ignore[union-attr]


def tokens(n: int, delay_s: float, **fields: object) -> dict[str, object]:
    return {
        "inputs": [
            {"name": "n", "datatype": "INT64", "shape": [1], "data": [n]},
            {"name": "delay_s", "datatype": "FP64", "shape": [1], "data": [delay_s]},
        ],
        **fields,
    }


class SSEReader:
    """A token-streamer SSE stream, read to its end in a thread; started once ``after``
    events have arrived. ``events`` holds the SSE blocks, ``error`` what cut the stream."""

    PATH = "/v2/models/token-streamer/generate_stream"

    def __init__(self, srv: Server, n: int, delay_s: float, after: int = 2) -> None:
        self.events: list[str] = []
        self.error: httpx.HTTPError | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(srv.http, n, delay_s, after))
        self._thread.start()
        assert self._started.wait(10), "the stream did not start"

    def _read(self, base_url: str, n: int, delay_s: float, after: int) -> None:
        buffer = ""
        try:
            with httpx.Client(base_url=base_url, timeout=30) as client:
                with client.stream("POST", self.PATH, json=tokens(n, delay_s)) as response:
                    for text in response.iter_text():
                        buffer += text
                        while "\n\n" in buffer:
                            block, buffer = buffer.split("\n\n", 1)
                            self.events.append(block)
                            if len(self.events) == after:
                                self._started.set()
        except httpx.HTTPError as exc:
            self.error = exc

    def join(self, timeout: float) -> list[str]:
        self._thread.join(timeout)
        return self.events


def grpc_tokens(pb: object, n: int, delay_s: float) -> object:
    request = pb.ModelInferRequest(model_name="token-streamer")  # type: ignore[attr-defined]
    request.inputs.add(name="n", datatype="INT64", shape=[1]).contents.int64_contents.append(n)
    t = request.inputs.add(name="delay_s", datatype="FP64", shape=[1])
    t.contents.fp64_contents.append(delay_s)
    return request


def test_sigterm_lets_streams_in_flight_finish_and_refuses_new_work() -> None:
    pb, pb_grpc = load_stubs()
    with server(graceful_timeout=20) as srv:
        keepalive = httpx.Client(base_url=srv.http, timeout=10)
        assert keepalive.get("/v2/health/live").status_code == 200  # an open connection
        channel = grpc.insecure_channel(srv.grpc)
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        stub.ServerLive(pb.ServerLiveRequest(), timeout=5)  # an open HTTP/2 connection
        grpc_stream = stub.ModelStreamInfer(iter([grpc_tokens(pb, 6, 0.3)]), timeout=30)
        reader = SSEReader(srv, 6, 0.3)
        srv.signal(signal.SIGTERM)
        threading.Event().wait(0.3)  # let the signal land

        # a new connection is not accepted
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{srv.http}/v2/health/live", timeout=2)
        # a keep-alive connection idle at the signal is closed by the server, so a client
        # never sends a request into it: its next request finds no server to connect to
        # (one racing the close would be answered 503 "server shutting down")
        with pytest.raises(httpx.ConnectError):
            keepalive.post("/v2/models/token-streamer/generate_stream", json=tokens(1, 0))
        # a new RPC on the HTTP/2 connection that was already open: UNAVAILABLE
        with pytest.raises(grpc.RpcError) as rpc:
            list(stub.ModelStreamInfer(iter([grpc_tokens(pb, 1, 0)]), timeout=5))
        assert rpc.value.code() == grpc.StatusCode.UNAVAILABLE, rpc.value
        assert "shutting down" in rpc.value.details()

        # the streams in flight finish, whole
        replies = list(grpc_stream)
        events = reader.join(timeout=30)
        assert [r.outputs[0].name for r in replies] == ["token"] * 6
        assert reader.error is None, reader.error
        assert len(events) == 6 and all(e.startswith("data: ") for e in events), events
        assert srv.wait(timeout=20) == 0, srv.log()
        keepalive.close()
        channel.close()
    log = srv.log()
    assert "model token-streamer unloaded" in log, log
    assert "grace period over" not in log, log


def test_calls_still_running_when_the_grace_ends_are_told_why() -> None:
    pb, pb_grpc = load_stubs()
    with server(graceful_timeout=0.5) as srv:
        channel = grpc.insecure_channel(srv.grpc)
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        grpc_stream = stub.ModelStreamInfer(iter([grpc_tokens(pb, 1000, 0.1)]), timeout=30)
        next(grpc_stream)  # it is running
        reader = SSEReader(srv, 1000, 0.1)
        srv.signal(signal.SIGINT)

        with pytest.raises(grpc.RpcError) as rpc:
            list(grpc_stream)
        assert rpc.value.code() == grpc.StatusCode.UNAVAILABLE, rpc.value
        assert rpc.value.details() == "server shutting down"
        events = reader.join(timeout=30)
        assert reader.error is None, reader.error
        assert 2 <= len(events) < 1000, len(events)
        last = events[-1]
        assert last.startswith("event: error\ndata: "), last
        assert json.loads(last.split("data: ", 1)[1]) == {"error": "server shutting down"}
        assert srv.wait(timeout=20) == 0, srv.log()
        channel.close()
    assert "grace period over: ended 2 call(s)" in srv.log(), srv.log()


def test_a_second_signal_stops_at_once() -> None:
    with server(graceful_timeout=60) as srv:
        reader = SSEReader(srv, 1000, 0.1, after=1)  # cut by the second signal: no end
        srv.signal(signal.SIGTERM)
        threading.Event().wait(0.5)
        assert srv.proc.poll() is None, "the first signal must drain, not stop"
        srv.signal(signal.SIGTERM)
        # well before the 60 s grace: it did not wait for the stream
        assert srv.wait(timeout=15) == 0, srv.log()
        reader.join(timeout=10)
    assert "again: stopping now" in srv.log()


async def test_an_embedded_server_closes_its_clients_connections_when_it_stops() -> None:
    """``serve()`` embedded in an application: when it returns, no connection of its
    clients is left open. grpclib's close() cancels calls but leaves the connections to
    their clients (and Python 3.11's asyncio server too): an embedding application kept
    those sockets until it exited."""
    settings = load_settings(
        MODELS, overrides={"http_port": 0, "grpc_port": 0, "metrics_port": 0}, environ={}
    )
    async with trio.open_nursery() as nursery:
        info: ServerInfo = await nursery.start(serve, settings)
        assert info.grpc_port is not None
        grpc_conn = await trio.open_tcp_stream("127.0.0.1", info.grpc_port)
        await grpc_conn.send_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\0\0\0\4\0\0\0\0\0")
        assert await grpc_conn.receive_some()  # the server's SETTINGS: a live connection
        http_conn = await trio.open_tcp_stream("127.0.0.1", info.http_port)
        await http_conn.send_all(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await http_conn.receive_some()).startswith(b"HTTP/1.1 200")  # kept alive
        info.shutdown()
    # serve() has returned: both connections are closed from the server's side
    for conn in (grpc_conn, http_conn):
        async with conn:
            with trio.fail_after(5):
                while await conn.receive_some():
                    pass  # whatever the server said last (a GOAWAY), then the end


async def test_serving_tunes_the_collector_and_leaves_it_as_it_was() -> None:
    """``gc_tuning`` (the default): startup's objects frozen and the young generation
    collected less often while serving; the collector as it was once ``serve()`` returns."""
    before = gc.get_threshold()
    settings = load_settings(
        MODELS, overrides={"http_port": 0, "grpc_port": 0, "metrics_port": 0}, environ={}
    )
    async with trio.open_nursery() as nursery:
        info: ServerInfo = await nursery.start(serve, settings)
        serving = gc.get_threshold(), gc.get_freeze_count()
        info.shutdown()
    assert serving[0] == (GC_YOUNG_THRESHOLD, *before[1:])
    assert serving[1] > 1000  # the modules, the models, the app
    assert (gc.get_threshold(), gc.get_freeze_count()) == (before, 0)


async def test_servers_overlapping_in_one_process_leave_the_collector_as_it_was() -> None:
    """A starts, B starts, A stops, B stops: the last one out restores what was there
    before the first one in."""
    before = gc.get_threshold()
    settings = load_settings(
        MODELS, overrides={"http_port": 0, "grpc_port": 0, "metrics_port": 0}, environ={}
    )
    async with trio.open_nursery() as outer:
        b_info: ServerInfo | None = None
        async with trio.open_nursery() as inner:
            a_info: ServerInfo = await inner.start(serve, settings)
            b_info = await outer.start(serve, settings)
            a_info.shutdown()
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, *before[1:])  # B still serves
        b_info.shutdown()
    assert (gc.get_threshold(), gc.get_freeze_count()) == (before, 0)
