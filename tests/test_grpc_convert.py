"""V2 types <-> gRPC messages: every datatype, typed and raw, survives the wire."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamwise._proto import inference as pb
from streamwise.errors import InvalidRequest
from streamwise.grpc import decode
from streamwise.grpc.convert import (
    parameters_to_proto,
    parse_message,
    request_from_proto,
    request_to_proto,
    response_from_proto,
    response_to_proto,
)
from streamwise.grpc.decode import decode_request
from streamwise.grpc.encode import encode_response
from streamwise.protocol.validation import INT_RANGES, element_count
from streamwise.types import InferenceRequest, InferenceResponse, Parameters

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
def tensors(draw: st.DrawFn) -> tuple[str, list[int], list[object]]:
    """A tensor's datatype, shape, and flat data of that many elements."""
    datatype = draw(st.sampled_from(DATATYPES))
    shape = draw(st.lists(st.integers(0, 3), min_size=1, max_size=3))
    n = math.prod(shape)
    return datatype, shape, draw(st.lists(elements(datatype), min_size=n, max_size=n))


@st.composite
def requests(draw: st.DrawFn) -> InferenceRequest:
    inputs = []
    for i in range(draw(st.integers(1, 3))):
        datatype, shape, data = draw(tensors())
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
        (bad(raw=[b"\0" * 7]), "raw_input_contents length 7 is not a multiple of the FP32 "),
        (
            bad(raw=[b"\0" * 12]),
            r"shape \[2\] needs 2 FP32 elements \(4 bytes each\), raw contents has 3",
        ),
        (bad(raw=[b"\0" * 8], contents=pb.InferTensorContents(fp32_contents=[1, 2])), "both raw"),
        (bad(raw=[b"\0" * 8, b""]), "2 raw_input_contents for 1 inputs"),
        (
            bad(datatype="BYTES", shape=[1], raw=[b"\5\0\0\0ab"]),
            "runs past the end of its raw contents",
        ),
        (bad(datatype="FP16", contents=pb.InferTensorContents(fp32_contents=[1, 2])), "as raw"),
    ],
)
def test_malformed_requests_are_invalid(msg: pb.ModelInferRequest, match: str) -> None:
    with pytest.raises(InvalidRequest, match=match):
        request_from_proto(msg)


# -- untrusted bytes (found by tests/test_fuzz_slice.py) ----------------------------------------
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, wire: int, payload: bytes | int) -> bytes:
    key = _varint(number << 3 | wire)
    if wire == 0:
        assert isinstance(payload, int)
        return key + _varint(payload)
    assert isinstance(payload, bytes)
    return key + (_varint(len(payload)) + payload if wire == 2 else payload)


def test_a_parameter_map_entry_without_its_value_is_an_unset_parameter() -> None:
    # parameters {key: "p"} with no value: was AttributeError in which_one_of -> UNKNOWN
    msg = parse_message(_field(4, 2, _field(1, 2, b"p")), pb.ModelInferRequest)
    request, _ = request_from_proto(msg)
    assert request.inputs == [] and request.parameters is not None
    assert request.parameters.model_extra == {"p": None}


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (_field(1, 0, 1), r"ModelInferRequest.model_name is int, the proto declares string"),
        (_field(5, 0, 5), r"ModelInferRequest.inputs\[0\] is int"),
        (_field(7, 0, 5), r"raw_input_contents\[0\] is int"),
        (_field(5, 2, _field(1, 0, 7)), r"inputs\[0\].name is int"),
        (_field(5, 2, _field(5, 0, 1)), r"inputs\[0\].contents is int"),
        (_field(5, 2, _field(5, 2, _field(8, 0, 1))), r"contents.bytes_contents\[0\] is int"),
        (_field(4, 2, _field(1, 2, b"k") + _field(2, 2, _field(3, 0, 1))), r"string_param is int"),
        (
            _field(4, 2, _field(1, 2, b"k") + _field(2, 2, _field(1, 2, b"\1\1"))),
            "bool_param is list",
        ),
        (_field(4, 2, _field(1, 0, 1) + _field(2, 2, b"")), r"parameters key is int"),
        (_field(1, 5, b"\0\0\0\0"), "KeyError"),  # a fixed32 string
        (_field(2, 2, b"\xff\xfe"), "UnicodeDecodeError"),
        (b"\x0a", "EOFError"),  # a length that never comes
        (b"\x0b", "model_name is NoneType"),  # a group: not proto3
    ],
)
def test_wire_types_that_do_not_match_the_field_are_invalid(data: bytes, match: str) -> None:
    with pytest.raises(InvalidRequest, match=match):
        request_from_proto(parse_message(data, pb.ModelInferRequest))


_WIRE = st.recursive(
    st.binary(max_size=12),
    lambda inner: st.lists(
        st.one_of(
            st.builds(_field, st.integers(1, 9), st.just(0), st.integers(0, 2**64 - 1)),
            st.builds(_field, st.integers(1, 9), st.just(1), st.binary(min_size=8, max_size=8)),
            st.builds(_field, st.integers(1, 9), st.just(5), st.binary(min_size=4, max_size=4)),
            st.builds(_field, st.integers(1, 9), st.just(2), inner),
        ),
        max_size=5,
    ).map(b"".join),
    max_leaves=15,
)


@given(_WIRE | st.binary(max_size=64))
def test_any_bytes_parse_to_a_request_or_are_invalid(data: bytes) -> None:
    try:
        request_from_proto(parse_message(data, pb.ModelInferRequest))
    except InvalidRequest:
        pass


