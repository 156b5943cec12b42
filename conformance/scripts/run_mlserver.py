#!/usr/bin/env python3
"""Run the V2 conformance suite against MLServer 1.7.1 serving conformance/models/mlserver.

    python conformance/scripts/run_mlserver.py [options] [-- PYTEST_ARGS...]

Run it with the suite's interpreter (the environment with pytest, httpx and grpcio): that
interpreter runs pytest. MLServer gets a virtual environment of its own, created and filled
on the first run (default conformance/.venv-mlserver, or --venv DIR; a couple of minutes),
because it pins protobuf<7 and the suite's grpcio-tools needs protobuf 7.

The script starts ``mlserver start conformance/models/mlserver`` on free ports
(MLSERVER_HTTP_PORT, MLSERVER_GRPC_PORT, MLSERVER_METRICS_PORT), waits until the server and
all the reference models are ready, runs ``pytest conformance --target ...
--grpc-target ...`` plus PYTEST_ARGS, stops MLServer and exits with pytest's code.

Examples:
    python conformance/scripts/run_mlserver.py
    python conformance/scripts/run_mlserver.py -- -k sse --conformance-report mlserver.md
    python conformance/scripts/run_mlserver.py --serve-only    # print targets, Ctrl-C stops
"""

from __future__ import annotations

import sys
from pathlib import Path

import _runner


def command(bindir: Path, ports: dict[str, int]) -> tuple[list[str], dict[str, str]]:
    argv = [
        str(_runner.executable(bindir, "mlserver")),
        "start",
        str(_runner.CONFORMANCE / "models" / "mlserver"),
    ]
    env = {
        "MLSERVER_HOST": "127.0.0.1",
        "MLSERVER_HTTP_PORT": str(ports["http"]),
        "MLSERVER_GRPC_PORT": str(ports["grpc"]),
        "MLSERVER_METRICS_PORT": str(ports["metrics"]),
    }
    return argv, env


MLSERVER = _runner.Peer(
    name="mlserver",
    distribution="mlserver",
    version="1.7.1",
    command=command,
    drop_env_prefix="MLSERVER_",  # settings of the user's own MLServer must not leak in
)

if __name__ == "__main__":
    sys.exit(_runner.main(MLSERVER, __doc__))
