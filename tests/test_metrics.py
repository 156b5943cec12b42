"""Prometheus metrics (docs/observability.md): each call counted once, under MLServer's
names and ours, scraped over HTTP from the metrics port."""

from __future__ import annotations

import json
import pathlib
import textwrap
import time
from typing import Any

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from streamwise import ServerInfo
from tests.support import TEST_MODELS, StartServer, free_port, probe, rawhttp
from tests.support.grpc_stubs import in_thread, load_stubs, to_pb2

PROMPT = {"inputs": [{"name": "p", "shape": [1], "datatype": "BYTES", "data": ["x"]}]}
IDENTITY = {"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": [1.0]}]}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(info: ServerInfo) -> Samples:
    assert info.metrics_port is not None
    async with httpx.AsyncClient() as client:
        r = await client.get(f"http://127.0.0.1:{info.metrics_port}/metrics")
    assert r.status_code == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    """The change of the sum of ``name``'s samples whose labels include ``labels``."""

    def total(samples: Samples) -> float:
        wanted = set(labels.items())
        return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)

    return total(after) - total(before)


def stream_labels(model: str, transport: str = "rest") -> dict[str, str]:
    return {"model": model, "transport": transport}


async def test_unary_call_is_counted_once(demo: ServerInfo) -> None:
    before = await scrape(demo)
    async with httpx.AsyncClient() as client:
        r = await client.post(f"{demo.http_url}/v2/models/identity/infer", json=IDENTITY)
    assert r.status_code == 200
    after = await scrape(demo)
    model = {"model": "identity", "version": "1"}
    assert delta(before, after, "model_infer_request_success_total", **model) == 1
    assert delta(before, after, "model_infer_request_failure_total", **model) == 0
    assert delta(before, after, "model_infer_request_duration_count", **model) == 1
    rest = {"method": "POST", "path": "/v2/models/{model_name}/infer", "app_name": "streamwise"}
    assert delta(before, after, "rest_server_requests_total", status_code="200", **rest) == 1
    assert delta(before, after, "rest_server_request_duration_seconds_count", **rest) == 1


async def test_completed_stream(demo: ServerInfo) -> None:
    before = await scrape(demo)
    body = {"inputs": [{"name": "n", "shape": [1], "datatype": "INT64", "data": [5]}]}
    async with httpx.AsyncClient() as client:
        r = await client.post(
            f"{demo.http_url}/v2/models/token-streamer/generate_stream", json=body
        )
    assert r.status_code == 200 and r.text.count("data:") == 5
    after = await scrape(demo)
    labels = stream_labels("token-streamer")
    assert (
        delta(before, after, "streamwise_streams_ended_total", outcome="completed", **labels) == 1
    )
    assert delta(before, after, "streamwise_streams_ended_total", **labels) == 1
    assert delta(before, after, "streamwise_stream_responses_total", **labels) == 5
    ttfr = "streamwise_stream_time_to_first_response_seconds_count"
    assert delta(before, after, ttfr, **labels) == 1
    assert delta(before, after, "streamwise_stream_response_gap_seconds_count", **labels) == 4
    assert delta({}, after, "streamwise_streams_open", **labels) == 0


async def test_failed_stream(models: ServerInfo) -> None:
    before = await scrape(models)
    async with httpx.AsyncClient() as client:
        url = f"{models.http_url}/v2/models/fail-mid-stream/generate_stream"
        r = await client.post(url, json=PROMPT)
    assert "event: error" in r.text
    after = await scrape(models)
    labels = stream_labels("fail-mid-stream")
    ended = "streamwise_streams_ended_total"
    assert delta(before, after, ended, outcome="model_error", **labels) == 1
    assert delta(before, after, ended, **labels) == 1


