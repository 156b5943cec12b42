"""``streamwise bench``: latency and throughput of any V2 / Open Inference Protocol server,
streaming first (docs/bench.md).

    streamwise bench URL --model NAME [--mode sse|infer|grpc-stream|grpc-infer] ...
    streamwise bench --self      # streamwise against a bare Hypercorn app, same bytes

The client is cheap on purpose: one asyncio loop in this process; REST on raw keep-alive
HTTP/1.1 sockets (chunked bodies and server-sent events parsed by hand), gRPC on grpclib
with streamwise's own messages (``streamwise._proto``), both runtime dependencies already:
the command needs no extra package. asyncio rather than trio because grpclib runs on
asyncio only; one loop for every mode keeps the client's cost comparable across modes.

Closed loop (``--concurrency 1,10,100``): that many callers, each sending its next request
when its last one ends. Open loop (``--rate R``): requests start at Poisson arrivals, R a
second on average, whatever the server's pace. Each level ends after ``--requests`` or
``--duration``, whichever comes first (calls in flight then are waited for).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import socket
import subprocess
import sys
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from .bench_plot import PlotError, check_matplotlib, compare, plot

MODES = ("sse", "infer", "grpc-stream", "grpc-infer")
STREAMING_MODES = ("sse", "grpc-stream")
TOKEN_STREAM = "/v2/models/token-streamer/generate_stream"


class BenchError(Exception):
    """A mistake in the command line or a target that cannot be measured: one line."""


# -- the REST client: raw HTTP/1.1 on asyncio streams --------------------------------------
class CutStream(Exception):
    """The connection ended inside a response."""


class HttpConn:
    """One keep-alive connection, opened when first used and again after the server
    closes it (Hypercorn does after ``keep_alive_max_requests``)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        on_event: Callable[[bytes], None] | None = None,
    ) -> tuple[int, bytes]:
        """(status, body); with ``on_event``, each server-sent event of a 200 goes there as
        it arrives and the body returned is empty."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        got_head = False
        try:
            raw = await self.reader.readuntil(b"\r\n\r\n")
            got_head = True
            status = int(raw.split(b" ", 2)[1])
            headers = raw.lower()
            events = on_event if status == 200 else None
            if b"transfer-encoding: chunked" in headers:
                out = await self._chunked(events)
            elif b"content-length:" in headers:
                length = int(headers.split(b"content-length:")[1].split(b"\r\n")[0])
                out = await self.reader.readexactly(length)
                if events is not None:
                    _split_events(bytearray(out + b"\n\n"), events)
                    out = b""
            else:  # the body ends with the connection
                out = await self.reader.read()
                await self.close()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError) as exc:
            await self.close()
            if got_head:
                raise CutStream(str(exc)) from None
            raise
        if b"connection: close" in headers:
            await self.close()
        return status, out

    async def _chunked(self, on_event: Callable[[bytes], None] | None) -> bytes:
        assert self.reader is not None
        body = bytearray()
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                while await self.reader.readuntil(b"\r\n") != b"\r\n":
                    pass  # trailers
                break
            body += (await self.reader.readexactly(size + 2))[:-2]
            if on_event is not None:
                _split_events(body, on_event)
        return bytes(body)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
        self.reader = self.writer = None


def _split_events(buffer: bytearray, on_event: Callable[[bytes], None]) -> None:
    """Hands each complete event (ended by a blank line) to ``on_event``; keeps the rest."""
    while (end := buffer.find(b"\n\n")) >= 0:
        event = bytes(buffer[:end]).strip(b"\r\n")
        del buffer[: end + 2]
        if event:
            on_event(event)


# -- what one level records ----------------------------------------------------------------
@dataclass
class Level:
    """The calls of one concurrency level or rate, as they end."""

    label: str
    concurrency: int | None = None
    rate: float | None = None
    ttft: list[float] = field(default_factory=list)
    gaps: list[float] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)
    responses: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    started: int = 0

    def ok(self, start: float, times: list[float], end: float) -> None:
        self.latency.append(end - start)
        self.responses += len(times)
        if times:
            self.ttft.append(times[0] - start)
            self.gaps.extend(b - a for a, b in zip(times, times[1:], strict=False))

    def error(self, kind: str) -> None:
        self.errors[kind] += 1


def percentiles(values: list[float]) -> dict[str, float | None]:
    """p50/p90/p99 (nearest rank) and the mean, in seconds; None when there are none."""
    if not values:
        return {"p50": None, "p90": None, "p99": None, "mean": None}
    ordered = sorted(values)

    def rank(p: float) -> float:
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]

    return {"p50": rank(50), "p90": rank(90), "p99": rank(99), "mean": sum(values) / len(values)}


def quantiles(values: list[float]) -> list[float]:
    """The 0th to 100th percentiles (nearest rank), for plots of the distribution."""
    ordered = sorted(values)
    if not ordered:
        return []
    return [ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)] for q in range(101)]


def _process_tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, ()))
    return tree


def server_stats(pid: int) -> tuple[float, float]:
    """(CPU seconds, RSS MiB) summed over ``pid`` and its descendants, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    cpu, rss_kib = 0.0, 0
    for p in _process_tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                stat = f.read()
            fields = stat[stat.rindex(")") + 2 :].split()
            cpu += (int(fields[11]) + int(fields[12])) / tick
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss_kib += int(line.split()[1])
        except OSError:
            pass
    return cpu, rss_kib / 1024


