"""Soak: many disconnects and many concurrent slow streams against one in-process server.

    python -m scripts.soak [disconnects|slow-streams|all] [--n N] [--streams S] ...

Run from the repository root (it uses tests/support); figures in docs/reliability.md ("Soak").

- ``disconnects``: N streams per (transport, model), each left after 1 or 2 events: SSE
  (socket closed) and gRPC ModelStreamInfer (grpc.aio ``call.cancel()``), on
  ``slow-stream`` (trio-native) and ``slow-stream-aio`` (asyncio, through the bridge).
  Every model must be cancelled (its ``finally`` ran, with the exception). After every
  100 streams the trio tasks, the bridge loop's asyncio tasks, the data plane's calls in
  flight and the open file descriptors must be back to their baseline; RSS is sampled.
  Clients: raw sockets in this trio run (tests/support/rawhttp.py), and grpc.aio on its own
  asyncio loop in a thread of its own (the server's asyncio loop, grpclib's, is left alone).
- ``slow-streams``: S concurrent streams of ``soak-stream`` (T tokens, the first after
  F s, then one every D s), on SSE, then on gRPC: all must be open at once (the data
  plane's calls in flight reach S) and end with every token, in order, and no error.
  Clients: a child process (``python -m scripts.soak _client CONFIG``), so that the server has its
  thread to itself and the RSS figures are the server's.

Exits 1 if an invariant fails.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import logging
import os
import resource
import statistics
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
import grpc.aio
import trio

from streamwise import ServerInfo, load_settings, serve
from streamwise.grpc.convert import request_to_proto
from streamwise.settings import Settings
from streamwise.types import InferenceRequest
from tests.support import ROOT, TEST_MODELS, probe, rawhttp
from tests.support.grpc_stubs import load_stubs

pb2, pb2_grpc = load_stubs()
T = TypeVar("T")

SETTLE_S = 5.0  # how long tasks may take to be gone after the last model's finally
FINALLY_S = 10.0  # the disconnect models' next step is 60 s away: this is "not cancelled"

failures: list[str] = []


def fail(message: str) -> None:
    failures.append(message)
    print(f"FAIL: {message}", flush=True)


# -- what the process holds -----------------------------------------------------------
def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def trio_tasks() -> Counter[str]:
    """Every task of this trio run, by name (the server's and ours)."""
    names: Counter[str] = Counter()

    def walk(task: trio.lowlevel.Task) -> None:
        names[task.name] += 1
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                walk(child)

    walk(trio.lowlevel.current_root_task())
    return names


@dataclass
class Snapshot:
    trio: Counter[str]
    aio: Counter[str]
    in_flight: int
    fds: int

    def same_as(self, other: Snapshot) -> bool:
        return (self.trio, self.aio, self.in_flight, self.fds) == (
            other.trio,
            other.aio,
            other.in_flight,
            other.fds,
        )

    def diff(self, base: Snapshot) -> str:
        def delta(now: Counter[str], then: Counter[str]) -> str:
            more, fewer = now - then, then - now
            return f"+{dict(more)} -{dict(fewer)}"

        return (
            f"trio tasks {sum(self.trio.values())} (baseline {sum(base.trio.values())}: "
            f"{delta(self.trio, base.trio)}), asyncio tasks {sum(self.aio.values())} "
            f"(baseline {sum(base.aio.values())}: {delta(self.aio, base.aio)}), "
            f"in flight {self.in_flight}, fds {self.fds} (baseline {base.fds})"
        )


class Server:
    def __init__(self, info: ServerInfo) -> None:
        self.info = info
        backend = info.dataplane.backends.asyncio
        assert backend is not None
        self.loop = backend.aio.loop  # the server's asyncio loop (grpclib, asyncio models)
        self.baseline = self.snapshot()

    def snapshot(self) -> Snapshot:
        aio = Counter(
            getattr(t.get_coro(), "__qualname__", "?") for t in asyncio.all_tasks(self.loop)
        )
        return Snapshot(trio_tasks(), aio, self.info.dataplane.in_flight, open_fds())

    def cancelled_timers(self) -> int:
        """Cancelled asyncio timers the server's loop still holds in its timer heap
        (``_scheduled``: asyncio purges them when they pile up)."""
        return sum(h.cancelled() for h in self.loop._scheduled)  # type: ignore[attr-defined]

    async def settle(self, where: str) -> float | None:
        """Wait until the server is back to its baseline; how long that took (None: it
        was not, in SETTLE_S)."""
        start = time.monotonic()
        with trio.move_on_after(SETTLE_S):
            while not self.snapshot().same_as(self.baseline):  # noqa: ASYNC110 - no event
                await trio.sleep(0.001)
            return time.monotonic() - start
        fail(
            f"{where}: not back to baseline after {SETTLE_S} s: {self.snapshot().diff(self.baseline)}"
        )
        return None


class LogCounter(logging.Handler):
    """Warnings and errors the server logs during the soak."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


# -- the gRPC client: grpc.aio on its own loop, in a thread -------------------------------
class GrpcClient:
    def __init__(self, port: int) -> None:
        self.target = f"127.0.0.1:{port}"
        self.loop = asyncio.SelectorEventLoop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    async def run(self, coro: Coroutine[Any, Any, T], wait_s: float = 120) -> T:
        """Run ``coro`` on the client's loop; wait for it without blocking trio."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return await trio.to_thread.run_sync(future.result, wait_s)

    def channel(self) -> grpc.aio.Channel:
        # A subchannel pool of its own: one HTTP/2 connection per channel, closed with it.
        return grpc.aio.insecure_channel(
            self.target, options=[("grpc.use_local_subchannel_pool", 1)]
        )

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def request(model: str, rid: str, **parameters: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": rid,
        "inputs": [{"name": "p", "shape": [1], "datatype": "BYTES", "data": ["x"]}],
    }
    if parameters:
        body["parameters"] = parameters
    return body


def grpc_request(model: str, body: dict[str, Any]) -> Any:
    proto = request_to_proto(InferenceRequest.model_validate(body), model)
    return pb2.ModelInferRequest.FromString(bytes(proto))


# -- disconnects ------------------------------------------------------------------------
class StreamFailed(Exception):
    pass


async def sse_leave_after(port: int, model: str, rid: str, k: int) -> float:
    """Read k events (or more, when they came in one chunk), close the socket: when."""
    r = await rawhttp.request(
        port, "POST", f"/v2/models/{model}/generate_stream", request(model, rid)
    )
    if r.status != 200:
        raise StreamFailed(f"status {r.status}: {await r.read_body()!r}")
    seen = 0
    while seen < k:
        chunk = await r.read_chunk()
        if chunk is None or b"event: error" in chunk:
            raise StreamFailed(f"stream ended after {seen} events: {chunk!r}")
        seen += chunk.count(b"data: ")
    gone = time.monotonic()
    await r.stream.aclose()
    return gone


async def grpc_cancel_after(stub: Any, model: str, rid: str, k: int) -> float:
    """(client loop) Read k messages, cancel the call: when."""
    call = stub.ModelStreamInfer(iter([grpc_request(model, request(model, rid))]))
    for seen in range(k):
        if await call.read() is grpc.aio.EOF:
            raise StreamFailed(f"stream ended after {seen} messages: {await call.code()}")
    gone = time.monotonic()
    call.cancel()
    return gone


async def model_finally(rid: str) -> tuple[float, bool] | None:
    """When the model's finally ran and whether it was cancelled; None: not in time."""
    with trio.move_on_after(FINALLY_S):
        while rid not in probe.finally_at:  # noqa: ASYNC110 - the model writes a dict
            await trio.sleep(0.001)
        return probe.finally_at.pop(rid), probe.cancelled.pop(rid)
    return None


@dataclass
class DisconnectRun:
    transport: str
    model: str
    n: int = 0
    cancelled: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    rss: list[int] = field(default_factory=list)  # before, then after every batch
    settle: list[float | None] = field(default_factory=list)
    objects: tuple[int, int] = (0, 0)
    timers: int = 0  # cancelled asyncio timers the bridge loop held more at the end


def gc_objects() -> int:
    gc.collect()
    return len(gc.get_objects())


async def disconnects(
    server: Server, client: GrpcClient, transport: str, model: str, n: int, batch: int, record: bool
) -> DisconnectRun:
    run = DisconnectRun(transport, model)
    where = f"{transport} {model}"
    if record:
        run.objects = (gc_objects(), 0)
        run.timers = -server.cancelled_timers()
        run.rss.append(rss_kib())
    done = 0
    while done < n:
        size = min(batch, n - done)
        channel = stub = None
        if transport == "gRPC":

            async def open_channel() -> tuple[Any, Any]:
                ch = client.channel()
                return ch, pb2_grpc.GRPCInferenceServiceStub(ch)

            channel, stub = await client.run(open_channel())
        for i in range(size):
            rid = str(uuid.uuid4())
            k = 1 + (done + i) % 2
            try:
                if transport == "SSE":
                    gone = await sse_leave_after(server.info.http_port, model, rid, k)
                else:
                    gone = await client.run(grpc_cancel_after(stub, model, rid, k), 30)
            except Exception as exc:
                run.errors += 1
                fail(f"{where} stream {done + i}: {type(exc).__name__}: {exc}")
                continue
            ended = await model_finally(rid)
            if ended is None:
                fail(f"{where} stream {done + i}: the model's finally did not run in {FINALLY_S} s")
                continue
            at, was_cancelled = ended
            run.latencies.append(at - gone)
            run.cancelled += was_cancelled
            if not was_cancelled:
                fail(f"{where} stream {done + i}: the model ended without being cancelled")
        if channel is not None:
            await client.run(channel.close())
            # grpcio holds its poller's fds (epoll, eventfd, a socket pair) while a channel
            # object lives: drop ours, so that the fd count can go back to its baseline.
            channel = stub = None
        done += size
        run.settle.append(await server.settle(f"{where} after {done} streams"))
        if record:
            run.rss.append(rss_kib())
    run.n = done
    if record:
        run.objects = (run.objects[0], gc_objects())
        run.timers += server.cancelled_timers()
    return run


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f}"


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) > 1 else values[0]