async def test_client_disconnect(models: ServerInfo) -> None:
    before = await scrape(models)
    rid = "metrics-disconnect"
    r = await rawhttp.request(
        models.http_port, "POST", "/v2/models/slow-stream/generate_stream", PROMPT | {"id": rid}
    )
    assert (await r.read_chunk()) is not None
    await r.stream.aclose()
    for _ in range(1000):  # until the model has ended
        if rid in probe.cancelled and not models.dataplane.in_flight:
            break
        await trio.sleep(0.01)
    after = await scrape(models)
    labels = stream_labels("slow-stream")
    ended = "streamwise_streams_ended_total"
    assert delta(before, after, ended, outcome="client_disconnect", **labels) == 1
    assert delta(before, after, ended, **labels) == 1


async def test_refused_over_the_limit(start_server: StartServer) -> None:
    info = await start_server(TEST_MODELS, model_max_concurrency=1)
    before = await scrape(info)
    r = await rawhttp.request(
        info.http_port, "POST", "/v2/models/slow-stream/generate_stream", PROMPT
    )
    assert (await r.read_chunk()) is not None
    during = await scrape(info)
    assert delta(before, during, "streamwise_streams_open", **stream_labels("slow-stream")) == 1
    async with httpx.AsyncClient() as client:
        url = f"{info.http_url}/v2/models/slow-stream/generate_stream"
        refused = await client.post(url, json=PROMPT)
    assert refused.status_code == 503
    await r.stream.aclose()
    after = await scrape(info)
    labels = stream_labels("slow-stream")
    refusals = "streamwise_requests_refused_total"
    assert delta(before, after, refusals, reason="limit", **labels) == 1
    assert delta(before, after, refusals) == 1


async def test_refused_while_draining(start_server: StartServer) -> None:
    """A call that arrives on an open gRPC connection once the server is draining is refused
    (UNAVAILABLE), and counted as refused for ``draining``; the stream in flight holds the
    drain open meanwhile, and is told so when the grace runs out."""
    import grpc

    from streamwise.types import InferenceRequest

    pb2, pb2_grpc = load_stubs()
    info = await start_server(TEST_MODELS, graceful_timeout=2)
    request = to_pb2(InferenceRequest.model_validate(PROMPT), "slow-stream")
    before = await scrape(info)
    r = await rawhttp.request(
        info.http_port, "POST", "/v2/models/slow-stream/generate_stream", PROMPT
    )
    assert (await r.read_chunk()) is not None  # in flight: the drain waits for it

    def call_while_draining() -> grpc.StatusCode:
        with grpc.insecure_channel(f"127.0.0.1:{info.grpc_port}") as channel:
            stub = pb2_grpc.GRPCInferenceServiceStub(channel)
            stub.ServerLive(pb2.ServerLiveRequest(), timeout=5)  # the connection is open
            trio.from_thread.run_sync(info.shutdown)
            while stub.ServerReady(pb2.ServerReadyRequest(), timeout=5).ready:
                time.sleep(0.01)  # not ready: the drain has begun
            with pytest.raises(grpc.RpcError) as rpc:
                list(stub.ModelStreamInfer(iter([request]), timeout=5))
            return rpc.value.code()

    assert await trio.to_thread.run_sync(call_while_draining) == grpc.StatusCode.UNAVAILABLE
    draining = await scrape(info)  # the metrics listener serves until the end
    refusals = "streamwise_requests_refused_total"
    labels = stream_labels("slow-stream", "grpc")
    assert delta(before, draining, refusals, reason="draining", **labels) == 1
    assert delta(before, draining, refusals) == 1
    rest = b""
    while (chunk := await r.read_chunk()) is not None:  # until the grace runs out
        rest += chunk
    await r.stream.aclose()
    event, data = rest.decode().strip().split("\n")[-2:]
    assert event == "event: error" and json.loads(data.removeprefix("data: ")) == {
        "error": "server shutting down"
    }