# -- the targets: one call of each mode ----------------------------------------------------
class Target(Protocol):
    streaming: bool

    def connection(self) -> Any: ...

    async def call(self, conn: Any, level: Level) -> None: ...

    async def close(self, conn: Any) -> None: ...


class RestTarget:
    def __init__(self, host: str, port: int, path: str, body: bytes, streaming: bool) -> None:
        self.host, self.port, self.path, self.body = host, port, path, body
        self.streaming = streaming

    def connection(self) -> HttpConn:
        return HttpConn(self.host, self.port)

    async def call(self, conn: HttpConn, level: Level) -> None:
        times: list[float] = []
        error_events: list[bytes] = []

        def on_event(event: bytes) -> None:
            times.append(time.perf_counter())
            if event.startswith(b"event: error") or b"\nevent: error" in event:
                error_events.append(event)

        start = time.perf_counter()
        try:
            status, _ = await conn.request(
                "POST", self.path, self.body, on_event if self.streaming else None
            )
        except CutStream:
            level.error("cut stream")
            return
        except OSError as exc:
            level.error(f"connection: {type(exc).__name__}")
            return
        end = time.perf_counter()
        if status != 200:
            level.error(f"HTTP {status}")
        elif error_events:
            level.error("error event")
        elif self.streaming and not times:
            level.error("empty stream")
        else:
            level.ok(start, times if self.streaming else [end], end)

    async def close(self, conn: HttpConn) -> None:
        await conn.close()


class GrpcTarget:
    """grpclib's client and streamwise's betterproto2 messages; one channel (one HTTP/2
    connection) per caller."""

    def __init__(self, host: str, port: int, message: Any, streaming: bool) -> None:
        self.host, self.port, self.message = host, port, message
        self.streaming = streaming

    def connection(self) -> Any:
        from grpclib.client import Channel

        from ._proto.inference import GrpcInferenceServiceStub

        channel = Channel(self.host, self.port)
        return channel, GrpcInferenceServiceStub(channel)

    async def call(self, conn: Any, level: Level) -> None:
        from grpclib.exceptions import GRPCError, StreamTerminatedError

        _, stub = conn
        times: list[float] = []
        start = time.perf_counter()
        try:
            if self.streaming:
                async for _ in stub.model_stream_infer([self.message]):
                    times.append(time.perf_counter())
            else:
                await stub.model_infer(self.message)
                times.append(time.perf_counter())
        except GRPCError as exc:
            level.error(f"gRPC {exc.status.name}")
            return
        except StreamTerminatedError:
            level.error("cut stream")
            return
        except OSError as exc:
            level.error(f"connection: {type(exc).__name__}")
            return
        end = time.perf_counter()
        if not times:
            level.error("empty stream")
        else:
            level.ok(start, times, end)

    async def close(self, conn: Any) -> None:
        conn[0].close()


