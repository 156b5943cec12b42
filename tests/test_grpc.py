"""gRPC with a real grpcio client (stubs compiled from proto/ under a private package):
status codes, bidi streaming, cancellation, deadlines, metadata, every datatype."""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any, TypeVar

import grpc
import numpy as np
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from streamwise import ServerInfo
from streamwise.protocol.validation import INT_RANGES
from streamwise.types import InferenceRequest
from tests.support import StartServer, probe, served_in_subprocess
from tests.support.disconnects import grpc_cancel_after_two
from tests.support.grpc_stubs import code_of, from_pb2, in_thread, load_stubs, to_pb2

pb2, pb2_grpc = load_stubs()
T = TypeVar("T")


def prompt(text: str = "x", **extra: Any) -> InferenceRequest:
    return InferenceRequest.model_validate(
        {"inputs": [{"name": "p", "shape": [1], "datatype": "BYTES", "data": [text]}], **extra}
    )


async def test_health_metadata_and_repository(demo: ServerInfo) -> None:
    def calls(stub: Any) -> Any:
        return (
            stub.ServerLive(pb2.ServerLiveRequest()).live,
            stub.ServerReady(pb2.ServerReadyRequest()).ready,
            stub.ModelReady(pb2.ModelReadyRequest(name="text-model", version="v1.2.3")).ready,
            stub.ServerMetadata(pb2.ServerMetadataRequest()).name,
            stub.ModelMetadata(pb2.ModelMetadataRequest(name="text-model")),
            [m.name for m in stub.RepositoryIndex(pb2.RepositoryIndexRequest()).models],
        )

    live, ready, model_ready, name, meta, index = await in_thread(demo, calls)
    assert (live, ready, model_ready, name) == (True, True, True, "streamwise")
    assert (meta.name, list(meta.versions), meta.platform) == (
        "text-model",
        ["text-model/v1.2.3"],
        "mlserver",
    )
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [("prompt", "BYTES", [1])]
    assert index == ["identity", "text-model", "token-streamer"]


async def test_status_codes(models: ServerInfo) -> None:
    def calls(stub: Any) -> list[tuple[grpc.StatusCode, str]]:
        bad_datatype = pb2.ModelInferRequest(
            model_name="slow-stream",
            inputs=[pb2.ModelInferRequest.InferInputTensor(name="p", datatype="FP33", shape=[1])],
        )
        return [
            code_of(lambda: stub.ModelInfer(to_pb2(prompt(), "nope"))),
            code_of(lambda: stub.ModelReady(pb2.ModelReadyRequest(name="nope"))),
            code_of(lambda: stub.ModelMetadata(pb2.ModelMetadataRequest(name="nope"))),
            code_of(
                lambda: stub.ModelReady(pb2.ModelReadyRequest(name="slow-stream", version="9"))
            ),
            code_of(lambda: stub.ModelInfer(bad_datatype)),
            code_of(lambda: stub.ModelInfer(to_pb2(prompt(), "broken-load"))),
            code_of(lambda: stub.ModelInfer(to_pb2(prompt(), "fail-mid-stream"))),
            code_of(
                lambda: list(stub.ModelStreamInfer(iter([to_pb2(prompt(), "fail-mid-stream")])))
            ),
        ]

    results = await in_thread(models, calls)
    codes = [code for code, _ in results]
    C = grpc.StatusCode
    assert codes == [
        C.NOT_FOUND,
        C.NOT_FOUND,
        C.NOT_FOUND,
        C.NOT_FOUND,
        C.INVALID_ARGUMENT,
        C.UNAVAILABLE,
        C.INTERNAL,
        C.INTERNAL,
    ]
    assert "unknown datatype 'FP33'" in results[4][1]
    assert "weights.bin" in results[5][1]
    assert results[6][1] == "model failed: RuntimeError: the model broke"
    assert "boom after two tokens" in results[7][1]


async def test_failure_mid_stream_comes_after_the_messages(models: ServerInfo) -> None:
    def run(stub: Any) -> tuple[list[str], grpc.StatusCode]:
        call = stub.ModelStreamInfer(iter([to_pb2(prompt(), "fail-mid-stream")]))
        got = []
        with pytest.raises(grpc.RpcError) as err:
            for msg in call:
                got.append(msg.outputs[0].contents.bytes_contents[0].decode())
        return got, err.value.code()

    assert await in_thread(models, run) == (["t0", "t1"], grpc.StatusCode.INTERNAL)