def print_disconnects(runs: list[DisconnectRun]) -> None:
    print()
    print(
        "| transport | model | streams | model cancelled | errors | cancel->finally median / "
        "p99 ms | back to baseline (max settle ms) | RSS start / max / end MiB | "
        "RSS growth KiB per 1000 | gc objects start -> end | cancelled asyncio timers kept |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |")
    for r in runs:
        lat = r.latencies or [0.0]
        settled = [t for t in r.settle if t is not None] or [0.0]
        growth = (r.rss[-1] - r.rss[0]) * 1000 / max(r.n, 1)
        print(
            f"| {r.transport} | {r.model} | {r.n} | {r.cancelled} | {r.errors} | "
            f"{ms(statistics.median(lat))} / {ms(p99(lat))} | "
            f"{len(settled)}/{len(r.settle)} batches ({ms(max(settled))}) | "
            f"{r.rss[0] / 1024:.1f} / {max(r.rss) / 1024:.1f} / {r.rss[-1] / 1024:.1f} | "
            f"{growth:+.0f} | {r.objects[0]} -> {r.objects[1]} | {r.timers:+d} |"
        )


async def run_disconnects(server: Server, client: GrpcClient, args: argparse.Namespace) -> None:
    combos = [(t, m) for t in args.transports for m in ("slow-stream", "slow-stream-aio")]
    print(f"\n## disconnects: {args.n} streams per transport and model, left after 1-2 events")
    for transport, model in combos:  # warm-up: lazy imports, caches, grpcio's own fds
        await disconnects(server, client, transport, model, args.warmup, args.batch, False)
    rss_before = rss_kib()
    runs = []
    for transport, model in combos:
        run = await disconnects(server, client, transport, model, args.n, args.batch, True)
        print(
            f"{transport:4s} {model:15s} {run.n} streams, {run.cancelled} cancelled, RSS "
            + " ".join(f"{kib / 1024:.1f}" for kib in run.rss),
            flush=True,
        )
        runs.append(run)
    print_disconnects(runs)
    total = sum(r.n for r in runs)
    print(
        f"\nRSS over all {total} streams: {rss_before / 1024:.1f} -> {rss_kib() / 1024:.1f} MiB "
        f"({(rss_kib() - rss_before) * 1000 / total:+.0f} KiB per 1000 streams)"
    )


