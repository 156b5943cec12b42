"""V2 types <-> gRPC messages: every datatype, typed and raw, survives the wire."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamwise._proto import inference as pb
from streamwise.errors import InvalidRequest
from streamwise.grpc.convert import (
    request_from_proto,
    request_to_proto,
    response_from_proto,
    response_to_proto,
)
from streamwise.protocol.validation import INT_RANGES
from streamwise.types import InferenceRequest, InferenceResponse

DATATYPES = ["BOOL", *INT_RANGES, "FP16", "FP32", "FP64", "BYTES"]
FLOAT_WIDTH = {"FP16": 16, "FP32": 32, "FP64": 64}


def elements(datatype: str) -> st.SearchStrategy[object]:
    if datatype == "BOOL":
        return st.booleans()
    if datatype == "BYTES":
        return st.binary(max_size=12)
    if datatype in FLOAT_WIDTH:
        return st.floats(allow_nan=False, width=FLOAT_WIDTH[datatype])  # type: ignore[arg-type]
    lo, hi = INT_RANGES[datatype]
    return st.integers(lo, hi)


@st.composite
def requests(draw: st.DrawFn) -> InferenceRequest:
    inputs = []
    for i in range(draw(st.integers(1, 3))):
        datatype = draw(st.sampled_from(DATATYPES))
        shape = draw(st.lists(st.integers(0, 3), min_size=1, max_size=3))
        n = math.prod(shape)
        data = draw(st.lists(elements(datatype), min_size=n, max_size=n))
        inputs.append(
            {
                "name": f"in{i}",
                "datatype": datatype,
                "shape": shape,
                "data": data,
                "parameters": draw(st.sampled_from([None, {"content_type": "np"}])),
            }
        )
    params = draw(
        st.sampled_from(
            [
                None,
                {
                    "content_type": "str",
                    "temperature": 0.5,
                    "top_k": 7,
                    "stream": True,
                    "big": 2**63 + 1,
                },
            ]
        )
    )
    return InferenceRequest.model_validate(
        {"id": draw(st.uuids()).hex, "inputs": inputs, "parameters": params}
    )


@given(requests(), st.booleans())
def test_requests_round_trip_typed_and_raw(request: InferenceRequest, raw: bool) -> None:
    wire = bytes(request_to_proto(request, "identity", raw=raw))
    back, used_raw = request_from_proto(pb.ModelInferRequest.parse(wire))
    assert used_raw == (raw or any(i.datatype == "FP16" for i in request.inputs))
    assert back.id == request.id
    assert back.parameters == request.parameters
    for sent, got in zip(request.inputs, back.inputs, strict=True):
        assert (got.name, got.datatype, got.shape) == (sent.name, sent.datatype, sent.shape)
        assert got.parameters == sent.parameters
        assert got.data.root == sent.data.root


@given(requests(), st.booleans())
def test_responses_round_trip(request: InferenceRequest, raw: bool) -> None:
    response = InferenceResponse.model_validate(
        {"model_name": "m", "id": request.id, "outputs": [i.model_dump() for i in request.inputs]}
    )
    back = response_from_proto(pb.ModelInferResponse.parse(bytes(response_to_proto(response, raw))))
    assert back.id == request.id and back.model_name == "m"
    for sent, got in zip(response.outputs, back.outputs, strict=True):
        assert (got.name, got.datatype, got.shape) == (sent.name, sent.datatype, sent.shape)
        assert got.data.root == sent.data.root


def test_str_outputs_travel_as_bytes_contents_and_nested_data_is_flattened() -> None:
    response = InferenceResponse.model_validate(
        {
            "model_name": "m",
            "outputs": [{"name": "o", "datatype": "BYTES", "shape": [1, 2], "data": [["a", "é"]]}],
        }
    )
    msg = response_to_proto(response)
    assert msg.outputs[0].contents.bytes_contents == [b"a", "é".encode()]
    assert msg.raw_output_contents == []


def test_fp16_outputs_force_raw_contents() -> None:
    response = InferenceResponse.model_validate(
        {
            "model_name": "m",
            "outputs": [
                {"name": "o", "datatype": "FP16", "shape": [2], "data": [1.5, -2.0]},
                {"name": "p", "datatype": "INT8", "shape": [1], "data": [3]},
            ],
        }
    )
    msg = response_to_proto(response)
    assert all(o.contents is None for o in msg.outputs)
    assert msg.raw_output_contents[0] == np.array([1.5, -2.0], "<f2").tobytes()


def bad(**fields: object) -> pb.ModelInferRequest:
    tensor = {"name": "x", "datatype": "FP32", "shape": [2]} | fields
    raw = tensor.pop("raw", None)
    return pb.ModelInferRequest(
        model_name="m",
        inputs=[pb.ModelInferRequestInferInputTensor(**tensor)],
        raw_input_contents=raw or [],
    )


@pytest.mark.parametrize(
    ("msg", "match"),
    [
        (bad(datatype="FP33"), "unknown datatype 'FP33'"),
        (bad(raw=[b"\0" * 7]), "needs 8 bytes, raw data has 7"),
        (bad(raw=[b"\0" * 8], contents=pb.InferTensorContents(fp32_contents=[1, 2])), "both raw"),
        (bad(raw=[b"\0" * 8, b""]), "2 raw_input_contents for 1 inputs"),
        (bad(datatype="BYTES", shape=[1], raw=[b"\5\0\0\0ab"]), "runs past its buffer"),
        (bad(datatype="FP16", contents=pb.InferTensorContents(fp32_contents=[1, 2])), "as raw"),
    ],
)
def test_malformed_requests_are_invalid(msg: pb.ModelInferRequest, match: str) -> None:
    with pytest.raises(InvalidRequest, match=match):
        request_from_proto(msg)