async def test_empty_request_stream_ends_ok_with_no_responses(models: ServerInfo) -> None:
    def run(stub: Any) -> Any:
        call = stub.ModelStreamInfer(iter([]))
        return list(call), call.code()

    assert await in_thread(models, run) == ([], grpc.StatusCode.OK)


async def test_bidi_answers_arrive_before_the_next_request_is_sent(models: ServerInfo) -> None:
    def run(stub: Any) -> list[tuple[str, str]]:
        answered = threading.Semaphore(0)
        ids = [f"req-{i}" for i in range(3)]

        def requests() -> Iterator[Any]:
            for i, rid in enumerate(ids):
                yield to_pb2(prompt(f"msg-{i}", id=rid), "echo-stream")
                # the server must answer before we half-close or send more
                assert answered.acquire(timeout=10), f"no answer to {rid} before the next request"
                time.sleep(0.3)

        got = []
        for msg in stub.ModelStreamInfer(requests()):
            got.append((msg.id, msg.outputs[0].contents.bytes_contents[0].decode()))
            answered.release()
        return got

    assert await in_thread(models, run) == [
        ("req-0", "msg-0"),
        ("req-1", "msg-1"),
        ("req-2", "msg-2"),
    ]


@pytest.mark.parametrize("model", ["slow-stream", "slow-stream-aio"])
async def test_client_cancel_cancels_the_model(models: ServerInfo, model: str) -> None:
    for _ in range(20):
        delay, cancelled = await grpc_cancel_after_two(models, model)
        assert cancelled and delay < 5.0  # figures: scripts/bench_disconnect.py


@pytest.mark.parametrize("model", ["slow-stream", "slow-stream-aio"])
async def test_deadline_gives_deadline_exceeded_and_cancels_the_model(
    models: ServerInfo, model: str
) -> None:
    rid = str(uuid.uuid4())

    def run(stub: Any) -> tuple[int, grpc.StatusCode]:
        got = 0
        with pytest.raises(grpc.RpcError) as err:
            for _ in stub.ModelStreamInfer(iter([to_pb2(prompt(id=rid), model)]), timeout=0.3):
                got += 1
        return got, err.value.code()

    assert await in_thread(models, run) == (2, grpc.StatusCode.DEADLINE_EXCEEDED)
    with trio.fail_after(10):
        while rid not in probe.finally_at:  # noqa: ASYNC110 - the model writes a dict
            await trio.sleep(0.001)
    assert probe.cancelled[rid]


async def test_metadata_reaches_the_model_and_comes_back_as_trailers(models: ServerInfo) -> None:
    """The model (tests/models/headers) records the headers it saw and answers with a
    header of its own making: the server copying metadata to trailers would not pass."""
    rid = f"meta-{uuid.uuid4()}"

    def run(stub: Any) -> Any:
        request = InferenceRequest.model_validate(
            {"id": rid, "inputs": [{"name": "a", "shape": [1], "datatype": "INT32", "data": [1]}]}
        )
        _, call = stub.ModelInfer.with_call(
            to_pb2(request, "headers"), metadata=[("x-tenant", "acme"), ("x-user", "ann")]
        )
        return dict(call.trailing_metadata())

    trailers = await in_thread(models, run)
    assert probe.headers_seen[rid]["x-tenant"] == "acme"
    assert probe.headers_seen[rid]["x-user"] == "ann"
    assert trailers["x-seen"] == "x-tenant=acme,x-user=ann"


async def test_message_size_limit_is_resource_exhausted(start_server: StartServer) -> None:
    info = await start_server(grpc_max_message_length=1000)
    big = InferenceRequest.model_validate(
        {"inputs": [{"name": "a", "shape": [500], "datatype": "FP32", "data": [1.0] * 500}]}
    )

    def run(stub: Any) -> tuple[grpc.StatusCode, str]:
        return code_of(lambda: stub.ModelInfer(to_pb2(big, "identity")))

    code, details = await in_thread(info, run)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "grpc_max_message_length" in details


DATATYPES = ["BOOL", *INT_RANGES, "FP16", "BF16", "FP32", "FP64", "BYTES"]
WIDTH = {"FP16": 16, "FP32": 32, "FP64": 64}