# -- slow streams -----------------------------------------------------------------------
# The clients run in a child process (``python -m scripts.soak _client CONFIG``): at 2000
# streams the server needs its thread to itself (a token every 0.5 s is 4000 events/s),
# and the RSS figures are then the server's alone.
def expected(tokens: int) -> list[str]:
    return [f"t{i}" for i in range(tokens)]


def slow_request(rid: str, config: dict[str, Any]) -> dict[str, Any]:
    return request(
        "soak-stream",
        rid,
        tokens=config["tokens"],
        delay=config["delay"],
        first_delay=config["first_delay"],
    )


async def sse_slow(rid: str, config: dict[str, Any], connecting: trio.Semaphore) -> list[float]:
    """One stream, checked; when each chunk holding tokens came, from the request's start."""
    async with connecting:  # Hypercorn listens with a backlog of 100
        start = time.monotonic()
        r = await rawhttp.request(
            config["port"],
            "POST",
            "/v2/models/soak-stream/generate_stream",
            slow_request(rid, config),
        )
    arrivals, body = [], bytearray()
    try:
        if r.status != 200:
            raise StreamFailed(f"status {r.status}")
        while (chunk := await r.read_chunk()) is not None:
            arrivals.append(time.monotonic() - start)
            body += chunk
    finally:
        await r.stream.aclose()
    events = rawhttp.parse_sse(bytes(body))
    if any(e.get("event") == "error" for e in events):
        raise StreamFailed("event: error")
    got = [json.loads(e["data"])["outputs"][0]["data"][0] for e in events]
    if got != expected(config["tokens"]):
        raise StreamFailed(f"tokens {got}")
    return arrivals