class Pool:
    """Connections not in use; a call takes one (or opens one) and gives it back."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.idle: list[Any] = []

    def take(self) -> Any:
        return self.idle.pop() if self.idle else self.target.connection()

    def give(self, conn: Any) -> None:
        self.idle.append(conn)

    async def close(self) -> None:
        for conn in self.idle:
            await self.target.close(conn)
        self.idle.clear()


# -- the loops -----------------------------------------------------------------------------
@dataclass
class Limits:
    requests: int | None
    duration: float
    timeout: float


async def _one(target: Target, pool: Pool, level: Level, limit_s: float) -> None:
    conn = pool.take()
    level.started += 1
    try:
        async with asyncio.timeout(limit_s):
            await target.call(conn, level)
    except TimeoutError:
        level.error("timeout")
        await target.close(conn)
        conn = target.connection()
    pool.give(conn)


async def closed_loop(target: Target, pool: Pool, level: Level, limits: Limits) -> None:
    assert level.concurrency is not None
    deadline = time.monotonic() + limits.duration

    async def caller() -> None:
        while (
            limits.requests is None or level.started < limits.requests
        ) and time.monotonic() < deadline:
            await _one(target, pool, level, limits.timeout)

    await asyncio.gather(*(caller() for _ in range(level.concurrency)))


async def open_loop(
    target: Target, pool: Pool, level: Level, limits: Limits, seed: int | None
) -> None:
    assert level.rate is not None
    arrivals = random.Random(seed)
    start = time.monotonic()
    at = start
    tasks: set[asyncio.Task[None]] = set()
    while limits.requests is None or level.started < limits.requests:
        at += arrivals.expovariate(level.rate)
        if at - start >= limits.duration:
            break
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        task = asyncio.create_task(_one(target, pool, level, limits.timeout))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)


class Progress:
    """One line on stderr while a level runs: rewritten in place on a terminal, a new line
    every second otherwise (a log, a CI run)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()

    def line(self, level: Level, elapsed: float, limits: Limits) -> str:
        done = len(level.latency)
        limit = f"/{limits.requests}" if limits.requests else ""
        return (
            f"{level.label}: {done}{limit} requests, {level.responses} responses, "
            f"{sum(level.errors.values())} errors, {elapsed:.1f}/{limits.duration:g} s"
        )

    async def run(self, level: Level, limits: Limits) -> None:
        start = time.monotonic()
        while not self.quiet:
            await asyncio.sleep(0.25 if self.tty else 1.0)
            self.show(level, time.monotonic() - start, limits, final=False)

    def show(self, level: Level, elapsed: float, limits: Limits, final: bool) -> None:
        if self.quiet:
            return
        text = self.line(level, elapsed, limits)
        if self.tty:
            sys.stderr.write("\r\x1b[2K" + text + ("\n" if final else ""))
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()


async def _sample_rss(pid: int, peak: list[float]) -> None:
    while True:
        peak[0] = max(peak[0], server_stats(pid)[1])
        await asyncio.sleep(0.25)


async def measure(
    target: Target,
    levels: list[Level],
    limits: Limits,
    server_pid: int | None,
    progress: Progress,
    seed: int | None = None,
) -> list[dict[str, Any]]:
    """Runs each level in turn; their figures."""
    pool = Pool(target)
    results = []
    try:
        for level in levels:
            cpu0, wall0 = time.process_time(), time.perf_counter()
            server0 = server_stats(server_pid)[0] if server_pid else 0.0
            peak = [server_stats(server_pid)[1] if server_pid else 0.0]
            helpers = [asyncio.create_task(progress.run(level, limits))]
            if server_pid:
                helpers.append(asyncio.create_task(_sample_rss(server_pid, peak)))
            try:
                if level.rate is not None:
                    await open_loop(target, pool, level, limits, seed)
                else:
                    await closed_loop(target, pool, level, limits)
            finally:
                for helper in helpers:
                    helper.cancel()
                await asyncio.gather(*helpers, return_exceptions=True)
            wall = time.perf_counter() - wall0
            client_cpu = time.process_time() - cpu0
            progress.show(level, wall, limits, final=True)
            figures = _figures(level, wall, client_cpu)
            if server_pid:
                figures["server_cpu_s"] = server_stats(server_pid)[0] - server0
                figures["server_peak_rss_mib"] = peak[0]
            results.append(figures)
    finally:
        await pool.close()
    return results


