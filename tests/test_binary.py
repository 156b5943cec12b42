"""The binary tensor data extension (``protocol/binary.py``): malformed bodies over a real
socket, the streaming endpoints, gzip, and round trips for every datatype encoded by
tritonclient's own helpers and numpy, decoded by ours (and back).

tests/test_triton_http.py has tritonclient itself against a server."""

from __future__ import annotations

import gzip
import json
import struct
from typing import Any

import httpx
import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from tritonclient.http import InferInput, InferRequestedOutput, InferResult
from tritonclient.http._utils import _get_inference_request

from streamwise import ServerInfo
from streamwise.errors import InvalidRequest, ModelFailed
from streamwise.protocol import binary
from streamwise.types import InferenceResponse, ResponseOutput
from tests.support import DEMO, StartServer

INFER = "/v2/models/identity/infer"


def post(header: dict[str, Any], blob: bytes = b"", length: int | str | None = None) -> Any:
    head = json.dumps(header).encode()
    return {
        "content": head + blob,
        "headers": {
            "Inference-Header-Content-Length": str(len(head) if length is None else length),
            "Content-Type": "application/octet-stream",
        },
    }


def split(response: httpx.Response) -> tuple[dict[str, Any], bytes]:
    length = int(response.headers["inference-header-content-length"])
    return json.loads(response.content[:length]), response.content[length:]


def fp32(name: str, shape: list[int], size: int, **more: Any) -> dict[str, Any]:
    params = {"binary_data_size": size}
    return {"name": name, "datatype": "FP32", "shape": shape, "parameters": params, **more}


def strings(*items: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(i)) + i for i in items)


# -- malformed bodies over a real socket ------------------------------------------------
FOUR = np.arange(4, dtype="<f4").tobytes()
BYTES_IN = {"name": "s", "datatype": "BYTES", "shape": [2], "parameters": {}}
MALFORMED = {
    "header length over the body": (
        post({"inputs": [fp32("x", [4], 16)]}, FOUR, length=10_000),
        "is larger than the body",
    ),
    "header length not a number": (
        post({"inputs": [fp32("x", [4], 16)]}, FOUR, length="12abc"),
        "must be a byte count",
    ),
    "header cut mid-JSON": (
        post({"inputs": [fp32("x", [4], 16)]}, FOUR, length=20),
        "not valid JSON",
    ),
    "bytes left after the inputs": (
        post({"inputs": [fp32("x", [4], 16)]}, FOUR + b"xx"),
        "2 bytes after the JSON header and the binary inputs",
    ),
    "size past the end": (
        post({"inputs": [fp32("x", [4], 16), fp32("y", [1], 4)]}, FOUR),
        "input 'y': binary_data_size 4 runs past the end of the body (0 bytes",
    ),
    "size not a multiple of the element size": (
        post({"inputs": [fp32("x", [4], 15)]}, FOUR[:15]),
        "binary_data_size 15 is not a multiple of the FP32 element size (4 bytes)",
    ),
    "size not matching the shape": (
        post({"inputs": [fp32("x", [2, 3], 16)]}, FOUR),
        "shape [2, 3] needs 6 FP32 elements (4 bytes each), binary data has 4",
    ),
    "BYTES element past the end": (
        post(
            {"inputs": [{**BYTES_IN, "parameters": {"binary_data_size": 13}}]},
            strings(b"ab") + struct.pack("<I", 9) + b"abc",
        ),
        "BYTES element 1 of 9 bytes runs past the end of its binary data (3 bytes left)",
    ),
    "BYTES length cut short": (
        post(
            {"inputs": [{**BYTES_IN, "parameters": {"binary_data_size": 8}}]},
            strings(b"ab") + b"\1\0",
        ),
        "BYTES element 1's 4-byte length is cut short",
    ),
    "BYTES elements fewer than the shape": (
        post({"inputs": [{**BYTES_IN, "parameters": {"binary_data_size": 6}}]}, strings(b"ab")),
        "shape [2] needs 2 BYTES elements, binary data has 1",
    ),
    "BYTES elements more than the shape": (
        post(
            {"inputs": [{**BYTES_IN, "shape": [1], "parameters": {"binary_data_size": 12}}]},
            strings(b"ab", b"cd"),
        ),
        "shape [1] needs 1 BYTES elements, its 12 bytes of binary data hold more",
    ),
    "binary_data_size and data": (
        post({"inputs": [fp32("x", [4], 16, data=[1, 2, 3, 4])]}, FOUR),
        "input 'x': has both data and binary_data_size",
    ),
    "negative binary_data_size": (
        post({"inputs": [fp32("x", [4], -16)]}, FOUR),
        "binary_data_size must be a non-negative integer, got -16",
    ),
    "binary_data_size not a number": (
        post({"inputs": [fp32("x", [4], "16")]}, FOUR),
        "binary_data_size must be a non-negative integer",
    ),
    "unknown datatype": (
        post({"inputs": [{**fp32("x", [4], 16), "datatype": "FLOAT32"}]}, FOUR),
        "invalid request: inputs.0.datatype",
    ),
    "binary_data_output not a flag": (
        post({"inputs": [fp32("x", [4], 16)], "parameters": {"binary_data_output": "yes"}}, FOUR),
        "parameters.binary_data_output must be true or false",
    ),
    "negative dimension": (
        post({"inputs": [fp32("x", [-4], 16)]}, FOUR),
        "shape [-4] has a negative dimension",
    ),
}