async def sse_clients(config: dict[str, Any], errors: Counter[str], timings: list[Any]) -> None:
    connecting = trio.Semaphore(config["connect_at_once"])

    async def one(rid: str) -> None:
        try:
            arrivals = await sse_slow(rid, config, connecting)
        except Exception as exc:
            errors[f"{type(exc).__name__}: {exc}"[:200]] += 1
        else:
            timings.append((arrivals[0], arrivals[-1] - arrivals[0]))

    async with trio.open_nursery() as nursery:
        for rid in config["rids"]:
            nursery.start_soon(one, rid)


async def grpc_clients(config: dict[str, Any], errors: Counter[str], timings: list[Any]) -> None:
    """Every stream at once, ``per_channel`` to a connection (grpclib allows 100 streams
    at once on one connection)."""
    rids, per_channel = config["rids"], config["per_channel"]
    target = f"127.0.0.1:{config['port']}"
    options = [("grpc.use_local_subchannel_pool", 1)]  # one connection per channel
    channels = [grpc.aio.insecure_channel(target, options=options) for _ in rids[::per_channel]]
    stubs = [pb2_grpc.GRPCInferenceServiceStub(ch) for ch in channels]

    async def one(i: int, rid: str) -> None:
        request = grpc_request("soak-stream", slow_request(rid, config))
        got, arrivals = [], []
        start = time.monotonic()
        try:
            call = stubs[i // per_channel].ModelStreamInfer(iter([request]))
            async for message in call:
                arrivals.append(time.monotonic() - start)
                got.append(message.outputs[0].contents.bytes_contents[0].decode())
            code = await call.code()
        except grpc.aio.AioRpcError as exc:
            errors[f"{exc.code()}: {exc.details()}"[:200]] += 1
            return
        if got != expected(config["tokens"]):
            errors[f"tokens {got}"[:200]] += 1
        elif code != grpc.StatusCode.OK:
            errors[f"status {code}"] += 1
        else:
            timings.append((arrivals[0], arrivals[-1] - arrivals[0]))

    try:
        await asyncio.gather(*(one(i, rid) for i, rid in enumerate(rids)))
    finally:
        await asyncio.gather(*(ch.close() for ch in channels))


def client_main(config: dict[str, Any]) -> None:
    """The child process: run the streams, print one JSON line of results."""
    config["rids"] = [f"{config['prefix']}-{i}" for i in range(config["streams"])]
    errors: Counter[str] = Counter()
    timings: list[tuple[float, float]] = []  # (first token after, last - first), seconds
    start = time.monotonic()  # CLOCK_MONOTONIC: the parent's clock too
    if config["transport"] == "SSE":
        trio.run(sse_clients, config, errors, timings)
    else:
        asyncio.run(grpc_clients(config, errors, timings))
    result = {
        "start": start,
        "end": time.monotonic(),
        "errors": errors,
        "timings": timings,
        "rss_peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "cpu": sum(os.times()[:2]),
    }
    print(json.dumps(result))


@dataclass
class SlowRun:
    transport: str
    streams: int
    tokens: int
    delay: float
    first_delay: float
    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    finished: int = 0  # models that ran to their end (finally, not cancelled)
    cancelled: int = 0
    wall: float = 0.0
    first_token: list[float] = field(default_factory=list)
    span: list[float] = field(default_factory=list)
    all_open_at: float | None = None
    peak_in_flight: int = 0
    rss_before: int = 0
    rss_peak: int = 0
    rss_after: int = 0
    client_rss_peak: int = 0
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    peak_trio_tasks: int = 0
    peak_aio_tasks: int = 0
    settle: float | None = 0.0


async def slow_streams(server: Server, transport: str, args: argparse.Namespace) -> SlowRun:
    run = SlowRun(transport, args.streams, args.tokens, args.delay, args.first_delay)
    prefix = f"soak-{transport}-{uuid.uuid4()}"
    rids = [f"{prefix}-{i}" for i in range(run.streams)]
    info = server.info
    config = {
        "transport": transport,
        "port": info.http_port if transport == "SSE" else info.grpc_port,
        "prefix": prefix,
        "streams": run.streams,
        "tokens": run.tokens,
        "delay": run.delay,
        "first_delay": run.first_delay,
        "connect_at_once": args.connect_at_once,
        "per_channel": args.per_channel,
    }
    gc.collect()
    run.rss_before = run.rss_peak = rss_kib()
    all_open_at: float | None = None

    async def sample() -> None:
        nonlocal all_open_at
        for tick in itertools.count():
            run.rss_peak = max(run.rss_peak, rss_kib())
            in_flight = info.dataplane.in_flight
            run.peak_in_flight = max(run.peak_in_flight, in_flight)
            if all_open_at is None and in_flight == run.streams:
                all_open_at = time.monotonic()
            if tick % 5 == 0:  # walking ~10k tasks takes a few ms
                snap = server.snapshot()
                run.peak_trio_tasks = max(run.peak_trio_tasks, sum(snap.trio.values()))
                run.peak_aio_tasks = max(run.peak_aio_tasks, sum(snap.aio.values()))
            await trio.sleep(0.1)

    cpu = sum(os.times()[:2])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sample)
        argv = [sys.executable, "-m", "scripts.soak", "_client", json.dumps(config)]
        child = await trio.run_process(argv, cwd=ROOT, capture_stdout=True, check=False)
        nursery.cancel_scope.cancel()
    run.server_cpu = sum(os.times()[:2]) - cpu
    where = f"{transport} slow streams"
    if child.returncode != 0:
        fail(f"{where}: the client process exited {child.returncode}")
        return run
    result = json.loads(child.stdout.decode().splitlines()[-1])
    run.errors = Counter(result["errors"])
    run.ok = run.streams - sum(run.errors.values())
    run.wall = result["end"] - result["start"]
    run.first_token = [first for first, _ in result["timings"]]
    run.span = [span for _, span in result["timings"]]
    run.all_open_at = None if all_open_at is None else all_open_at - result["start"]
    run.client_rss_peak = result["rss_peak_kib"]
    run.client_cpu = result["cpu"]
    run.settle = await server.settle(where)
    for rid in rids:
        if rid in probe.finally_at:
            probe.finally_at.pop(rid)
            if probe.cancelled.pop(rid):
                run.cancelled += 1
            else:
                run.finished += 1
    gc.collect()
    run.rss_after = rss_kib()

    if run.errors:
        fail(f"{where}: {sum(run.errors.values())} errors: {dict(run.errors.most_common(5))}")
    if run.finished != run.streams:
        fail(
            f"{where}: {run.finished} of {run.streams} models ran to their end "
            f"({run.cancelled} cancelled)"
        )
    if run.peak_in_flight != run.streams:
        fail(f"{where}: at most {run.peak_in_flight} of {run.streams} streams were open at once")
    return run


