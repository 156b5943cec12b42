"""The targets (a strategy and a sender each), the clients they share, and the run of one
case with the client's own failures as outcomes; liveness afterwards."""

from __future__ import annotations

import pathlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
from hypothesis import strategies as st

from .common import MODELS, SLOW, TIMEOUT, Outcome, pb2, pb2_grpc
from .grpc_garbage import grpc_garbage_cases, send_grpc_garbage
from .grpc_messages import Grpc, grpc_cases, grpc_stream_cases, send_grpc_infer, send_grpc_stream
from .raw_http import raw_cases, send_raw
from .rest import garbage_cases, rest_cases, send_rest_garbage, send_rest_infer, send_rest_stream
from .rest_paths import path_cases, send_path


@dataclass
class Clients:
    http: httpx.Client
    http_port: int
    rpc: Grpc


@dataclass(frozen=True)
class Target:
    name: str
    strategy: st.SearchStrategy[Any]
    send: Callable[[Clients, Any], Outcome]


TARGETS = [
    Target("rest_infer", rest_cases(), lambda c, x: send_rest_infer(c.http, x)),
    Target("rest_stream", rest_cases(), lambda c, x: send_rest_stream(c.http, x)),
    Target("rest_garbage", garbage_cases(), lambda c, x: send_rest_garbage(c.http, x)),
    Target("rest_paths", path_cases(), lambda c, x: send_path(c.http, x)),
    Target("raw_http", raw_cases(), lambda c, x: send_raw(c.http_port, x)),
    Target("grpc_infer", grpc_cases(), lambda c, x: send_grpc_infer(c.rpc, x)),
    Target("grpc_stream", grpc_stream_cases(), lambda c, x: send_grpc_stream(c.rpc, x)),
    Target("grpc_garbage", grpc_garbage_cases(), lambda c, x: send_grpc_garbage(c.rpc, x)),
]


def run_case(target: Target, clients: Clients, case: Any) -> Outcome:
    """``target.send``, with the client's own failures (a timeout, a dropped connection)
    as outcomes: each is a problem."""
    started = time.monotonic()
    try:
        outcome = target.send(clients, case)
        elapsed = time.monotonic() - started
        if outcome.problem is None and elapsed > SLOW:
            outcome.problem = f"the answer took {elapsed:.1f} s"
        return outcome
    except httpx.TimeoutException as exc:
        return Outcome("timeout", f"no answer in {TIMEOUT} s ({type(exc).__name__})")
    except httpx.TransportError as exc:
        return Outcome("transport error", f"{type(exc).__name__}: {exc}")
    except OSError as exc:
        return Outcome("socket error", f"{type(exc).__name__}: {exc}")


def open_clients(http_port: int, grpc_port: int) -> Clients:
    http = httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=TIMEOUT)
    channel = grpc.insecure_channel(
        f"127.0.0.1:{grpc_port}",
        options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)],
    )
    return Clients(http, http_port, Grpc(channel))


def close_clients(clients: Clients) -> None:
    clients.http.close()
    clients.rpc.channel.close()


def liveness_problems(clients: Clients) -> list[str]:
    """The server still answers health on both transports, and every demo model is READY."""
    problems = []
    for path in ("/v2/health/live", "/v2/health/ready", *(f"/v2/models/{m}/ready" for m in MODELS)):
        status = clients.http.get(path).status_code
        if status != 200:
            problems.append(f"GET {path}: {status}")
    stub = pb2_grpc.GRPCInferenceServiceStub(clients.rpc.channel)
    if not stub.ServerLive(pb2.ServerLiveRequest(), timeout=10).live:
        problems.append("gRPC ServerLive: not live")
    for name in MODELS:
        if not stub.ModelReady(pb2.ModelReadyRequest(name=name), timeout=10).ready:
            problems.append(f"gRPC ModelReady {name}: not ready")
    return problems


def rss_kib() -> int:
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0
