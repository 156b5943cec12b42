"""streamwise.codecs: MLServer's codec API, round trips, content types, registry, errors."""

from __future__ import annotations

import base64
import datetime as dt
from types import SimpleNamespace
from typing import Any, List, Optional  # noqa: UP035 - MLServer users write these

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import streamwise.codecs as codecs
from streamwise.codecs import (
    Base64Codec,
    CodecError,
    DatetimeCodec,
    DecodedParameterName,
    InputCodec,
    NumpyCodec,
    NumpyRequestCodec,
    RequestCodec,
    StringCodec,
    StringRequestCodec,
    decode_args,
    decode_inference_request,
    decode_request_input,
    encode_inference_response,
    encode_response_output,
    find_input_codec,
    find_request_codec,
    get_decoded,
    get_decoded_or_raw,
    has_decoded,
    register_input_codec,
)
from streamwise.codecs.base import _codec_registry
from streamwise.codecs.numpy import to_datatype, to_dtype
from streamwise.errors import InferenceError
from streamwise.types import (
    InferenceRequest,
    InferenceResponse,
    MetadataTensor,
    Parameters,
    RequestInput,
    RequestOutput,
    ResponseOutput,
)

DATATYPES = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}
SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)
texts = st.lists(st.text(), max_size=8)


def _via_json(output: ResponseOutput) -> ResponseOutput:
    return ResponseOutput.model_validate_json(output.model_dump_json())


def _input_via_json(inp: RequestInput) -> RequestInput:
    return RequestInput.model_validate_json(inp.model_dump_json())


def _inp(
    data: Any, datatype: str = "BYTES", shape: list[int] | None = None, **params: Any
) -> RequestInput:
    size = len(data) if isinstance(data, list) else 1
    return RequestInput(
        name="in",
        shape=[size] if shape is None else shape,
        datatype=datatype,
        data=data,
        parameters=Parameters(**params) if params else None,
    )


# --- public API ---------------------------------------------------------------------


def test_public_names() -> None:
    for name in codecs.__all__:
        assert hasattr(codecs, name), name
    for name in ("NumpyCodec", "StringCodec", "Base64Codec", "decode_args", "CodecError"):
        assert name in codecs.__all__


def test_codec_error_is_inference_error() -> None:
    assert issubclass(CodecError, InferenceError)
    assert CodecError("x").http_status == 400


# --- StringCodec ----------------------------------------------------------------------


def test_string_encode_output_exact() -> None:
    out = StringCodec.encode_output(name="output", payload=["a"], use_bytes=True)
    assert out == ResponseOutput(
        name="output",
        shape=[1, 1],
        datatype="BYTES",
        parameters=Parameters(content_type="str"),
        data=[b"a"],
    )
    out = StringCodec.encode_output(name="output", payload=["a", "é"], use_bytes=False)
    assert out.data.root == ["a", "é"] and out.shape == [2, 1]
    assert out.model_dump_json() == (
        '{"name":"output","shape":[2,1],"datatype":"BYTES",'
        '"parameters":{"content_type":"str"},"data":["a","é"]}'
    )


def test_string_encode_input_and_lone_string() -> None:
    inp = StringCodec.encode_input("prompt", ["hi"])
    assert isinstance(inp, RequestInput)
    assert (inp.shape, inp.data.root, inp.parameters.content_type) == ([1, 1], [b"hi"], "str")
    # a lone str is one element, not a list of characters
    assert StringCodec.encode_output("o", "abc").data.root == [b"abc"]


def test_string_encode_outputs_are_independent() -> None:
    a = StringCodec.encode_output("o", ["x"])
    b = StringCodec.encode_output("o", ["x"])
    assert a.parameters is not b.parameters


@given(texts, st.booleans())
def test_string_round_trip(payload: list[str], use_bytes: bool) -> None:
    out = StringCodec.encode_output("o", payload, use_bytes=use_bytes)
    assert out.shape == [len(payload), 1]
    assert StringCodec.decode_output(out) == payload
    inp = StringCodec.encode_input("i", payload, use_bytes=use_bytes)
    assert StringCodec.decode_input(inp) == payload