def print_slow(runs: list[SlowRun]) -> None:
    print()
    print(
        "| transport | streams | ok | errors | models ran to the end | all open after s "
        "| peak open | first token after s, median / max (ideal) | first -> last token s, "
        "median / max (ideal) | wall s | server RSS before / "
        "peak / after MiB | server RSS per open stream KiB | peak trio / asyncio tasks |"
    )
    print("| --- |" + " ---: |" * 12)
    for r in runs:
        per_stream = (r.rss_peak - r.rss_before) / max(r.peak_in_flight, 1)
        all_open = f"{r.all_open_at:.2f}" if r.all_open_at is not None else "never"

        def spread(values: list[float], ideal: float) -> str:
            if not values:
                return "-"
            return f"{statistics.median(values):.2f} / {max(values):.2f} ({ideal:g})"

        first = spread(r.first_token, r.first_delay)
        span = spread(r.span, (r.tokens - 1) * r.delay)
        print(
            f"| {r.transport} | {r.streams} | {r.ok} | {sum(r.errors.values())} | "
            f"{r.finished} | {all_open} | {r.peak_in_flight} | {first} | {span} | "
            f"{r.wall:.2f} | {r.rss_before / 1024:.1f} / {r.rss_peak / 1024:.1f} / "
            f"{r.rss_after / 1024:.1f} | {per_stream:.1f} | "
            f"{r.peak_trio_tasks} / {r.peak_aio_tasks} |"
        )


