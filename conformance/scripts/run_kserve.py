#!/usr/bin/env python3
"""Run the V2 conformance suite against KServe 0.21.0's Python model server.

    python conformance/scripts/run_kserve.py [options] [-- PYTEST_ARGS...]

Run it with the suite's interpreter (the environment with pytest, httpx and grpcio): that
interpreter runs pytest. KServe gets a virtual environment of its own, created and filled
on the first run (default conformance/.venv-kserve, or --venv DIR).

The script starts conformance/models/kserve/serve.py (the reference models written against
``kserve.Model``) with ``--http_port``/``--grpc_port`` on free ports, waits until the server
and the seven models are ready, runs ``pytest conformance --target ... --grpc-target ...
-m "not streaming"`` plus PYTEST_ARGS (KServe has no V2 streaming endpoints; a ``-m`` of
your own replaces that one), stops KServe and exits with pytest's code.

Examples:
    python conformance/scripts/run_kserve.py
    python conformance/scripts/run_kserve.py -- -k metadata --conformance-report kserve.json
    python conformance/scripts/run_kserve.py --serve-only    # print targets, Ctrl-C stops
"""

from __future__ import annotations

import sys
from pathlib import Path

import _runner

SERVE = _runner.CONFORMANCE / "models" / "kserve" / "serve.py"


def command(bindir: Path, ports: dict[str, int]) -> tuple[list[str], dict[str, str]]:
    argv = [str(_runner.executable(bindir, "python")), str(SERVE)]
    argv += ["--http_port", str(ports["http"]), "--grpc_port", str(ports["grpc"])]
    return argv, {}


KSERVE = _runner.Peer(
    name="kserve",
    distribution="kserve",
    version="0.21.0",
    command=command,
    pytest_args=("-m", "not streaming"),
)

if __name__ == "__main__":
    sys.exit(_runner.main(KSERVE, __doc__))