@given(requests(), st.booleans())
def test_parse_message_accepts_what_request_to_proto_writes(
    request: InferenceRequest, raw: bool
) -> None:
    wire = bytes(request_to_proto(request, "identity", raw=raw))
    assert parse_message(wire, pb.ModelInferRequest) == pb.ModelInferRequest.parse(wire)


def test_hostile_shapes_and_names_give_short_messages_and_a_bounded_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import streamwise.protocol.binary as binary  # gRPC's raw contents are read there

    counted: list[int] = []

    def spy(shape: list[int]) -> int:  # the bounded counter (tests/test_validation.py)
        counted.append(len(shape))
        return element_count(shape)

    monkeypatch.setattr(binary, "element_count", spy)
    long = "é" * 100_000
    cases = [
        (bad(name=long, raw=[b"\0" * 7]), "is not a multiple"),
        (bad(shape=[2**62] * 50_000, raw=[b"\0" * 4]), "needs more than"),  # was 7 s
        (bad(datatype=long), "unknown datatype"),
        (bad(name=long, datatype="BYTES", shape=[1], raw=[b"\5\0\0\0ab"]), "runs past"),
    ]
    for msg, match in cases:
        with pytest.raises(InvalidRequest, match=match) as info:
            request_from_proto(msg)
        assert len(str(info.value)) < 300
    assert 50_000 in counted


# -- the fast encoder (grpc/encode.py) means what response_to_proto means -----------------
PARAMETER_VALUES = st.one_of(
    st.booleans(),
    st.sampled_from([0, 1, -1, 127, 128, 2**63 - 1, 2**63, 2**64 - 1, -(2**63)]),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.lists(st.integers(0, 9), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(0, 9), max_size=2),
)


@st.composite
def parameters(draw: st.DrawFn) -> dict[str, object] | None:
    values = draw(st.dictionaries(st.text(min_size=1, max_size=6), PARAMETER_VALUES, max_size=3))
    if draw(st.booleans()):
        values["content_type"] = draw(st.sampled_from(["str", "np", "base64"]))
    if draw(st.booleans()):
        values["headers"] = {"x-trace": "1"}  # metadata, never a parameter
    return draw(st.sampled_from([None, values]))


@st.composite
def responses(draw: st.DrawFn) -> InferenceResponse:
    outputs = []
    for i in range(draw(st.integers(0, 3))):
        datatype, shape, data = draw(tensors())
        if datatype == "BYTES" and draw(st.booleans()):
            data = [x.decode("latin-1") for x in data]  # type: ignore[attr-defined]  # str
        if data and len(shape) > 1 and draw(st.booleans()):
            data = np.array(data, dtype=object).reshape(shape).tolist()  # nested
        outputs.append(
            {
                "name": f"out{i}",
                "datatype": datatype,
                "shape": shape,
                "data": data,
                "parameters": draw(parameters()),
            }
        )
    return InferenceResponse.model_validate(
        {
            "model_name": draw(st.text(min_size=1, max_size=8)),
            "model_version": draw(st.sampled_from([None, "", "v1"])),
            "id": draw(st.sampled_from([None, "", "abc"])),
            "parameters": draw(parameters()),
            "outputs": outputs,
        }
    )


@given(responses(), st.booleans())
def test_the_fast_encoder_writes_what_response_to_proto_means(
    response: InferenceResponse, raw: bool
) -> None:
    from tests.support.grpc_stubs import load_stubs

    fast = encode_response(response, raw)
    reference = response_to_proto(response, raw)
    assert pb.ModelInferResponse.parse(fast) == reference
    official = load_stubs()[0].ModelInferResponse  # the protobuf runtime reads them alike
    assert official.FromString(fast) == official.FromString(bytes(reference))


# -- the request reader (grpc/decode.py): what parse_message reads, for any bytes ---------------
def _parse_both(data: bytes) -> tuple[object, object]:
    """(decode_request's answer, parse_message's): a message, or the error's text."""
    answers = []
    for parse in (decode_request, lambda d: parse_message(d, pb.ModelInferRequest)):
        try:
            answers.append(parse(data))
        except InvalidRequest as exc:
            answers.append(f"InvalidRequest: {exc}")
    return answers[0], answers[1]


@given(requests(), st.booleans(), parameters(), parameters())
def test_the_request_reader_reads_what_betterproto2_reads(
    request: InferenceRequest,
    raw: bool,
    params: dict[str, object] | None,
    out_params: dict[str, object] | None,
) -> None:
    message = request_to_proto(request, "model", raw=raw)
    message.model_version = "v2"
    message.parameters = parameters_to_proto(Parameters.model_validate(params) if params else None)
    message.outputs = [
        pb.ModelInferRequestInferRequestedOutputTensor(
            name="out",
            parameters=parameters_to_proto(
                Parameters.model_validate(out_params) if out_params else None
            ),
        )
    ]
    wire = bytes(message)
    # read by the reader itself (not handed on to betterproto2), and alike
    assert decode._request(wire) == parse_message(wire, pb.ModelInferRequest)


@given(_WIRE | st.binary(max_size=64))
def test_the_request_reader_answers_any_bytes_as_parse_message_does(data: bytes) -> None:
    fast, reference = _parse_both(data)
    assert fast == reference


@given(requests(), st.data())
def test_the_request_reader_on_damaged_requests_answers_as_parse_message_does(
    request: InferenceRequest, data: st.DataObject
) -> None:
    """A real request with a byte changed, or cut short: read alike, or refused alike."""
    wire = bytearray(bytes(request_to_proto(request, "model")))
    at = data.draw(st.integers(0, len(wire) - 1))
    if data.draw(st.booleans()):
        wire[at] = data.draw(st.integers(0, 255))
    else:
        del wire[at:]
    fast, reference = _parse_both(bytes(wire))
    assert fast == reference
