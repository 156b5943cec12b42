"""Hypothesis properties: random tensors round-trip through identity, and random texts
streamed word by word reassemble to the input, on REST and on gRPC.

``--examples N`` sets the number of examples per property (20 by default)."""

from __future__ import annotations

import math
from typing import Any

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .grpc_client import CONTENTS, Client, encode_raw, output_values
from .wire import describe, first_text, flatten, request, sse, tensor, text_input

INT_RANGES = {
    "UINT8": (0, 2**8 - 1), "UINT16": (0, 2**16 - 1), "UINT32": (0, 2**32 - 1),
    "UINT64": (0, 2**64 - 1), "INT8": (-(2**7), 2**7 - 1), "INT16": (-(2**15), 2**15 - 1),
    "INT32": (-(2**31), 2**31 - 1), "INT64": (-(2**63), 2**63 - 1),
}  # fmt: skip
FINITE = {"allow_nan": False, "allow_infinity": False}
ELEMENTS: dict[str, st.SearchStrategy[Any]] = {
    "BOOL": st.booleans(),
    **{dt: st.integers(lo, hi) for dt, (lo, hi) in INT_RANGES.items()},
    "FP16": st.floats(width=16, **FINITE),
    "FP32": st.floats(width=32, **FINITE),
    "FP64": st.floats(**FINITE),
    "BYTES": st.text(max_size=20),
}
WORDS = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=80)


def nest(flat: list[Any], shape: list[int]) -> list[Any]:
    if len(shape) <= 1:
        return flat
    step = len(flat) // shape[0] if shape[0] else 0
    return [nest(flat[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]


@st.composite
def tensors(draw: st.DrawFn) -> dict[str, Any]:
    datatype = draw(st.sampled_from(sorted(ELEMENTS)))
    shape = draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))
    flat = draw(st.lists(ELEMENTS[datatype], min_size=math.prod(shape), max_size=math.prod(shape)))
    data = nest(flat, shape) if draw(st.booleans()) else flat
    parameters = {"content_type": "str"} if datatype == "BYTES" else None
    return tensor("x", datatype, shape, data, parameters)


def examples(target: Any) -> Any:
    return settings(
        max_examples=target.examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


def test_random_tensors_round_trip_over_rest(http: httpx.Client, need, target) -> None:
    need("identity")

    @examples(target)
    @given(tensors())
    def check(sent: dict[str, Any]) -> None:
        response = http.post("/v2/models/identity/infer", json=request(sent))
        assert response.status_code == 200, describe(response)
        (got,) = response.json()["outputs"]
        assert (got["datatype"], got["shape"]) == (sent["datatype"], sent["shape"]), got
        assert flatten(got["data"]) == flatten(sent["data"]), got

    check()


@pytest.mark.streaming
def test_random_texts_reassemble_over_sse(http: httpx.Client, need, target) -> None:
    need("word-streamer")

    @examples(target)
    @given(WORDS)
    def check(text: str) -> None:
        response, events = sse(
            http, "/v2/models/word-streamer/generate_stream", request(text_input("text", text))
        )
        assert response.status_code == 200, describe(response)
        assert len(events) == text.count(" ") + 1
        assert "".join(first_text(e.json()) for e in events) == text

    check()


# -- gRPC --
def grpc_request(client: Client, sent: dict[str, Any], raw: bool) -> Any:
    request = client.pb.ModelInferRequest(model_name="identity")
    tensor = request.inputs.add(name="x", datatype=sent["datatype"], shape=sent["shape"])
    values = flatten(sent["data"])
    if sent["datatype"] == "BYTES":
        values = [v.encode() for v in values]
    field = CONTENTS[sent["datatype"]][0]
    if raw or field is None:
        request.raw_input_contents.append(encode_raw(sent["datatype"], values))
    else:
        getattr(tensor.contents, field).extend(values)
    return request


@pytest.mark.grpc
def test_random_tensors_round_trip_over_grpc(grpc_client: Client, need, target) -> None:
    need("identity")

    @examples(target)
    @given(tensors(), st.booleans())
    def check(sent: dict[str, Any], raw: bool) -> None:
        reply = grpc_client.ModelInfer(grpc_request(grpc_client, sent, raw), timeout=10)
        (got,) = reply.outputs
        assert (got.datatype, list(got.shape)) == (sent["datatype"], sent["shape"]), got
        values = flatten(sent["data"])
        if sent["datatype"] == "BYTES":
            values = [v.encode() for v in values]
        elif sent["datatype"] != "BOOL":
            values = np.array(values, dtype=CONTENTS[sent["datatype"]][1]).tolist()
        assert output_values(reply, 0) == values

    check()


@pytest.mark.grpc
@pytest.mark.streaming
@pytest.mark.usefixtures("mlserver_stream")
def test_random_texts_reassemble_over_grpc(grpc_client: Client, need, target) -> None:
    need("word-streamer")

    @examples(target)
    @given(WORDS)
    def check(text: str) -> None:
        request = grpc_client.pb.ModelInferRequest(model_name="word-streamer")
        tensor = request.inputs.add(name="text", datatype="BYTES", shape=[1])
        tensor.parameters["content_type"].string_param = "str"
        tensor.contents.bytes_contents.append(text.encode())
        replies = list(grpc_client.ModelStreamInfer(iter([request]), timeout=30))
        assert len(replies) == text.count(" ") + 1
        assert b"".join(output_values(r, 0)[0] for r in replies).decode() == text

    check()