def _figures(level: Level, wall: float, client_cpu: float) -> dict[str, Any]:
    requests = len(level.latency)
    return {
        "label": level.label,
        "concurrency": level.concurrency,
        "rate": level.rate,
        "duration_s": wall,
        "requests": requests,
        "responses": level.responses,
        "errors": dict(level.errors),
        "error_count": sum(level.errors.values()),
        "requests_per_s": requests / wall if wall else 0.0,
        "responses_per_s": level.responses / wall if wall else 0.0,
        "ttft_s": percentiles(level.ttft),
        "gap_s": percentiles(level.gaps),
        "latency_s": percentiles(level.latency),
        "ttft_quantiles_s": quantiles(level.ttft),
        "latency_quantiles_s": quantiles(level.latency),
        "client_cpu_s": client_cpu,
        "client_cpu_per_response_us": (
            client_cpu / level.responses * 1e6 if level.responses else None
        ),
        "server_cpu_s": None,
        "server_peak_rss_mib": None,
    }


# -- the request ---------------------------------------------------------------------------
DEFAULT_VALUES = {"BOOL": True, "BYTES": "a"}


def _default_value(datatype: str) -> Any:
    if datatype in DEFAULT_VALUES:
        return DEFAULT_VALUES[datatype]
    return 1.0 if datatype.startswith(("FP", "BF")) else 1


def _guess_datatype(value: Any) -> str:
    first = value[0] if isinstance(value, list) and value else value
    if isinstance(first, bool):
        return "BOOL"
    if isinstance(first, int):
        return "INT64"
    return "FP32" if isinstance(first, float) else "BYTES"


def _per_input(values: list[str], option: str) -> dict[str | None, str]:
    """``NAME=VALUE`` (one input) or ``VALUE`` (every input) → {name or None: value}."""
    out: dict[str | None, str] = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if sep:
            out[name] = rest
        else:
            out[None] = value
    return out


def made_up_request(
    metadata: dict[str, Any], shapes: list[str], datatypes: list[str], values: list[str]
) -> dict[str, Any]:
    """A V2 request from the model's metadata: every input not marked optional (and every
    one given a value), ``-1`` dimensions as 1, filled with ones (``"a"`` for BYTES)."""
    shape_of, type_of = _per_input(shapes, "--shape"), _per_input(datatypes, "--datatype")
    value_of = _per_input(values, "--input")
    inputs = []
    specs = list(metadata.get("inputs") or [])
    named = {spec["name"] for spec in specs}
    specs += [  # inputs the metadata does not name (a model without declared inputs)
        {"name": name, "datatype": _guess_datatype(json.loads(text)), "shape": [-1]}
        for name, text in value_of.items()
        if name is not None and name not in named
    ]
    for spec in specs:
        name = spec["name"]
        optional = (spec.get("parameters") or {}).get("optional", False)
        if optional and name not in value_of:
            continue
        shape_text = shape_of.get(name, shape_of.get(None))
        shape = (
            [int(d) for d in shape_text.split(",")]
            if shape_text
            else [1 if d < 0 else d for d in spec.get("shape") or [1]]
        )
        given = json.loads(value_of[name]) if name in value_of else None
        if isinstance(given, list) and not shape_text and math.prod(shape) != len(given):
            shape = [len(given)]
        datatype = type_of.get(name, type_of.get(None)) or spec["datatype"]
        size = math.prod(shape)
        if given is not None:
            data = given if isinstance(given, list) else [given] * size
        else:
            data = [_default_value(datatype)] * size
        inputs.append({"name": name, "shape": shape, "datatype": datatype, "data": data})
    if not inputs:
        raise BenchError(
            "the model's metadata names no inputs: give --request-file or --input NAME=JSON"
        )
    return {"inputs": inputs}