@given(texts, st.booleans())
def test_string_round_trip_through_json(payload: list[str], use_bytes: bool) -> None:
    out = _via_json(StringCodec.encode_output("o", payload, use_bytes=use_bytes))
    assert StringCodec.decode_output(out) == payload
    inp = _input_via_json(StringCodec.encode_input("i", payload, use_bytes=use_bytes))
    assert StringCodec.decode_input(inp) == payload


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"hello world", ["hello world"]),
        ("hello world", ["hello world"]),
        (["a", b"b"], ["a", "b"]),
        ([["a"], [b"\xc3\xa9"]], ["a", "é"]),
        ([], []),
    ],
)
def test_string_decode_accepts_str_bytes_and_lone_values(data: Any, expected: list[str]) -> None:
    assert StringCodec.decode_input(_inp(data)) == expected
    out = ResponseOutput(name="o", shape=[1], datatype="BYTES", data=data)
    assert StringCodec.decode_output(out) == expected


@pytest.mark.parametrize("data", [[b"\xff"], [1], ["a", None]])
def test_string_decode_errors(data: Any) -> None:
    with pytest.raises(InferenceError, match="input 'in'"):
        StringCodec.decode_input(_inp(data))


@pytest.mark.parametrize("payload", [[1], ["\ud800"], [None]])
def test_string_encode_errors(payload: Any) -> None:
    with pytest.raises(InferenceError, match="output 'o'"):
        StringCodec.encode_output("o", payload)


def test_string_request_codec() -> None:
    request = StringRequestCodec.encode_request(["a", "b"])
    assert request.inputs[0].name == "input-1"
    assert StringRequestCodec.decode_request(request) == ["a", "b"]
    response = StringRequestCodec.encode_response("m", ["x"], "v1")
    assert (response.model_name, response.model_version) == ("m", "v1")
    assert response.outputs[0].name == "output-1"
    assert StringRequestCodec.decode_response(response) == ["x"]
    two = InferenceRequest(inputs=[_inp(["a"]), _inp(["b"])])
    with pytest.raises(InferenceError, match="single input"):
        StringRequestCodec.decode_request(two)


# --- Base64Codec ----------------------------------------------------------------------


def test_base64_encode_output_exact() -> None:
    out = Base64Codec.encode_output("foo", [b"Python is fun"])
    assert out == ResponseOutput(
        name="foo",
        shape=[1, 1],
        datatype="BYTES",
        data=[b"UHl0aG9uIGlzIGZ1bg=="],
        parameters=Parameters(content_type="base64"),
    )
    assert Base64Codec.encode_output("foo", [b"x"], use_bytes=False).data.root == ["eA=="]


@given(st.lists(st.binary(), max_size=8), st.booleans())
def test_base64_round_trip(payload: list[bytes], use_bytes: bool) -> None:
    out = Base64Codec.encode_output("o", payload, use_bytes=use_bytes)
    assert Base64Codec.decode_output(out) == payload
    assert Base64Codec.decode_output(_via_json(out)) == payload
    inp = _input_via_json(Base64Codec.encode_input("i", payload, use_bytes=use_bytes))
    assert Base64Codec.decode_input(inp) == payload


def test_base64_decode_lone_value_and_raw_fallback() -> None:
    assert Base64Codec.decode_input(_inp("UHl0aG9uIGlzIGZ1bg==")) == [b"Python is fun"]
    # not base64: taken as the raw bytes, as MLServer does
    assert Base64Codec.decode_input(_inp(b"Python is fun")) == [b"Python is fun"]
    assert Base64Codec.decode_input(_inp(["Python is fun"])) == [b"Python is fun"]


def test_base64_errors() -> None:
    with pytest.raises(InferenceError, match="input 'in'"):
        Base64Codec.decode_input(_inp([1]))
    with pytest.raises(InferenceError, match="output 'o'"):
        Base64Codec.encode_output("o", [3.5])


# --- DatetimeCodec --------------------------------------------------------------------


# Fixed offsets: ISO text keeps the offset, not the zone (whose gaps and folds differ).
_offsets = st.integers(-23 * 60, 23 * 60).map(lambda m: dt.timezone(dt.timedelta(minutes=m)))


@given(st.lists(st.datetimes(timezones=st.none() | _offsets), max_size=5), st.booleans())
def test_datetime_round_trip(payload: list[dt.datetime], use_bytes: bool) -> None:
    out = _via_json(DatetimeCodec.encode_output("o", payload, use_bytes=use_bytes))
    assert DatetimeCodec.decode_output(out) == payload


