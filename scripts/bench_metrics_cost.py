"""What observability costs streams: two servers, everything on and everything off, in turn.

    python -m scripts.bench_metrics_cost [-n 20000] [--streams 1,10,100] [--rounds 8]
        [--repository DIR] [--model NAME] [--metrics-only] [--grpc]

Starts ``python -m src serve`` twice on the same model repository (default: the demo's):
"on" with the defaults (metrics on a free port, the access log on) and "off"
(``STREAMWISE_METRICS_ENDPOINT=null STREAMWISE_ACCESS_LOG=false``; with
``--metrics-only`` the access log stays on in both). Then, for each count of concurrent
streams C and each round, streams ``n`` tokens in all (C streams of n/C) from each server
in turn, which goes first alternating, with ``streamwise bench`` as the client (its raw,
cheap client: the same for both). Prints, per C, the server's CPU per token and the tokens
per second of every round, and the ratios of the medians on / off (docs/performance.md,
"Observability cost").

Both servers stay up for the whole run, so both see the same machine; on a machine shared
with other work the rounds spread, and only many rounds say anything below 10%.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile

from scripts._server import start
from tests.support import ROOT

OFF = {"STREAMWISE_METRICS_ENDPOINT": "null", "STREAMWISE_ACCESS_LOG": "false"}


def run(
    process: subprocess.Popen[bytes], url: str, grpc: str | None, model: str, n: int, streams: int
) -> tuple[float, float]:
    """Tokens per second, and the server's CPU per token in microseconds."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        argv = [sys.executable, "-m", "src", "bench", url, "--model", model]
        argv += ["--input", f"n={n // streams}", "--concurrency", str(streams)]
        argv += ["--requests", str(streams), "--duration", "600", "--quiet"]
        argv += ["--server-pid", str(process.pid), "--json", out.name]
        if grpc:
            argv += ["--mode", "grpc-stream", "--grpc", grpc]
        subprocess.run(argv, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        [level] = json.load(out)["levels"]
    tokens = level["responses"]
    if tokens != n // streams * streams or level["error_count"]:
        raise SystemExit(f"{tokens} tokens, errors {level['errors']}")
    return level["responses_per_s"], level["server_cpu_s"] / tokens * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=20000, help="tokens per round, all streams")
    parser.add_argument("--streams", default="1", help="concurrent streams, e.g. 1,10,100")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repository", default=str(ROOT / "src" / "streamwise" / "demo"))
    parser.add_argument("--model", default="token-streamer", help="streams input n tokens")
    parser.add_argument("--metrics-only", action="store_true", help="access log on in both")
    parser.add_argument("--grpc", action="store_true", help="gRPC ModelStreamInfer, not SSE")
    args = parser.parse_args()
    off = {"STREAMWISE_METRICS_ENDPOINT": "null"} if args.metrics_only else OFF
    servers = {
        name: (served.process, served.url, served.grpc)
        for name, served in (("on", start(args.repository)), ("off", start(args.repository, off)))
    }
    try:
        for process, url, grpc in servers.values():  # warm-up
            run(process, url, grpc if args.grpc else None, args.model, 1000, 1)
        for streams in (int(c) for c in args.streams.split(",")):
            rates: dict[str, list[float]] = {"on": [], "off": []}
            cpu: dict[str, list[float]] = {"on": [], "off": []}
            for round_ in range(args.rounds):
                for name in ["on", "off"] if round_ % 2 == 0 else ["off", "on"]:
                    process, url, grpc = servers[name]
                    rate, us = run(
                        process, url, grpc if args.grpc else None, args.model, args.n, streams
                    )
                    rates[name].append(rate)
                    cpu[name].append(us)
            for name in rates:
                print(
                    f"{streams} stream(s), observability {name}: "
                    + ", ".join(f"{v:.1f}" for v in cpu[name])
                    + " us of server CPU per token; "
                    + ", ".join(f"{v:,.0f}" for v in rates[name])
                    + " tokens/s"
                )
            cpu_ratio = statistics.median(cpu["on"]) / statistics.median(cpu["off"])
            rate_ratio = statistics.median(rates["on"]) / statistics.median(rates["off"])
            print(
                f"{streams} stream(s), on / off (medians): CPU per token {cpu_ratio:.3f}, "
                f"tokens/s {rate_ratio:.3f}",
                flush=True,
            )
    finally:
        for process, _, _ in servers.values():
            process.terminate()
            process.wait(10)


if __name__ == "__main__":
    main()
