"""The ``streamwise`` command (also ``python -m streamwise`` and, from a checkout,
``python -m src``)."""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Sequence
from functools import partial

import trio

from . import logs
from .errors import ConfigError, find_error
from .settings import load_settings
from .signals import until_signalled

DEMO_REPOSITORY = pathlib.Path(__file__).parent / "demo"

DESCRIPTION = """\
A streaming-first V2 / Open Inference Protocol server (REST, server-sent events, gRPC)
that serves MLServer models. Also run as "python -m streamwise" or, from a checkout,
"python -m src"."""


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="streamwise", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"streamwise {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        aliases=["start"],
        help='serve a model repository ("start" as MLServer\'s command says it)',
        description="Serve the models of a folder on REST (--http-port) and gRPC "
        "(--grpc-port) until SIGINT or SIGTERM (the first one drains, a second stops at "
        "once).",
    )
    serve.add_argument(
        "model_dir",
        nargs="?",
        help="folder holding settings.json and model-settings.json files "
        "(default: the built-in demo repository)",
    )
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--http-port", type=int, help="REST port (default 8080; 0 picks one)")
    serve.add_argument("--grpc-port", type=int, help="gRPC port (default 8081; 0 picks one)")
    serve.add_argument(
        "--metrics-port",
        type=int,
        help="port of the Prometheus metrics (default 8082; 0 picks one)",
    )
    serve.add_argument(
        "--grpc-stream-wrapper",
        choices=["mlserver", "triton"],
        help="what gRPC ModelStreamInfer sends: MLServer's bare responses (default), or "
        "Triton's ModelStreamInferResponse, for tritonclient's start_stream",
    )
    serve.add_argument(
        "--parallel-workers",
        type=_workers,
        metavar="N",
        help='worker processes sharing the ports ("auto": one per core; default 1, '
        "this process alone)",
    )
    serve.add_argument(
        "--log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        type=str.upper,
        help="how much to log (default INFO)",
    )
    serve.add_argument(
        "--log-format",
        choices=["text", "json"],
        help="text lines, or one JSON object per line (default text)",
    )
    commands.add_parser(
        "bench",
        help="latency and throughput of any V2 server, streaming first (--self: ours)",
        add_help=False,
    )
    return parser


def _workers(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: a number of workers, or auto") from None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        from .bench import main as bench

        return bench(argv[1:])
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    model_dir = pathlib.Path(args.model_dir) if args.model_dir else DEMO_REPOSITORY
    overrides = {
        "host": args.host,
        "http_port": args.http_port,
        "grpc_port": args.grpc_port,
        "metrics_port": args.metrics_port,
        "log_level": args.log_level,
        "log_format": args.log_format,
        "parallel_workers": args.parallel_workers,
        "grpc_stream_wrapper": args.grpc_stream_wrapper,
    }
    try:
        settings = load_settings(model_dir, overrides=overrides)
    except ConfigError as exc:
        print(f"streamwise: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings)
    from .server import serve
    from .workers import supervise, worker_count

    workers = worker_count(settings.parallel_workers)
    run = partial(serve, settings) if workers == 1 else partial(supervise, settings, workers)
    try:
        trio.run(until_signalled, run, settings.graceful_timeout)
    except BaseException as exc:
        config_error = find_error(exc, ConfigError)
        if config_error is None:
            raise
        print(f"streamwise: {config_error}", file=sys.stderr)
        return 2
    return 0