def test_datetime_errors() -> None:
    with pytest.raises(InferenceError, match="input 'in'"):
        DatetimeCodec.decode_input(_inp(["yesterday"]))


# --- NumpyCodec -----------------------------------------------------------------------


@pytest.mark.parametrize("datatype, dtype", DATATYPES.items())
def test_dtype_mapping_both_ways(datatype: str, dtype: Any) -> None:
    assert to_dtype(datatype, None) == np.dtype(dtype)
    assert to_datatype(np.dtype(dtype)) == datatype
    assert to_dtype(_inp([], datatype)) == np.dtype(dtype)


@pytest.mark.parametrize("dtype", [object, bytes, str, "S3", "U7"])
def test_bytes_dtypes_are_bytes(dtype: Any) -> None:
    assert to_datatype(np.dtype(dtype)) == "BYTES"
    assert to_dtype("BYTES", [b"a"]) == np.dtype(object)


def test_dtype_aliases_and_unknowns() -> None:
    assert to_datatype(np.byte) == "INT8"
    assert to_datatype(np.dtype(">f4")) == "FP32"
    with pytest.raises(InferenceError):
        to_datatype(np.complex64)
    with pytest.raises(InferenceError):
        to_dtype("FP8")


def test_numpy_encode_exact() -> None:
    arr = np.array([[1, 2], [3, 4]], dtype=np.int32)
    out = NumpyCodec.encode_output("out", arr)
    assert out == ResponseOutput(
        name="out",
        shape=[2, 2],
        datatype="INT32",
        data=[1, 2, 3, 4],
        parameters=Parameters(content_type="np"),
    )
    assert NumpyCodec.encode_output("o", np.array(2.5)).shape == []
    assert NumpyCodec.encode_output("o", np.array(["é", "b"])).data.root == [b"\xc3\xa9", b"b"]
    assert NumpyCodec.encode_output("o", np.array([b"x"], dtype=object)).data.root == [b"x"]


def _check_same(decoded: np.ndarray, expected: np.ndarray) -> None:
    assert decoded.dtype == expected.dtype
    assert decoded.shape == expected.shape
    np.testing.assert_array_equal(decoded, expected)


@pytest.mark.parametrize("datatype, dtype", DATATYPES.items())
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_numpy_round_trip(datatype: str, dtype: Any, data: st.DataObject) -> None:
    arr = data.draw(hnp.arrays(dtype, SHAPES))
    out = NumpyCodec.encode_output("o", arr)
    assert (out.datatype, out.shape) == (datatype, list(arr.shape))
    _check_same(NumpyCodec.decode_output(out), arr)
    _check_same(NumpyCodec.decode_input(NumpyCodec.encode_input("i", arr)), arr)


@pytest.mark.parametrize("datatype, dtype", DATATYPES.items())
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_numpy_round_trip_through_json(datatype: str, dtype: Any, data: st.DataObject) -> None:
    # JSON has no infinities (pydantic writes them as null); NaN comes back as NaN.
    elements = hnp.from_dtype(np.dtype(dtype), allow_infinity=False)
    arr = data.draw(hnp.arrays(dtype, SHAPES, elements=elements))
    _check_same(NumpyCodec.decode_output(_via_json(NumpyCodec.encode_output("o", arr))), arr)
    inp = _input_via_json(NumpyCodec.encode_input("i", arr))
    assert inp.parameters.content_type == "np"
    _check_same(NumpyCodec.decode_input(inp), arr)


@settings(deadline=None)
@given(hnp.arrays(object, SHAPES, elements=st.binary(max_size=6)))
def test_numpy_bytes_round_trip(arr: np.ndarray) -> None:
    out = NumpyCodec.encode_output("o", arr)
    assert out.datatype == "BYTES"
    _check_same(NumpyCodec.decode_output(out), arr)


@settings(deadline=None)
@given(hnp.arrays(object, SHAPES, elements=st.text(max_size=5).map(str.encode)))
def test_numpy_bytes_round_trip_through_json(arr: np.ndarray) -> None:
    _check_same(NumpyCodec.decode_output(_via_json(NumpyCodec.encode_output("o", arr))), arr)


