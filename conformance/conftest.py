"""Options, the server under test, and shared fixtures of the conformance suite.

``pytest conformance --target http://HOST:PORT [--grpc-target HOST:PORT]`` checks a
running server; without ``--target`` the suite starts ``python -m src serve`` (this
repository's server) on ``conformance/models/streamwise`` on free ports, and stops it at
the end. See conformance/README.md.
"""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest

from .grpc_client import Client
from .report import DEVIATIONS, ConformanceReport

HERE = pathlib.Path(__file__).parent
ROOT = HERE.parent
REFERENCE_MODELS = HERE / "models" / "streamwise"
# the reference models: one folder each (the same in every flavour)
MODELS = tuple(sorted(p.parent.name for p in REFERENCE_MODELS.glob("*/model-settings.json")))


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("conformance", "V2 / Open Inference Protocol conformance")
    group.addoption("--target", help="base URL of the server's REST API (default: start one)")
    group.addoption("--grpc-target", help="HOST:PORT of its gRPC API (default: none, skipped)")
    group.addoption(
        "--grpc-stream-wrapper",
        choices=["mlserver", "triton"],
        default="mlserver",
        help="what the target's gRPC ModelStreamInfer sends: MLServer's bare "
        "ModelInferResponse (default) or Triton's ModelStreamInferResponse (one method path, "
        "two protocols: the checks of the other one are skipped)",
    )
    group.addoption(
        "--destructive",
        action="store_true",
        help="also run checks that unload and reload models (on by default for the "
        "server the suite starts itself)",
    )
    group.addoption(
        "--proto-dir",
        default=str(ROOT / "proto"),
        help="folder holding dataplane.proto (and model_repository.proto)",
    )
    group.addoption(
        "--examples", type=int, default=20, help="hypothesis examples per property (20)"
    )
    group.addoption("--conformance-report", help="write the results to FILE (.json or .md)")
    group.addoption(
        "--startup-timeout", type=float, default=60.0, help="seconds to wait for readiness"
    )


def pytest_configure(config: pytest.Config) -> None:
    for marker in (
        "streaming: needs the streaming endpoints (generate_stream, ModelStreamInfer)",
        "grpc: talks gRPC (skipped without a gRPC target)",
        "destructive: unloads and reloads models (opt in with --destructive)",
    ):
        config.addinivalue_line("markers", marker)
    if not config.pluginmanager.has_plugin("v2-conformance-report"):
        config.pluginmanager.register(ConformanceReport(config), "v2-conformance-report")


@dataclass
class Target:
    http: str
    grpc: str | None
    started_here: bool
    destructive: bool
    proto_dir: pathlib.Path
    examples: int
    grpc_stream_wrapper: str = "mlserver"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(url: str, proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode} before it was ready")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} was not ready after {timeout} s")


@pytest.fixture(scope="session")
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    config = request.config
    report: ConformanceReport = config.pluginmanager.get_plugin("v2-conformance-report")
    common = dict(
        proto_dir=pathlib.Path(config.getoption("proto_dir")),
        examples=config.getoption("examples"),
        grpc_stream_wrapper=config.getoption("grpc_stream_wrapper"),
    )
    url = config.getoption("target")
    if url:
        url = url.rstrip("/")
        _wait_ready(url, None, config.getoption("startup_timeout"))
        found = Target(
            url, config.getoption("grpc_target"), False, config.getoption("destructive"), **common
        )
        report.target.update(target=found.http, grpc_target=found.grpc)
        yield found
        return

    http_port, grpc_port = _free_port(), _free_port()
    argv = [sys.executable, "-m", "src", "serve", str(REFERENCE_MODELS)]
    argv += ["--http-port", str(http_port), "--grpc-port", str(grpc_port), "--metrics-port", "0"]
    if common["grpc_stream_wrapper"] != "mlserver":
        argv += ["--grpc-stream-wrapper", str(common["grpc_stream_wrapper"])]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLSERVER_", "STREAMWISE_"))}
    log_path = request.getfixturevalue("tmp_path_factory").mktemp("server") / "server.log"
    with log_path.open("w+b") as log:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{http_port}"
            try:
                _wait_ready(url, proc, config.getoption("startup_timeout"))
            except RuntimeError as exc:
                log.seek(0)
                raise RuntimeError(f"{exc}; its output:\n{log.read().decode()}") from None
            found = Target(url, f"127.0.0.1:{grpc_port}", True, True, **common)
            report.target.update(
                target=f"{found.http} (started: {' '.join(argv[1:4])} {REFERENCE_MODELS.name})",
                grpc_target=found.grpc,
                server_log=str(log_path),
            )
            yield found
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="session")
def http(target: Target) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=target.http, timeout=30) as client:
        yield client