@pytest.fixture
async def demo(start_server: StartServer) -> ServerInfo:
    return await start_server(DEMO, gzip_enabled=True)


async def test_malformed_bodies_get_a_400_and_the_server_goes_on(demo: ServerInfo) -> None:
    good = post({"inputs": [fp32("x", [2, 2], 16)]}, FOUR)
    async with httpx.AsyncClient(base_url=demo.http_url, timeout=30) as client:
        for what, (request, message) in MALFORMED.items():
            response = await client.post(INFER, **request)
            assert response.status_code == 400, (what, response.text)
            assert response.headers["content-type"] == "application/json", what
            error = response.json()["error"]
            assert message in error, (what, error)
            # the same connection serves the next request
            ok = await client.post(INFER, **good)
            assert ok.status_code == 200, (what, ok.text)
            assert "inference-header-content-length" not in ok.headers  # none asked as binary
            assert ok.json()["outputs"][0]["data"] == [0.0, 1.0, 2.0, 3.0], what


async def test_binary_in_binary_out_with_gzip(demo: ServerInfo) -> None:
    values = np.arange(2000, dtype="<i8")
    request = post(
        {"id": "g", "inputs": [{"name": "x", "datatype": "INT64", "shape": [2000],
                                "parameters": {"binary_data_size": values.nbytes, "content_type": "np"}}],
         "parameters": {"binary_data_output": True, "custom": 1}},
        values.tobytes(),
    )  # fmt: skip
    content, headers = request["content"], request["headers"]
    async with httpx.AsyncClient(base_url=demo.http_url, timeout=30) as client:
        response = await client.post(
            INFER, content=content, headers={**headers, "Accept-Encoding": "gzip"}
        )
        raw = await client.post(
            INFER, content=content, headers={**headers, "Accept-Encoding": "identity"}
        )
    assert response.status_code == 200, response.text
    assert response.headers["content-encoding"] == "gzip"  # httpx decompressed it
    assert response.headers["content-type"] == "application/octet-stream"
    assert int(response.headers["content-length"]) < len(response.content)
    header, blob = split(response)
    assert (header, blob) == split(raw)
    (out,) = header["outputs"]
    assert "data" not in out
    # the extension's parameters are not the model's: only the others are echoed
    assert out["parameters"] == {"content_type": "np", "binary_data_size": values.nbytes}
    assert header["parameters"] == {"custom": 1}
    assert header["id"] == "g"
    assert np.array_equal(np.frombuffer(blob, "<i8"), values)


async def test_plain_json_is_untouched(demo: ServerInfo) -> None:
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1.5, 2.5]}]}
    async with httpx.AsyncClient(base_url=demo.http_url, timeout=30) as client:
        response = await client.post(INFER, json=body)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert "inference-header-content-length" not in response.headers
    assert response.json()["outputs"][0]["data"] == [1.5, 2.5]


@pytest.mark.parametrize("action", ["infer_stream", "generate_stream"])
async def test_streams_take_binary_inputs_and_answer_json_events(
    demo: ServerInfo, action: str
) -> None:
    request = post(
        {"inputs": [fp32("x", [4], 16), {**BYTES_IN, "parameters": {"binary_data_size": 12}}],
         "parameters": {"binary_data_output": True}},
        FOUR + strings(b"ab", b"\xc3\xa9"),
    )  # fmt: skip
    async with httpx.AsyncClient(base_url=demo.http_url, timeout=30) as client:
        response = await client.post(f"/v2/models/identity/{action}", **request)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [
        json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:")
    ]
    assert len(events) == 1, response.text
    assert [o["data"] for o in events[0]["outputs"]] == [[0.0, 1.0, 2.0, 3.0], ["ab", "é"]]
    assert "parameters" not in events[0]