@settings(deadline=None)
@given(hnp.arrays(hnp.unicode_string_dtypes(max_len=4) | hnp.byte_string_dtypes(max_len=4), SHAPES))
def test_numpy_str_arrays_decode_as_bytes(arr: np.ndarray) -> None:
    try:
        flat = [e.encode("utf-8") if isinstance(e, str) else e for e in arr.ravel().tolist()]
    except UnicodeEncodeError:  # lone surrogates: not text, cannot be encoded
        with pytest.raises(InferenceError, match="UTF-8"):
            NumpyCodec.encode_output("o", arr)
        return
    expected = np.empty(len(flat), dtype=object)
    expected[:] = flat
    out = NumpyCodec.encode_output("o", arr)
    _check_same(NumpyCodec.decode_output(out), expected.reshape(arr.shape))
    if arr.dtype.kind == "U":  # any bytes can be in an "S" array, JSON carries UTF-8 only
        _check_same(NumpyCodec.decode_output(_via_json(out)), expected.reshape(arr.shape))


@pytest.mark.parametrize(
    "inp, expected",
    [
        (_inp([[1, 2], [3, 4]], "INT32", [2, 2]), np.array([[1, 2], [3, 4]], np.int32)),
        (_inp([1, 2, 3, 4], "FP32", [2, 2]), np.array([[1, 2], [3, 4]], np.float32)),
        (_inp(7, "INT64", []), np.array(7, np.int64)),
        (_inp([None, 1.5], "FP64"), np.array([np.nan, 1.5])),
        (_inp([0, 1], "BOOL"), np.array([False, True])),
        (_inp([1, 2**64 - 1], "UINT64"), np.array([1, 2**64 - 1], np.uint64)),
        (_inp([], "FP16", [0, 3]), np.zeros((0, 3), np.float16)),
        (_inp(["a", b"b"], "BYTES", [2, 1]), np.array([[b"a"], [b"b"]], dtype=object)),
    ],
)
def test_numpy_decode(inp: RequestInput, expected: np.ndarray) -> None:
    _check_same(NumpyCodec.decode_input(inp), expected)


@pytest.mark.parametrize(
    "inp, message",
    [
        (_inp(["a", "b"], "FP32"), "non-numeric"),
        (_inp(["1.5"], "FP32"), "non-numeric"),
        (_inp([1.0, None, "x"], "FP64"), "non-numeric"),
        (_inp(["true"], "BOOL"), "non-numeric"),
        (_inp([1, 2, 3], "INT32", [2, 2]), "do not fit shape"),
        (_inp([[1, 2], [3]], "INT32", [3]), "not a regular array"),
        (_inp([300], "UINT8"), "out of range"),
        (_inp([-1], "UINT64"), "out of range"),
        (_inp([None], "INT8"), "INT8"),
        (_inp([float("nan")], "INT32"), "INT32"),
        (_inp([1e10], "FP16"), "FP16"),
        (_inp([1, 2], "BYTES"), "BYTES"),
        (_inp(["a"], "BYTES", [2]), "do not fit shape"),
    ],
)
def test_numpy_decode_errors(inp: RequestInput, message: str) -> None:
    with pytest.raises(InferenceError, match=message) as info:
        NumpyCodec.decode_input(inp)
    assert "input 'in'" in str(info.value)


def test_numpy_encode_errors() -> None:
    with pytest.raises(InferenceError, match="output 'o'"):
        NumpyCodec.encode_output("o", np.array([1j]))
    with pytest.raises(InferenceError, match="output 'o'"):
        NumpyCodec.encode_output("o", np.array([1, "a", None], dtype=object))
    with pytest.raises(InferenceError, match="output 'o'"):
        NumpyCodec.encode_output("o", [1, 2])


def test_numpy_request_codec() -> None:
    arr = np.arange(6, dtype=np.float32).reshape(3, 2)
    request = NumpyRequestCodec.encode_request(arr)
    _check_same(NumpyRequestCodec.decode_request(request), arr)
    response = NumpyRequestCodec.encode_response("m", arr)
    _check_same(NumpyRequestCodec.decode_response(response), arr)
    assert has_decoded(response.outputs[0])


# --- registry -------------------------------------------------------------------------


def test_find_by_content_type() -> None:
    assert find_input_codec("str") is StringCodec
    assert find_input_codec(content_type="np") is NumpyCodec
    assert find_input_codec("base64") is Base64Codec
    assert find_input_codec("datetime") is DatetimeCodec
    assert find_request_codec("np") is NumpyRequestCodec
    assert find_request_codec("str") is StringRequestCodec
    assert find_input_codec("pd") is None and find_request_codec("nope") is None
    assert find_input_codec() is None