@pytest.fixture(scope="session")
def server_metadata(http: httpx.Client) -> dict[str, object]:
    response = http.get("/v2")
    if response.status_code != 200:
        return {}
    body = response.json()
    return body if isinstance(body, dict) else {}


@pytest.fixture(scope="session")
def served(http: httpx.Client) -> set[str]:
    """The reference models the target has ready."""
    return {m for m in MODELS if http.get(f"/v2/models/{m}/ready").status_code == 200}


@pytest.fixture
def need(target: Target, served: set[str]) -> Callable[..., None]:
    """``need("identity", ...)``: skip unless the target serves those reference models
    (fail instead for the server the suite started itself: it must serve them all)."""

    def check(*names: str) -> None:
        missing = [n for n in names if n not in served]
        if missing and target.started_here:
            pytest.fail(f"reference models not ready: {missing}")
        if missing:
            pytest.skip(f"the target does not serve {', '.join(missing)}")

    return check


@pytest.fixture(scope="session")
def _grpc_session(target: Target) -> Iterator[Client | None]:
    if target.grpc is None:
        yield None
        return
    client = Client(target.grpc, target.proto_dir)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def grpc_client(_grpc_session: Client | None) -> Client:
    if _grpc_session is None:
        pytest.skip("no --grpc-target")
    return _grpc_session


@pytest.fixture
def mlserver_stream(target: Target) -> None:
    """Skip unless the target's ModelStreamInfer is MLServer's (the default)."""
    if target.grpc_stream_wrapper != "mlserver":
        pytest.skip(f"--grpc-stream-wrapper {target.grpc_stream_wrapper}: not MLServer's stream")


@pytest.fixture
def triton_stream(target: Target) -> None:
    """Skip unless ``--grpc-stream-wrapper triton`` says the target's ModelStreamInfer is
    Triton's."""
    if target.grpc_stream_wrapper != "triton":
        pytest.skip("MLServer's stream: pass --grpc-stream-wrapper triton for Triton's")


@pytest.fixture
def deviation(request: pytest.FixtureRequest, target: Target) -> Callable[[str], None]:
    """Record that the server took a road the protocol allows but the reference doesn't
    (a failure for the server the suite started itself: it is the reference)."""
    if target.started_here:

        def fail(message: str) -> None:
            pytest.fail(f"deviation from the reference, by the reference server: {message}")

        return fail
    found = request.node.stash.setdefault(DEVIATIONS, [])
    return found.append


@pytest.fixture(autouse=True)
def _destructive_gate(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("destructive") is None:
        return
    target: Target = request.getfixturevalue("target")
    if not target.destructive:
        pytest.skip("destructive: pass --destructive to unload and reload models")


@pytest.fixture
def live(target: Target) -> Callable[[], None]:
    """``live()`` asserts the server still answers (after something hostile), on a new
    connection: a server may close the one that carried the hostile request."""

    def check() -> None:
        response = httpx.get(f"{target.http}/v2/health/live", timeout=10)
        assert response.status_code == 200, f"server not live afterwards: {response.status_code}"

    return check