@st.composite
def tensors(draw: st.DrawFn) -> dict[str, Any]:
    datatype = draw(st.sampled_from(DATATYPES))
    shape = draw(st.lists(st.integers(0, 3), min_size=1, max_size=3))
    n = math.prod(shape)
    if datatype == "BOOL":
        element: st.SearchStrategy[Any] = st.booleans()
    elif datatype == "BYTES":
        element = st.text(max_size=6)
    elif datatype == "BF16":  # a float32 whose low 16 bits are 0: exactly a bfloat16
        element = (
            st.integers(0, 0xFFFF)
            .map(lambda b: float(np.array([b << 16], dtype=np.uint32).view(np.float32)[0]))
            .filter(math.isfinite)
        )
    elif datatype in WIDTH:
        element = st.floats(allow_nan=False, allow_infinity=False, width=WIDTH[datatype])  # type: ignore[arg-type]
    else:
        element = st.integers(*INT_RANGES[datatype])
    data = draw(st.lists(element, min_size=n, max_size=n))
    return {"name": "t", "datatype": datatype, "shape": shape, "data": data}


@pytest.fixture(scope="module")
def demo_grpc_port() -> Iterator[int]:
    """The demo repository in a subprocess: hypothesis examples are plain sync calls."""
    with served_in_subprocess(None) as (_, grpc_port):
        yield grpc_port


@settings(max_examples=60, deadline=None)
@given(tensor=tensors(), raw=st.booleans())
def test_model_infer_round_trips_every_datatype(
    demo_grpc_port: int, tensor: dict[str, Any], raw: bool
) -> None:
    request = InferenceRequest.model_validate({"inputs": [tensor]})
    with grpc.insecure_channel(f"127.0.0.1:{demo_grpc_port}") as channel:
        stub = pb2_grpc.GRPCInferenceServiceStub(channel)
        reply = stub.ModelInfer(to_pb2(request, "identity", raw))
    assert bool(reply.raw_output_contents) == (raw or tensor["datatype"] in ("FP16", "BF16"))
    [out] = from_pb2(reply).outputs
    assert (out.datatype, out.shape) == (tensor["datatype"], tensor["shape"])
    expected = tensor["data"]
    if tensor["datatype"] == "BYTES":
        expected = [s.encode() for s in expected]
    assert out.data.root == expected


def test_bf16_travels_as_raw_contents(demo_grpc_port: int) -> None:
    """BF16 has no typed field: raw contents both ways, the upper half of a float32 each
    (as Triton's clients send it), written here by hand, not by our encoder."""
    bits = bytes.fromhex("803f20c0203e")  # 1.0, -2.5, 0.15625, little-endian
    request = pb2.ModelInferRequest(model_name="identity", raw_input_contents=[bits])
    request.inputs.add(name="x", datatype="BF16", shape=[3])
    with grpc.insecure_channel(f"127.0.0.1:{demo_grpc_port}") as channel:
        stub = pb2_grpc.GRPCInferenceServiceStub(channel)
        reply = stub.ModelInfer(request)
        [out] = reply.outputs
        assert (out.datatype, list(out.shape)) == ("BF16", [3])
        assert list(reply.raw_output_contents) == [bits]
        request.raw_input_contents[0] = bits[:-1]  # not a whole number of elements
        code, details = code_of(lambda: stub.ModelInfer(request))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "BF16" in details


async def test_mlserver_model_repository_service(demo: ServerInfo) -> None:
    from streamwise._proto.inference import model_repository as repo

    def run(_: Any) -> Any:
        with grpc.insecure_channel(f"127.0.0.1:{demo.grpc_port}") as ch:
            index = ch.unary_unary(
                "/inference.model_repository.ModelRepositoryService/RepositoryIndex",
                request_serializer=bytes,
                response_deserializer=repo.RepositoryIndexResponse.parse,
            )
            unload = ch.unary_unary(
                "/inference.model_repository.ModelRepositoryService/RepositoryModelUnload",
                request_serializer=bytes,
                response_deserializer=repo.RepositoryModelUnloadResponse.parse,
            )
            unload(repo.RepositoryModelUnloadRequest(model_name="identity"))
            return [(m.name, m.state) for m in index(repo.RepositoryIndexRequest()).models]

    assert await in_thread(demo, run) == [
        ("identity", "UNAVAILABLE"),
        ("text-model", "READY"),
        ("token-streamer", "READY"),
    ]