def test_find_by_payload() -> None:
    assert find_input_codec(payload=["a"]) is StringCodec
    assert find_input_codec(payload=[b"a"]) is Base64Codec
    assert find_input_codec(payload=np.array([1.0, 2.0])) is NumpyCodec
    assert find_input_codec(payload=[dt.datetime(2020, 1, 1)]) is DatetimeCodec
    assert find_request_codec(payload=np.zeros((2, 2))) is NumpyRequestCodec
    assert find_input_codec(payload={"a": 1}) is None


def test_find_by_type_hint() -> None:
    assert find_input_codec(type_hint=List[str]) is StringCodec  # noqa: UP006
    assert find_input_codec(type_hint=list[str]) is StringCodec
    assert find_input_codec(type_hint=List[bytes]) is Base64Codec  # noqa: UP006
    assert find_input_codec(type_hint=np.ndarray) is NumpyCodec
    assert find_request_codec(type_hint=np.ndarray) is NumpyRequestCodec
    assert find_input_codec(type_hint=dict) is None


def test_register_custom_codecs() -> None:
    @register_input_codec
    class UpperCodec(InputCodec):
        ContentType = "test-upper"

        @classmethod
        def decode_input(cls, request_input: RequestInput) -> list[str]:
            return [s.upper() for s in StringCodec.decode_input(request_input)]

    try:
        assert find_input_codec("test-upper") is UpperCodec
        inp = _inp(["ab"], content_type="test-upper")
        assert decode_request_input(inp) == ["AB"]
        assert get_decoded(inp) == ["AB"]
    finally:
        _codec_registry._input_codecs.pop("test-upper")


def test_deprecated_spellings() -> None:
    assert StringCodec.decode(_inp(["a"])) == ["a"]
    assert StringCodec.encode("o", ["a"]).data.root == [b"a"]
    assert isinstance(NumpyRequestCodec.encode("m", np.array([1])), InferenceResponse)
    assert issubclass(NumpyRequestCodec, RequestCodec)


# --- content types: decoding requests --------------------------------------------------


def _settings(default: str | None = None, inputs: tuple[MetadataTensor, ...] = ()) -> Any:
    params = SimpleNamespace(content_type=default, version="v2") if default else None
    return SimpleNamespace(name="model", inputs=inputs, parameters=params)


def _meta(content_type: str) -> MetadataTensor:
    return MetadataTensor(
        name="in", datatype="BYTES", shape=[-1], parameters=Parameters(content_type=content_type)
    )


def test_input_content_type_wins() -> None:
    request = InferenceRequest(inputs=[_inp(["a"], content_type="str")])
    settings_ = _settings("np", (_meta("base64"),))
    decode_inference_request(request, settings_, {"in": _meta("base64")})
    assert get_decoded(request.inputs[0]) == ["a"]


@pytest.mark.parametrize("via_settings", [True, False])
def test_metadata_content_type_beats_model_default(via_settings: bool) -> None:
    request = InferenceRequest(inputs=[_inp(["YQ=="])])
    if via_settings:
        decode_inference_request(request, _settings("str", (_meta("base64"),)))
    else:
        decode_inference_request(request, _settings("str"), {"in": _meta("base64")})
    assert get_decoded(request.inputs[0]) == [b"a"]


def test_model_default_content_type_applies_to_inputs_and_request() -> None:
    request = InferenceRequest(inputs=[_inp([1, 2], "INT32")])
    decoded = decode_inference_request(request, _settings("np"))
    _check_same(decoded, np.array([1, 2], np.int32))
    _check_same(get_decoded(request.inputs[0]), np.array([1, 2], np.int32))
    assert get_decoded(request) is decoded


def test_request_content_type_beats_model_default() -> None:
    request = InferenceRequest(
        inputs=[_inp(["a"], content_type="str")], parameters=Parameters(content_type="str")
    )
    assert decode_inference_request(request, _settings("np")) == ["a"]


def test_no_content_type_leaves_request_raw() -> None:
    request = InferenceRequest(inputs=[_inp([1], "INT32")])
    assert decode_inference_request(request) is request
    assert not has_decoded(request.inputs[0])
    assert get_decoded(request.inputs[0]) is None
    assert get_decoded_or_raw(request.inputs[0]) is request.inputs[0].data
    assert get_decoded_or_raw(request) is request
    assert decode_request_input(request.inputs[0]) is None


