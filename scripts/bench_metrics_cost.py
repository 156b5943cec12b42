"""What the metrics cost a fast stream: the demo's token-streamer, metrics on and off.

    python -m scripts.bench_metrics_cost [-n 20000] [--rounds 3]

Starts ``python -m src serve`` (the demo repository) twice, with metrics on (on a free
port) and off (``STREAMWISE_METRICS_ENDPOINT=null``), and streams ``n`` tokens over SSE
from each in turn, ``--rounds`` times, interleaved (which goes first alternates); prints the tokens per second of each
round and the ratio of the medians (docs/performance.md, "Metrics cost").
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import httpx

from scripts.bench_stream_start import server_cpu_s
from tests.support import ROOT, free_port


def start(metrics: bool) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = dict(os.environ, STREAMWISE_METRICS_PORT="0", STREAMWISE_LOG_LEVEL="WARNING")
    if not metrics:
        env["STREAMWISE_METRICS_ENDPOINT"] = "null"
    argv = [sys.executable, "-m", "src", "serve", "--http-port", str(port), "--grpc-port", "0"]
    process = subprocess.Popen(argv, cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/v2/health/ready").status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    raise SystemExit("the server did not start")


def tokens_per_s(url: str, n: int) -> float:
    body = {"inputs": [{"name": "n", "shape": [1], "datatype": "INT64", "data": [n]}]}
    started = time.perf_counter()
    seen = 0
    with httpx.stream(
        "POST", f"{url}/v2/models/token-streamer/generate_stream", json=body, timeout=120
    ) as r:
        for chunk in r.iter_bytes():
            seen += chunk.count(b"data:")
    assert seen == n, seen
    return n / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    servers = {"on": start(True), "off": start(False)}
    try:
        for _, url in servers.values():
            tokens_per_s(url, 1000)  # warm-up
        rates: dict[str, list[float]] = {"on": [], "off": []}
        cpu: dict[str, list[float]] = {"on": [], "off": []}
        for round_ in range(args.rounds):
            order = ["on", "off"] if round_ % 2 == 0 else ["off", "on"]  # no order effect
            for name in order:
                process, url = servers[name]
                before = server_cpu_s(process.pid)
                rates[name].append(tokens_per_s(url, args.n))
                cpu[name].append((server_cpu_s(process.pid) - before) / args.n * 1e6)
        for name in rates:
            print(
                f"metrics {name}: "
                + ", ".join(f"{v:.1f}" for v in cpu[name])
                + " us of server CPU per token; "
                + ", ".join(f"{v:,.0f}" for v in rates[name])
                + " tokens/s"
            )
        cpu_ratio = statistics.median(cpu["on"]) / statistics.median(cpu["off"])
        rate_ratio = statistics.median(rates["on"]) / statistics.median(rates["off"])
        print(f"on / off (medians): CPU per token {cpu_ratio:.3f}, tokens/s {rate_ratio:.3f}")
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(10)


if __name__ == "__main__":
    main()