def _get_json(host: str, port: int, path: str) -> dict[str, Any]:
    async def get() -> tuple[int, bytes]:
        conn = HttpConn(host, port)
        try:
            return await conn.request("GET", path)
        finally:
            await conn.close()

    try:
        status, body = asyncio.run(get())
    except OSError as exc:
        raise BenchError(f"GET {path} on {host}:{port}: {exc}") from None
    if status != 200:
        raise BenchError(f"GET {path} on {host}:{port}: HTTP {status} {body[:200]!r}")
    document: dict[str, Any] = json.loads(body)
    return document


def _address(text: str, option: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise BenchError(f"{option} {text!r}: HOST:PORT")
    return host or "127.0.0.1", int(port)


def build_target(args: argparse.Namespace) -> tuple[Target, dict[str, Any]]:
    """The target and what the JSON says about it."""
    url = urllib.parse.urlsplit(args.url if "//" in args.url else f"http://{args.url}")
    if url.scheme != "http":
        raise BenchError(f"{args.url}: only http:// URLs (no TLS in this client)")
    host, port = url.hostname or "127.0.0.1", url.port or 80
    base = url.path.rstrip("/")
    model = f"{base}/v2/models/{args.model}"
    if args.model_version:
        model += f"/versions/{args.model_version}"
    if args.request_file:
        with open(args.request_file) as f:
            request = json.load(f)
    else:
        metadata = _get_json(host, port, model)
        request = made_up_request(metadata, args.shape, args.datatype, args.input)
    streaming = args.mode in STREAMING_MODES
    about = {"url": args.url, "model": args.model, "mode": args.mode, "streaming": streaming}
    about["request"] = request
    if args.mode in ("sse", "infer"):
        endpoint = args.rest_endpoint if args.mode == "sse" else "infer"
        about["endpoint"] = f"{model}/{endpoint}"
        body = json.dumps(request).encode()
        return RestTarget(host, port, f"{model}/{endpoint}", body, streaming), about
    if not args.grpc:
        raise BenchError(f"--mode {args.mode} needs --grpc HOST:PORT")
    from .grpc.convert import request_to_proto
    from .types import InferenceRequest

    grpc_host, grpc_port = _address(args.grpc, "--grpc")
    message = request_to_proto(
        InferenceRequest.model_validate(request), args.model, args.model_version
    )
    about["grpc"] = args.grpc
    return GrpcTarget(grpc_host, grpc_port, message, streaming), about


def levels_of(args: argparse.Namespace) -> list[Level]:
    if args.rate is not None:
        return [Level(f"rate {rate:g}/s", rate=rate) for rate in args.rate]
    return [Level(f"concurrency {c}", concurrency=c) for c in args.concurrency]


# -- output --------------------------------------------------------------------------------
def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f}"


def table(results: list[dict[str, Any]], streaming: bool) -> str:
    """The figures, one row a level; times in milliseconds."""
    columns = ["level", "req", "req/s", "resp/s"]
    columns += ["ttft p50", "p90", "p99", "gap p50", "p90", "p99"] if streaming else []
    columns += ["lat p50", "p90", "p99", "errors", "cpu us/resp", "srv cpu s", "srv MiB"]
    rows = [columns]
    for r in results:
        row = [r["label"], str(r["requests"]), f"{r['requests_per_s']:.1f}"]
        row.append(f"{r['responses_per_s']:.1f}")
        figures = ["ttft_s", "gap_s", "latency_s"] if streaming else ["latency_s"]
        for name in figures:
            row += [_ms(r[name][p]) for p in ("p50", "p90", "p99")]
        row.append(str(r["error_count"]))
        per = r["client_cpu_per_response_us"]
        row.append("-" if per is None else f"{per:.0f}")
        row.append("-" if r["server_cpu_s"] is None else f"{r['server_cpu_s']:.2f}")
        row.append("-" if r["server_peak_rss_mib"] is None else f"{r['server_peak_rss_mib']:.0f}")
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    errors = Counter[str]()
    for r in results:
        errors.update(r["errors"])
    if errors:
        lines.append("errors: " + ", ".join(f"{k} {v}" for k, v in sorted(errors.items())))
    lines.append("times in ms (ttft: first response; gap: between responses; lat: whole call)")
    return "\n".join(lines)