async def test_grpc_unary_call(demo: ServerInfo) -> None:
    pb2, _ = load_stubs()
    from streamwise.types import InferenceRequest

    request = InferenceRequest.model_validate(IDENTITY)
    before = await scrape(demo)
    await in_thread(demo, lambda stub: stub.ModelInfer(to_pb2(request, "identity")))
    after = await scrape(demo)
    rpc = {
        "grpc_type": "UNARY",
        "grpc_service": "inference.GRPCInferenceService",
        "grpc_method": "ModelInfer",
    }
    assert delta(before, after, "grpc_server_started_total", **rpc) == 1
    assert delta(before, after, "grpc_server_handled_total", grpc_code="OK", **rpc) == 1
    model = {"model": "identity", "version": "1"}
    assert delta(before, after, "model_infer_request_success_total", **model) == 1


async def test_grpc_stream_failing_mid_stream(models: ServerInfo) -> None:
    """A gRPC stream whose model fails: a model_error of transport grpc, its two responses,
    and the RPC handled with INTERNAL."""
    import grpc

    from streamwise.types import InferenceRequest

    request = InferenceRequest.model_validate(PROMPT)

    def run(stub: Any) -> int:
        got = 0
        with pytest.raises(grpc.RpcError):
            for _ in stub.ModelStreamInfer(iter([to_pb2(request, "fail-mid-stream")])):
                got += 1
        return got

    before = await scrape(models)
    assert await in_thread(models, run) == 2
    after = await scrape(models)
    labels = stream_labels("fail-mid-stream", "grpc")
    ended = "streamwise_streams_ended_total"
    assert delta(before, after, ended, outcome="model_error", **labels) == 1
    assert delta(before, after, "streamwise_stream_responses_total", **labels) == 2
    rpc = {"grpc_type": "BIDI_STREAM", "grpc_method": "ModelStreamInfer"}
    assert delta(before, after, "grpc_server_handled_total", grpc_code="INTERNAL", **rpc) == 1


async def test_stream_timeout(start_server: StartServer) -> None:
    info = await start_server(TEST_MODELS, request_timeout_s=0.3)
    before = await scrape(info)
    async with httpx.AsyncClient() as client:
        url = f"{info.http_url}/v2/models/slow-stream/generate_stream"
        r = await client.post(url, json=PROMPT)
    assert "event: error" in r.text
    after = await scrape(info)
    labels = stream_labels("slow-stream")
    ended = "streamwise_streams_ended_total"
    assert delta(before, after, ended, outcome="timeout", **labels) == 1
    assert delta(before, after, ended, **labels) == 1


LOGGING_MODEL = """
import streamwise
from streamwise import MLModel
from streamwise.types import InferenceResponse


class Logs(MLModel):
    async def load(self):
        streamwise.register("my_model_score", "a score the model computes")
        return True

    async def predict(self, payload):
        streamwise.log(my_model_score=0.75)
        return InferenceResponse(model_name=self.name, outputs=[])
"""


async def test_model_defined_metric(start_server: StartServer, tmp_path: pathlib.Path) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / "logs_model.py").write_text(textwrap.dedent(LOGGING_MODEL))
    (folder / "model-settings.json").write_text(
        '{"name": "logs", "implementation": "logs_model.Logs"}'
    )
    info = await start_server(tmp_path)
    before = await scrape(info)
    async with httpx.AsyncClient() as client:
        r = await client.post(f"{info.http_url}/v2/models/logs/infer", json=IDENTITY)
    assert r.status_code == 200, r.text
    after = await scrape(info)
    labels = {"model_name": "logs", "model_version": ""}
    assert delta(before, after, "my_model_score_count", **labels) == 1
    assert delta(before, after, "my_model_score_sum", **labels) == 0.75


async def test_metrics_off(start_server: StartServer, tmp_path: pathlib.Path) -> None:
    (tmp_path / "settings.json").write_text('{"metrics_endpoint": null}')
    port = free_port()
    info = await start_server(tmp_path, metrics_port=port)
    assert info.metrics_port is None and info.dataplane.metrics is None
    with pytest.raises(OSError):
        await trio.open_tcp_stream("127.0.0.1", port)