async def test_binary_body_over_the_size_limit_is_413(start_server: StartServer) -> None:
    server = await start_server(DEMO, max_request_body_bytes=1000)
    big = np.zeros(1000, dtype="<f4")
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as client:
        response = await client.post(
            INFER, **post({"inputs": [fp32("x", [1000], big.nbytes)]}, big.tobytes())
        )
    assert response.status_code == 413 and "max_request_body_bytes" in response.json()["error"]


# -- round trips: tritonclient's encoding, ours, and back -----------------------------
DTYPES = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BF16": np.dtype(ml_dtypes.bfloat16),
}
shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=5)


@st.composite
def tensors(draw: st.DrawFn) -> tuple[str, np.ndarray[Any, Any]]:
    datatype = draw(st.sampled_from([*DTYPES, "BYTES"]))
    shape = draw(shapes)
    if datatype == "BYTES":
        items = draw(
            st.lists(
                st.binary(max_size=12), min_size=int(np.prod(shape)), max_size=int(np.prod(shape))
            )
        )
        array = np.empty(len(items), dtype=object)
        array[:] = items
        return datatype, array.reshape(shape)
    if datatype == "BF16":  # hypothesis has no bfloat16: any float32 bits, cut to 16
        bits = draw(hnp.arrays(np.uint16, shape))
        return datatype, bits.view(ml_dtypes.bfloat16)
    return datatype, draw(hnp.arrays(DTYPES[datatype], shape))