# -- the command ---------------------------------------------------------------------------
def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: numbers, comma-separated") from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: each at least 1")
    return values


def _floats(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: numbers, comma-separated") from None
    if any(not v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: each above 0")
    return values


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="streamwise bench",
        description="Latency and throughput of a V2 / Open Inference Protocol server "
        "(any: streamwise, MLServer, Triton, KServe), streaming first. See docs/bench.md.",
    )
    p.add_argument("url", nargs="?", help="the server's REST address, e.g. http://127.0.0.1:8080")
    p.add_argument("--model", help="the model to call")
    p.add_argument("--model-version", help="a version of it (default: the server's choice)")
    p.add_argument(
        "--mode",
        choices=MODES,
        default="sse",
        help="sse: REST streaming (--rest-endpoint); infer: REST unary; grpc-stream: gRPC "
        "ModelStreamInfer, one request a stream; grpc-infer: gRPC ModelInfer (default sse)",
    )
    p.add_argument(
        "--rest-endpoint",
        choices=["generate_stream", "infer_stream"],
        default="generate_stream",
        help="the streaming REST endpoint of --mode sse (default generate_stream)",
    )
    p.add_argument("--grpc", metavar="HOST:PORT", help="the gRPC address, for the grpc modes")
    p.add_argument(
        "--request-file",
        metavar="FILE",
        help="a V2 JSON inference request to send (default: made up from the model's "
        "metadata, GET /v2/models/NAME)",
    )
    p.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="a made-up input's value: a JSON scalar (repeated over the shape) or list; "
        "also includes an optional input, e.g. --input n=20 (repeatable)",
    )
    p.add_argument(
        "--shape",
        action="append",
        default=[],
        metavar="[NAME=]D,D",
        help="a made-up input's shape (without NAME=: every input's)",
    )
    p.add_argument(
        "--datatype",
        action="append",
        default=[],
        metavar="[NAME=]TYPE",
        help="a made-up input's datatype (without NAME=: every input's)",
    )
    load = p.add_mutually_exclusive_group()
    load.add_argument(
        "--concurrency",
        type=_ints,
        default=[1],
        metavar="N[,N...]",
        help="closed loop: callers in flight, one level each (default 1)",
    )
    load.add_argument(
        "--rate",
        type=_floats,
        metavar="R[,R...]",
        help="open loop: requests a second, Poisson arrivals, one level each",
    )
    p.add_argument("--requests", type=int, help="requests per level at most (default: no limit)")
    p.add_argument(
        "--duration", type=float, default=10.0, help="seconds per level at most (default 10)"
    )
    p.add_argument(
        "--timeout", type=float, default=60.0, help="seconds one call may take (default 60)"
    )
    p.add_argument("--server-pid", type=int, metavar="PID", help="server CPU and RSS from /proc")
    p.add_argument("--json", metavar="FILE", help="write every figure there")
    p.add_argument(
        "--plot",
        metavar="FILE.png",
        help="latency distributions and throughput against the level, drawn there "
        "(needs matplotlib: the [bench] extra)",
    )
    p.add_argument(
        "--compare",
        nargs="+",
        metavar="A.json",
        help="no run: the figures of two or more --json files side by side, ratios to the "
        "first (and --plot)",
    )
    p.add_argument("--seed", type=int, help="the open loop's arrivals (default: random)")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.add_argument(
        "--self",
        dest="self_bench",
        action="store_true",
        help="our own regression figures: start streamwise and a bare Hypercorn app "
        "answering the same bytes, and measure both (no URL)",
    )
    p.add_argument(
        "--events",
        type=int,
        default=50_000,
        help="with --self: events in the one long stream (default 50000)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    try:
        if args.plot:
            check_matplotlib()
        if args.compare:
            return compare(args.compare, args.plot)
        if args.self_bench:
            return self_bench(args)
        if not args.url or not args.model:
            p.error("URL and --model are needed (or --self)")
        if args.requests is not None and args.requests < 1:
            p.error("--requests: at least 1")
        target, about = build_target(args)
        limits = Limits(args.requests, args.duration, args.timeout)
        progress = Progress(args.quiet)
        results = asyncio.run(
            measure(target, levels_of(args), limits, args.server_pid, progress, args.seed)
        )
    except (BenchError, PlotError) as exc:
        print(f"streamwise bench: {exc}", file=sys.stderr)
        return 2
    print(table(results, target.streaming))
    report = {"target": about, "levels": results}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
            f.write("\n")
    if args.plot:
        plot([(args.model, report)], args.plot)
    return 0


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


# -- --self: streamwise against a bare Hypercorn app ---------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError("a server of --self exited as it started")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise BenchError("a server of --self did not start in 30 s")


@contextmanager
def _server(argv: list[str], port: int) -> Iterator[int]:
    proc = subprocess.Popen([sys.executable, *argv], stdout=subprocess.DEVNULL)
    try:
        _wait_port(port, proc)
        time.sleep(0.5)  # models loaded (the demo repository loads in milliseconds)
        yield proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=15)