async def test_only_the_endpoint(demo: ServerInfo) -> None:
    async with httpx.AsyncClient() as client:
        r = await client.get(f"http://127.0.0.1:{demo.metrics_port}/elsewhere")
    assert r.status_code == 404


def test_gaps_counted_in_batches_land_in_the_right_buckets(monkeypatch: pytest.MonkeyPatch) -> None:
    """StreamMeter adds its gaps to the histogram's buckets itself: the same samples as
    ``observe`` would give, a batch's later responses with a gap of 0."""
    from prometheus_client import REGISTRY

    from streamwise import metrics

    times = iter([0.0, 0.1, 0.1003, 0.1103, 5.1103])
    monkeypatch.setattr(metrics.time, "monotonic", lambda: next(times))
    labels = {"model": "unit", "version": "", "transport": "rest"}
    meter = metrics.StreamMeter(("unit", "", "rest"))
    for batch in (2, 1, 3, 1):
        meter.seen(batch)
    meter.close()

    def value(name: str, **extra: str) -> float | None:
        return REGISTRY.get_sample_value(name, {**labels, **extra})

    gap = "streamwise_stream_response_gap_seconds"
    assert value(f"{gap}_count") == 6  # 0 | 0.0003 | 0.01, 0, 0 | 5.0
    assert value(f"{gap}_sum") == pytest.approx(0.0003 + 0.01 + 5.0)
    assert value(f"{gap}_bucket", le="0.0005") == 4  # 0.0003 and three 0s
    assert value(f"{gap}_bucket", le="0.01") == 5  # <= 0.01 counts in 0.01's bucket
    assert value(f"{gap}_bucket", le="2.5") == 5
    assert value(f"{gap}_bucket", le="5.0") == 6
    assert value("streamwise_stream_time_to_first_response_seconds_count") == 1
    assert value("streamwise_stream_time_to_first_response_seconds_sum") == pytest.approx(0.1)
    assert value("streamwise_stream_responses_total") == 7


def scrape_sync(port: int) -> Samples:
    r = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert r.status_code == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


@pytest.mark.slow
def test_workers_metrics_are_summed_and_outlive_a_worker(tmp_path: pathlib.Path) -> None:
    """``--parallel-workers 2``: the supervisor serves the sum of both workers' counts, and
    a worker killed and replaced keeps what it had counted."""
    import os
    import signal
    import time

    from tests.test_workers import served, whoami_repository

    port = free_port()
    with served(whoami_repository(tmp_path), "--metrics-port", str(port)) as server:
        answered: set[int] = set()
        calls = 0
        while answered != server.workers() and calls < 200:
            answered.add(server.pid_on_a_new_connection())
            calls += 1
        assert answered == server.workers()
        model = {"model": "whoami"}
        success = "model_infer_request_success_total"
        assert delta({}, scrape_sync(port), success, **model) == calls

        from tests.test_workers import stream_request

        with httpx.Client(base_url=server.http, timeout=10) as client:
            url = "/v2/models/whoami/generate_stream"
            r = client.post(url, json=stream_request(3, 0.01))
        assert r.text.count("data:") == 3
        samples = scrape_sync(port)
        labels = stream_labels("whoami")
        assert delta({}, samples, "streamwise_stream_responses_total", **labels) == 3
        assert delta({}, samples, "streamwise_stream_response_gap_seconds_count", **labels) == 2
        assert delta({}, samples, "streamwise_streams_ended_total", outcome="completed") == 1
        assert delta({}, samples, "streamwise_streams_open", **labels) == 0

        victim = next(iter(answered))
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while not (len(server.workers()) == 2 and victim not in server.workers()):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        for _ in range(300):  # until the replacement is ready
            try:
                server.pid_on_a_new_connection()
                break
            except (AssertionError, httpx.TransportError):
                time.sleep(0.1)
        calls += 1
        assert delta({}, scrape_sync(port), success, **model) == calls