def test_request_level_only_with_model_default_request_codec() -> None:
    # "pd"-like defaults that name no input codec leave inputs alone
    request = InferenceRequest(inputs=[_inp([1], "INT32")])
    assert decode_inference_request(request, _settings("no-such-codec")) is request


def test_decoded_parameter_name() -> None:
    inp = _inp(["a"], **{DecodedParameterName: ["pre-decoded"]})
    assert has_decoded(inp) and get_decoded(inp) == ["pre-decoded"]
    request = InferenceRequest(inputs=[inp], parameters=Parameters(content_type="str"))
    assert decode_inference_request(request) == ["pre-decoded"]


def test_decoded_payload_stays_out_of_json() -> None:
    inp = _inp(["a"], content_type="str")
    decode_request_input(inp)
    assert has_decoded(inp)
    assert DecodedParameterName not in inp.model_dump_json()


# --- content types: encoding responses ------------------------------------------------


def test_encode_response_output() -> None:
    out = encode_response_output(["a"], RequestOutput(name="o"))
    assert out is not None and out.parameters.content_type == "str"
    out = encode_response_output(
        ["YQ=="], RequestOutput(name="o", parameters=Parameters(content_type="str"))
    )
    assert out is not None and out.data.root == [b"YQ=="]
    meta = {
        "o": MetadataTensor(
            name="o", datatype="BYTES", shape=[-1], parameters=Parameters(content_type="base64")
        )
    }
    out = encode_response_output([b"a"], RequestOutput(name="o"), meta)
    assert out is not None and out.data.root == [b"YQ=="]
    assert encode_response_output({"x": 1}, RequestOutput(name="o")) is None


def test_encode_inference_response() -> None:
    response = encode_inference_response(np.array([1.0]), _settings("np"))
    assert response is not None
    assert (response.model_name, response.model_version) == ("model", "v2")
    assert response.outputs[0].name == "output-1"
    assert encode_inference_response(np.array([1.0]), _settings()).model_version is None
    assert encode_inference_response(object(), _settings()) is None


# --- decode_args ----------------------------------------------------------------------


class _Model:
    name = "typed"
    version = "1"

    @decode_args
    async def predict(
        self,
        text: List[str],  # noqa: UP006
        scale: Optional[np.ndarray],  # noqa: UP045
    ) -> np.ndarray:
        assert scale is not None
        return np.array([len(t) for t in text], dtype=np.float64) * scale


async def test_decode_args() -> None:
    request = InferenceRequest(
        inputs=[
            _inp(["ab", "cde"]),
            RequestInput(name="scale", shape=[1], datatype="FP64", data=[2.0]),
        ]
    )
    for name in ("text", "scale"):
        request.inputs[0 if name == "text" else 1].name = name
    response = await _Model().predict(request)
    assert (response.model_name, response.model_version) == ("typed", "1")
    assert response.outputs[0].name == "output-0"
    np.testing.assert_array_equal(NumpyCodec.decode_output(response.outputs[0]), [4.0, 6.0])


async def test_decode_args_unknown_input() -> None:
    request = InferenceRequest(inputs=[_inp(["a"])])
    request.inputs[0].name = "other"
    with pytest.raises(InferenceError, match="'other' was not found"):
        await _Model().predict(request)


def test_decode_args_needs_codecs() -> None:
    with pytest.raises(codecs.CodecNotFound):

        @decode_args
        async def predict(self: Any, x: dict[str, int]) -> np.ndarray:  # pragma: no cover
            return np.zeros(1)


def test_base64_helper_matches_stdlib() -> None:
    out = Base64Codec.encode_output("o", [b"\x00\xff"], use_bytes=False)
    assert base64.b64decode(out.data.root[0]) == b"\x00\xff"


def test_flatten_takes_nested_lists_lone_values_and_arrays() -> None:
    """One flattening for every transport's encoder (gRPC, binary REST, batching, the
    generate dialect): an array a model put in ``data`` is taken row-major too."""
    from streamwise.codecs.lists import flatten

    assert flatten([[1, 2], [3, [4]]]) == [1, 2, 3, 4]
    assert flatten("a") == ["a"]
    assert flatten(np.array([[1.5, 2.5], [3.5, 4.5]], dtype=np.float32)) == [1.5, 2.5, 3.5, 4.5]
