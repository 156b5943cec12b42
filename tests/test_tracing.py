"""OpenTelemetry tracing (docs/observability.md): spans exported by the SDK's in-memory
exporter, children of the client's ``traceparent``, for REST and gRPC, streams and unary
calls; and none made with tracing off."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from streamwise import ServerInfo, tracing
from streamwise.types import InferenceRequest
from tests.support.grpc_stubs import in_thread, to_pb2

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Our tracer on a provider of the test's own (the global one can be set only once)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(provider)
    try:
        yield exporter
    finally:
        tracing.use(None)


def tokens(n: int) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": "n", "shape": [1], "datatype": "INT64", "data": [n]},
            {"name": "delay_s", "shape": [1], "datatype": "FP64", "data": [0.0]},
        ]
    }


def prompt() -> InferenceRequest:
    return InferenceRequest.model_validate(
        {"inputs": [{"name": "p", "shape": [1], "datatype": "BYTES", "data": ["x"]}]}
    )


def only(exporter: InMemorySpanExporter) -> Any:
    finished = exporter.get_finished_spans()
    assert len(finished) == 1, finished
    return finished[0]


async def test_sse_stream_is_a_span_child_of_the_clients_with_its_events(
    demo: ServerInfo, spans: InMemorySpanExporter
) -> None:
    async with httpx.AsyncClient() as client:
        r = await client.post(
            f"{demo.http_url}/v2/models/token-streamer/generate_stream",
            json={**tokens(3), "id": "req-1"},
            headers={"traceparent": TRACEPARENT},
        )
    assert r.status_code == 200 and r.text.count("data:") == 3
    span = only(spans)
    assert span.name == "infer_stream"
    assert span.kind is SpanKind.SERVER
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert span.parent is not None and format(span.parent.span_id, "016x") == PARENT_ID
    assert [e.name for e in span.events] == ["first response", "end"]
    assert span.status.status_code is StatusCode.OK
    assert dict(span.attributes) == {
        "streamwise.model.name": "token-streamer",
        "streamwise.model.version": "",
        "streamwise.transport": "rest",
        "streamwise.request_id": "req-1",
        "streamwise.responses": 3,
        "streamwise.outcome": "completed",
    }


async def test_unary_rest_call_is_a_span(demo: ServerInfo, spans: InMemorySpanExporter) -> None:
    body = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}]}
    async with httpx.AsyncClient() as client:
        r = await client.post(f"{demo.http_url}/v2/models/identity/infer", json=body)
    assert r.status_code == 200, r.text
    span = only(spans)
    assert span.name == "infer" and span.parent is None  # no traceparent: a root span
    assert span.status.status_code is StatusCode.OK
    assert span.attributes["streamwise.model.name"] == "identity"
    assert span.attributes["streamwise.transport"] == "rest"


async def test_failing_stream_is_an_error(models: ServerInfo, spans: InMemorySpanExporter) -> None:
    async with httpx.AsyncClient() as client:
        r = await client.post(
            f"{models.http_url}/v2/models/fail-mid-stream/infer_stream",
            json=prompt().model_dump(exclude_none=True),
        )
    assert r.status_code == 200 and "event: error" in r.text
    span = only(spans)
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description.startswith("model_error: ")
    assert "boom after two tokens" in span.status.description
    assert span.attributes["streamwise.responses"] == 2
    assert [e.name for e in span.events] == ["first response", "end"]


async def test_grpc_stream_takes_traceparent_from_metadata(
    demo: ServerInfo, spans: InMemorySpanExporter
) -> None:
    request = InferenceRequest.model_validate(tokens(3))

    def run(stub: Any) -> int:
        call = stub.ModelStreamInfer(
            iter([to_pb2(request, "token-streamer")]), metadata=[("traceparent", TRACEPARENT)]
        )
        return len(list(call))

    assert await in_thread(demo, run) == 3
    span = only(spans)
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert span.attributes["streamwise.transport"] == "grpc"
    assert span.attributes["streamwise.responses"] == 3
    assert span.status.status_code is StatusCode.OK


async def test_off_no_span(demo: ServerInfo, spans: InMemorySpanExporter) -> None:
    tracing.use(None)
    async with httpx.AsyncClient() as client:
        r = await client.post(
            f"{demo.http_url}/v2/models/token-streamer/generate_stream",
            json=tokens(3),
            headers={"traceparent": TRACEPARENT},
        )
    assert r.status_code == 200
    assert spans.get_finished_spans() == ()


def test_without_the_api_tracing_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("opentelemetry", "opentelemetry.trace", "opentelemetry.propagate"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails
    try:
        importlib.reload(tracing)
        assert tracing.tracer is None
        assert tracing.extract([(b"traceparent", TRACEPARENT.encode())]) is None
    finally:
        monkeypatch.undo()
        importlib.reload(tracing)
    assert tracing.tracer is not None