async def run_slow_streams(server: Server, client: GrpcClient, args: argparse.Namespace) -> None:
    print(
        f"\n## slow-streams: {args.streams} concurrent streams of {args.tokens} tokens, the "
        f"first after {args.first_delay:g} s, then one every {args.delay:g} s "
        "(clients in a child process)"
    )
    runs = []
    for transport in args.transports:
        run = await slow_streams(server, transport, args)
        print(
            f"{transport:4s} {run.ok}/{run.streams} ok in {run.wall:.2f} s, peak in flight "
            f"{run.peak_in_flight}; CPU s: server {run.server_cpu:.1f}, client process "
            f"{run.client_cpu:.1f}; client process peak RSS {run.client_rss_peak / 1024:.1f} MiB",
            flush=True,
        )
        runs.append(run)
    print_slow(runs)


# -- main -------------------------------------------------------------------------------
async def main(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {
        "http_port": 0,
        "grpc_port": 0,
        "metrics_port": 0,
        "log_level": "WARNING",
    }
    if "model_max_concurrency" in Settings.model_fields:  # the limit must not be what we test
        overrides["model_max_concurrency"] = 2 * max(args.streams, 1)
    settings = load_settings(TEST_MODELS, overrides=overrides, environ={})
    logs = LogCounter()
    phases: list[Callable[[Server, GrpcClient, argparse.Namespace], Awaitable[None]]] = []
    if args.phase in ("disconnects", "all"):
        phases.append(run_disconnects)
    if args.phase in ("slow-streams", "all"):
        phases.append(run_slow_streams)
    began = time.monotonic()
    async with trio.open_nursery() as nursery:
        info = await nursery.start(serve, settings)
        client = GrpcClient(info.grpc_port or 0)
        try:
            server = Server(info)
            logging.getLogger().addHandler(logs)
            b = server.baseline
            print(
                f"server up: baseline {sum(b.trio.values())} trio tasks, "
                f"{sum(b.aio.values())} asyncio tasks, RSS {rss_kib() / 1024:.1f} MiB, "
                f"{open_fds()} fds; overrides {overrides}",
                flush=True,
            )
            for phase in phases:
                await phase(server, client, args)
        finally:
            logging.getLogger().removeHandler(logs)
            client.close()
        nursery.cancel_scope.cancel()
    print(f"\nserver logged {len(logs.records)} warnings/errors during the soak")
    for record in logs.records[:5]:
        print(f"  {record.levelname} {record.name}: {record.getMessage()[:300]}")
    errors = [r for r in logs.records if r.levelno >= logging.ERROR]
    if errors:
        fail(f"the server logged {len(errors)} errors")
    print(f"total {time.monotonic() - began:.1f} s")
    if failures:
        print(f"\n{len(failures)} invariant(s) failed", file=sys.stderr)
        return 1
    print("all invariants held")
    return 0


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "phase", nargs="?", default="all", choices=["disconnects", "slow-streams", "all"]
    )
    p.add_argument("--n", type=int, default=1000, help="disconnects per transport and model")
    p.add_argument("--batch", type=int, default=100, help="streams between checks and RSS samples")
    p.add_argument(
        "--warmup", type=int, default=50, help="unmeasured disconnects per combination first"
    )
    p.add_argument("--streams", type=int, default=2000, help="concurrent slow streams")
    p.add_argument("--tokens", type=int, default=6)
    p.add_argument("--delay", type=float, default=0.5, help="seconds between tokens")
    p.add_argument(
        "--first-delay",
        type=float,
        default=5.0,
        help="seconds before the first token: long enough for every stream to be open",
    )
    p.add_argument(
        "--connect-at-once", type=int, default=64, help="SSE connects in progress at once"
    )
    p.add_argument("--per-channel", type=int, default=50, help="gRPC streams per connection")
    p.add_argument(
        "--transports", type=lambda s: s.split(","), default=["SSE", "gRPC"], help="SSE,gRPC"
    )
    return p.parse_args()


if __name__ == "__main__":
    if sys.argv[1:2] == ["_client"]:
        sys.exit(client_main(json.loads(sys.argv[2])))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(trio.run(main, parse_args()))