UNARY_REQUEST = {
    "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1.0, 2.0, 3.0, 4.0]}]
}


def _self_figures(port: int, pid: int, args: argparse.Namespace) -> dict[str, float]:
    stream_body = json.dumps(
        {"inputs": [{"name": "n", "shape": [1], "datatype": "INT64", "data": [args.events]}]}
    ).encode()
    stream = RestTarget("127.0.0.1", port, TOKEN_STREAM, stream_body, streaming=True)
    unary = RestTarget(
        "127.0.0.1",
        port,
        "/v2/models/identity/infer",
        json.dumps(UNARY_REQUEST).encode(),
        streaming=False,
    )
    progress = Progress(args.quiet)
    limits = Limits(args.requests or 5000, args.duration, args.timeout)
    figures: dict[str, float] = {}

    async def run() -> None:
        warm = Limits(50, limits.duration, limits.timeout)
        await measure(unary, [Level("warm-up", concurrency=1)], warm, None, progress)
        (sse,) = await measure(
            stream, [Level("one stream", concurrency=1)], Limits(1, 600, 600), pid, progress
        )
        figures["sse events/s"] = sse["responses_per_s"]
        levels = [Level(f"unary, {c} conn", concurrency=c) for c in args.concurrency]
        unaries = await measure(unary, levels, limits, pid, progress)
        for result in unaries:
            figures[f"{result['label']} req/s"] = result["requests_per_s"]
        errors = sum(r["error_count"] for r in [sse, *unaries])
        if errors:
            raise BenchError(f"{errors} calls failed against port {port}")

    asyncio.run(run())
    return figures


def self_bench(args: argparse.Namespace) -> int:
    """streamwise and the baseline, both on free ports; the ratios of their figures."""
    if args.concurrency == [1]:
        args.concurrency = [1, 32]
    results: dict[str, dict[str, float]] = {}
    port = _free_port()
    with _server(
        ["-c", f"from streamwise.bench import _run_baseline; _run_baseline({port})"], port
    ) as pid:
        results["baseline"] = _self_figures(port, pid, args)
    port = _free_port()
    argv = ["-m", "streamwise", "serve", "--http-port", str(port)]
    argv += ["--grpc-port", str(_free_port()), "--log-level", "WARNING"]
    with _server(argv, port) as pid:
        results["streamwise"] = _self_figures(port, pid, args)
    print(f"{'figure':28s} {'baseline':>12s} {'streamwise':>12s} {'ratio':>7s}")
    for key, base in results["baseline"].items():
        ours = results["streamwise"][key]
        print(f"{key:28s} {base:12.0f} {ours:12.0f} {ours / base:7.2f}")
    print("baseline: bare ASGI app on hypercorn-trio, same routes and bytes, no model")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