def _equal(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> bool:
    """Exact: the same values, -0.0 included; a NaN stays a NaN (its payload need not:
    values travel as Python floats, and bfloat16 NaNs are made canonical, as ml_dtypes
    makes them)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.kind == "O":
        return a.tolist() == b.tolist()
    if a.dtype.kind not in "fV" and a.dtype != ml_dtypes.bfloat16:
        return a.tobytes() == b.tobytes()
    with np.errstate(invalid="ignore"):  # signalling NaNs
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
    numbers = ~np.isnan(a64)
    return np.array_equal(a64, b64, equal_nan=True) and np.array_equal(
        np.signbit(a64[numbers]), np.signbit(b64[numbers])
    )


@hsettings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(tensors(), min_size=1, max_size=4), st.data())
def test_round_trip_every_datatype(
    tensors_: list[tuple[str, np.ndarray[Any, Any]]], data: st.DataObject
) -> None:
    inputs = []
    for i, (datatype, array) in enumerate(tensors_):
        inp = InferInput(f"t{i}", list(array.shape), datatype)
        inp.set_data_from_numpy(array, binary_data=True)
        inputs.append(inp)
    body, json_size = _get_inference_request(
        inputs=inputs, request_id="", outputs=None, sequence_id=0, sequence_start=False,
        sequence_end=False, priority=0, timeout=None, custom_parameters=None,
    )  # fmt: skip
    request = binary.decode_request(body, str(json_size))
    choice = binary.output_choice(request)
    assert choice is not None and choice.default
    assert request.parameters is None  # binary_data_output was all there was
    for inp, (datatype, array) in zip(request.inputs, tensors_, strict=True):
        assert inp.parameters is None  # binary_data_size is the transport's
        if datatype == "BYTES":
            assert inp.data.root == array.ravel().tolist()
        elif datatype == "BF16":
            with np.errstate(invalid="ignore"):  # signalling NaNs
                sent = array.astype(np.float32).ravel()
            assert _equal(np.array(inp.data.root, np.float32), sent)
        else:
            assert _equal(np.array(inp.data.root, DTYPES[datatype]), array.ravel())

    # back: an identity's answer, some outputs as binary, the others as JSON
    outputs = [
        ResponseOutput(name=i.name, shape=i.shape, datatype=i.datatype, data=i.data)
        for i in request.inputs
    ]
    as_binary = [
        data.draw(st.booleans()) or dt == "BF16" or (dt.startswith("FP") and not np.isfinite(a.astype(np.float64)).all())
        or (dt == "BYTES" and not _utf8(a))
        for dt, a in tensors_
    ]  # fmt: skip
    response = InferenceResponse(model_name="m", outputs=outputs)
    wanted = {o.name: b for o, b in zip(outputs, as_binary, strict=True)}
    encoded = binary.encode_response(response, binary.OutputChoice(False, wanted))
    if encoded is None:
        assert not any(as_binary)
        answer, length = response.model_dump_json().encode(), None
    else:
        answer, length = encoded
    result = InferResult.from_response_body(answer, header_length=length)
    for (datatype, array), name, was_binary in zip(tensors_, wanted, as_binary, strict=True):
        got = result.as_numpy(name)
        assert got is not None
        if datatype == "BYTES" and not was_binary:  # JSON strings, as tritonclient gives them
            got = np.array([s.encode() for s in got.ravel()] or [], dtype=object).reshape(got.shape)
        assert _equal(got, array), (datatype, got, array)
        output = result.get_output(name)
        assert ("binary_data_size" in (output.get("parameters") or {})) == was_binary


def _utf8(array: np.ndarray[Any, Any]) -> bool:
    try:
        for item in array.ravel():
            item.decode()
    except UnicodeDecodeError:
        return False
    return True


def test_requested_outputs_choose_binary_one_by_one() -> None:
    out_b = InferRequestedOutput("b", binary_data=True)
    out_c = InferRequestedOutput("c", binary_data=False)
    inp = InferInput("a", [1], "INT8")
    inp.set_data_from_numpy(np.array([1], np.int8), binary_data=False)
    body, size = _get_inference_request(
        inputs=[inp], request_id="", outputs=[out_b, out_c], sequence_id=0, sequence_start=False,
        sequence_end=False, priority=0, timeout=None, custom_parameters=None,
    )  # fmt: skip
    assert size is None  # no binary input: a plain JSON request
    request = binary.decode_request(body, str(len(body)))
    choice = binary.output_choice(request)
    assert choice is not None
    assert (choice.binary("a"), choice.binary("b"), choice.binary("c")) == (False, True, False)
    none_asked = binary.decode_request(body.replace(b"true", b"false"), str(len(body) + 1))
    assert binary.output_choice(none_asked) is None


@pytest.mark.parametrize(
    ("datatype", "data", "message"),
    [
        ("INT8", [300], "cannot be sent as INT8"),
        ("FP32", [1.0, 2.0], "shape [3] needs 3 elements, data has 2"),
        ("BYTES", [1, 2, 3], "BYTES data cannot be sent"),
        ("UINT8", ["a", "b", "c"], "cannot be sent as UINT8"),
    ],
)
def test_model_output_that_does_not_fit_is_a_model_failure(
    datatype: str, data: list[Any], message: str
) -> None:
    output = ResponseOutput(name="y", shape=[3], datatype=datatype, data=data)
    with pytest.raises(ModelFailed, match="output 'y'") as caught:
        binary.tensor_to_bytes(output)
    assert message in str(caught.value)


def test_bf16_rounds_to_nearest_even_like_ml_dtypes() -> None:
    values = np.array(
        [1.0, 1.00390625, 1.01171875, 3.4e38, -0.0, np.inf, np.nan, 1e-40], np.float32
    )
    output = ResponseOutput(name="y", shape=[values.size], datatype="BF16", data=values.tolist())
    ours = np.frombuffer(binary.tensor_to_bytes(output), ml_dtypes.bfloat16)
    theirs = values.astype(ml_dtypes.bfloat16)
    assert np.array_equal(ours, theirs, equal_nan=True)
    assert np.signbit(ours[4]) and np.isnan(ours[6])


def test_nested_and_lone_output_data() -> None:
    nested = ResponseOutput(name="y", shape=[2, 2], datatype="INT16", data=[[1, 2], [3, -4]])
    assert np.frombuffer(binary.tensor_to_bytes(nested), "<i2").tolist() == [1, 2, 3, -4]
    lone = ResponseOutput(name="y", shape=[1], datatype="BYTES", data="hé")
    assert binary.tensor_to_bytes(lone) == strings("hé".encode())


def test_an_empty_binary_input_is_valid() -> None:
    header = {"inputs": [fp32("x", [0, 3], 0)]}
    request = binary.decode_request(*_encode(header))
    assert request.inputs[0].data.root == []


def _encode(header: dict[str, Any], blob: bytes = b"") -> tuple[bytes, str]:
    head = json.dumps(header).encode()
    return head + blob, str(len(head))


def test_errors_are_invalid_requests() -> None:
    for what, (request, message) in MALFORMED.items():
        if what in ("unknown datatype", "binary_data_output not a flag", "negative dimension"):
            continue  # pydantic's, output_choice's and validation's: over the socket above
        length = request["headers"]["Inference-Header-Content-Length"]
        with pytest.raises(InvalidRequest, match=None) as caught:
            binary.decode_request(request["content"], length)
        assert message in str(caught.value), what


def test_gzip_decompresses_to_the_uncompressed_layout() -> None:
    """What tritonclient does with a gzipped binary answer (decompress, then split at
    Inference-Header-Content-Length), on bytes the way our gzip middleware makes them."""
    response = InferenceResponse(
        model_name="m",
        outputs=[ResponseOutput(name="y", shape=[3], datatype="UINT32", data=[1, 2, 3])],
    )
    encoded = binary.encode_response(response, binary.OutputChoice(True, {}))
    assert encoded is not None
    body, length = encoded
    result = InferResult.from_response_body(
        gzip.compress(body), header_length=length, content_encoding="gzip"
    )
    assert result.as_numpy("y").tolist() == [1, 2, 3]
