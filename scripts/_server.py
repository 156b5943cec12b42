"""A server of this checkout in a subprocess, for the scripts that measure one: started on
free ports, ready when ``GET /v2/health/ready`` says so; the caller terminates it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass

import httpx

from tests.support import ROOT, free_port


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    url: str  # REST, http://127.0.0.1:PORT
    grpc: str  # 127.0.0.1:PORT
    metrics_port: int


def start(repository: str, env: dict[str, str] | None = None) -> Served:
    """``python -m src serve repository`` with ``env`` added to this environment; its
    stderr (the log, the access lines) goes nowhere, as a log shipper would take it."""
    port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    environment = dict(os.environ, STREAMWISE_METRICS_PORT=str(metrics_port), **(env or {}))
    argv = [sys.executable, "-m", "src", "serve", repository]
    argv += ["--http-port", str(port), "--grpc-port", str(grpc_port)]
    process = subprocess.Popen(argv, cwd=ROOT, env=environment, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/v2/health/ready").status_code == 200:
                return Served(process, url, f"127.0.0.1:{grpc_port}", metrics_port)
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    raise SystemExit("the server did not start")
