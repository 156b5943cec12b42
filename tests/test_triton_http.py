"""Triton's own HTTP client (``tritonclient.http``) against our server, with its defaults.

Its defaults send inputs as binary data and ask for binary outputs (the binary tensor data
extension, ``protocol/binary.py``); before the extension every call failed with a JSON
parse error. The demo's identity model echoes each input, so what comes back must be
exactly what went, for every datatype, whichever way each tensor travelled.

The server is ``python -m src serve`` in a subprocess (gzip on, the default), shared by
the module; tritonclient.http is a blocking client (geventhttpclient), its aio flavour an
asyncio one (aiohttp): neither belongs inside a trio test.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import ml_dtypes
import numpy as np
import pytest
import tritonclient.http as triton
import tritonclient.http.aio as triton_aio
from tritonclient.utils import InferenceServerException

from tests.support import DEMO
from tests.support.servers import served_in_subprocess

MODEL = "identity"

# every datatype, with values at the edges of each
SAMPLES: dict[str, np.ndarray[Any, Any]] = {
    "BOOL": np.array([[True, False, True], [False, False, True]]),
    "UINT8": np.array([0, 1, 2**8 - 1], dtype=np.uint8),
    "UINT16": np.array([0, 1, 2**16 - 1], dtype=np.uint16),
    "UINT32": np.array([0, 1, 2**32 - 1], dtype=np.uint32),
    "UINT64": np.array([0, 1, 2**64 - 1], dtype=np.uint64),
    "INT8": np.array([-(2**7), 0, 2**7 - 1], dtype=np.int8),
    "INT16": np.array([-(2**15), 0, 2**15 - 1], dtype=np.int16),
    "INT32": np.array([[-(2**31)], [0], [2**31 - 1]], dtype=np.int32),
    "INT64": np.array([-(2**63), 0, 2**63 - 1], dtype=np.int64),
    "FP16": np.array([-65504.0, 0.5, 65504.0, 2.0**-24], dtype=np.float16),
    "FP32": np.array([[-3.4028235e38, 1.5], [1e-45, 3.4028235e38]], dtype=np.float32),
    "FP64": np.array([-1.7976931348623157e308, 5e-324, 0.1], dtype=np.float64),
    "BYTES": np.array([b"hello", b"", "w\u00f6rld".encode(), b"\xff\x00 raw"], dtype=object),
    "BF16": np.array([1.0, -2.5, 3.140625, 1e38], dtype=ml_dtypes.bfloat16),
}
# JSON cannot carry these: BF16 (tritonclient refuses it), BYTES that are not UTF-8
JSON_SAMPLES = {
    **{k: v for k, v in SAMPLES.items() if k != "BF16"},
    "BYTES": np.array([b"hello", b"", "w\u00f6rld".encode()], dtype=object),
}


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("STREAMWISE_GZIP_ENABLED", "true")  # the default, which demo/ turns off
        with served_in_subprocess(DEMO) as (http_port, _):
            yield f"127.0.0.1:{http_port}"


@pytest.fixture
def client(url: str) -> Iterator[triton.InferenceServerClient]:
    c = triton.InferenceServerClient(url)
    try:
        yield c
    finally:
        c.close()


def _input(name: str, array: np.ndarray[Any, Any], binary: bool = True) -> triton.InferInput:
    datatype = "BF16" if array.dtype == ml_dtypes.bfloat16 else None
    if datatype is None:
        datatype = next(k for k, v in SAMPLES.items() if v.dtype == array.dtype)
    inp = triton.InferInput(name, list(array.shape), datatype)
    inp.set_data_from_numpy(array, binary_data=binary)
    return inp


def _same(got: np.ndarray[Any, Any] | None, sent: np.ndarray[Any, Any]) -> None:
    assert got is not None
    if got.dtype == object and got.size and isinstance(got.flat[0], str):
        # BYTES sent as JSON: tritonclient gives the strings as they were in the JSON
        got = np.array([s.encode() for s in got.flat], dtype=object).reshape(got.shape)
    assert got.shape == sent.shape
    assert got.dtype == sent.dtype, (got.dtype, sent.dtype)
    assert np.array_equal(got, sent), (got, sent)


def _was_binary(result: triton.InferResult, name: str) -> bool:
    output = result.get_output(name)
    assert output is not None
    has_size = "binary_data_size" in (output.get("parameters") or {})
    assert has_size != ("data" in output), output  # one or the other
    return has_size


def test_the_server_advertises_the_extension(client: triton.InferenceServerClient) -> None:
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]


@pytest.mark.parametrize("datatype", sorted(SAMPLES))
def test_defaults_round_trip_every_datatype(
    client: triton.InferenceServerClient, datatype: str
) -> None:
    """binary inputs, and no outputs named: tritonclient asks for all outputs as binary"""
    sent = SAMPLES[datatype]
    result = client.infer(MODEL, [_input("x", sent)])
    _same(result.as_numpy("x"), sent)
    assert _was_binary(result, "x")
    assert "binary_data_output" not in (result.get_response().get("parameters") or {})


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_requests_and_responses(
    client: triton.InferenceServerClient, algorithm: str, binary: bool
) -> None:
    """``request_compression_algorithm`` (the body, binary tensors and all, compressed:
    ``protocol/compression.py``) and ``response_compression_algorithm``, as Triton serves them."""
    samples = SAMPLES if binary else JSON_SAMPLES
    sent = {"x": samples["FP32"], "y": samples["INT64"], "z": samples["BYTES"]}
    inputs = [_input(name, array, binary) for name, array in sent.items()]
    result = client.infer(
        MODEL,
        inputs,
        request_compression_algorithm=algorithm,
        response_compression_algorithm=algorithm,
    )
    for name, array in sent.items():
        _same(result.as_numpy(name), array)


@pytest.mark.parametrize("datatype", sorted(JSON_SAMPLES))
def test_json_both_ways_every_datatype(client: triton.InferenceServerClient, datatype: str) -> None:
    sent = JSON_SAMPLES[datatype]
    outputs = [triton.InferRequestedOutput("x", binary_data=False)]
    result = client.infer(MODEL, [_input("x", sent, binary=False)], outputs=outputs)
    _same(result.as_numpy("x"), sent)
    assert not _was_binary(result, "x")


@pytest.mark.parametrize("datatype", sorted(JSON_SAMPLES))
def test_json_inputs_binary_outputs(client: triton.InferenceServerClient, datatype: str) -> None:
    """binary_data=False on the input only: a plain JSON request (no
    Inference-Header-Content-Length) that asks for binary outputs"""
    sent = JSON_SAMPLES[datatype]
    result = client.infer(MODEL, [_input("x", sent, binary=False)])
    _same(result.as_numpy("x"), sent)
    assert _was_binary(result, "x")


def test_mixed_inputs_and_outputs(client: triton.InferenceServerClient) -> None:
    sent = {
        "a": SAMPLES["FP32"],
        "b": JSON_SAMPLES["BYTES"],
        "c": SAMPLES["INT64"],
        "d": SAMPLES["BF16"],
    }
    inputs = [
        _input("a", sent["a"], binary=True),
        _input("b", sent["b"], binary=False),
        _input("c", sent["c"], binary=True),
        _input("d", sent["d"], binary=True),
    ]
    outputs = [
        triton.InferRequestedOutput("a", binary_data=False),
        triton.InferRequestedOutput("b", binary_data=True),
        triton.InferRequestedOutput("c", binary_data=True),
        triton.InferRequestedOutput("d", binary_data=True),
    ]
    result = client.infer(MODEL, inputs, outputs=outputs, model_version="1", request_id="r-1")
    assert result.get_response()["id"] == "r-1"
    for name, array in sent.items():
        _same(result.as_numpy(name), array)
    assert [_was_binary(result, n) for n in "abcd"] == [False, True, True, True]


def test_requested_outputs_are_the_only_ones_sent(client: triton.InferenceServerClient) -> None:
    inputs = [_input("a", SAMPLES["UINT8"]), _input("b", SAMPLES["FP64"])]
    result = client.infer(MODEL, inputs, outputs=[triton.InferRequestedOutput("b")])
    assert [o["name"] for o in result.get_response()["outputs"]] == ["b"]
    _same(result.as_numpy("b"), SAMPLES["FP64"])


def test_empty_tensors(client: triton.InferenceServerClient) -> None:
    sent = {"e": np.zeros((0, 3), dtype=np.float32), "s": np.array([], dtype=object)}
    result = client.infer(MODEL, [_input(n, a) for n, a in sent.items()])
    for name, array in sent.items():
        got = result.as_numpy(name)
        assert got is not None and got.shape == array.shape


def test_large_tensor_gzipped_both_ways(client: triton.InferenceServerClient) -> None:
    """A response compressed for a client that asks: Inference-Header-Content-Length is
    the uncompressed JSON's length, as Triton sends it and tritonclient reads it."""
    sent = np.arange(100_000, dtype=np.float32).reshape(100, 1000)
    result = client.infer(MODEL, [_input("x", sent)], response_compression_algorithm="gzip")
    _same(result.as_numpy("x"), sent)


def test_a_client_mistake_is_a_400_with_its_message(client: triton.InferenceServerClient) -> None:
    inp = triton.InferInput("x", [3], "FP32")
    inp.set_data_from_numpy(np.array([1, 2, 3], dtype=np.float32))
    inp.set_shape([4])  # 4 elements declared, 3 sent
    with pytest.raises(InferenceServerException) as caught:
        client.infer(MODEL, [inp])
    assert caught.value.status() == "400"
    assert "needs 4 FP32 elements" in caught.value.message()
    # and the server goes on serving
    _same(client.infer(MODEL, [_input("x", SAMPLES["FP16"])]).as_numpy("x"), SAMPLES["FP16"])


def test_the_asyncio_client(url: str) -> None:
    async def main() -> None:
        async with triton_aio.InferenceServerClient(url) as client:
            inputs = [_input("x", SAMPLES["BYTES"]), _input("y", SAMPLES["UINT64"])]
            result = await client.infer(MODEL, inputs)
            _same(result.as_numpy("x"), SAMPLES["BYTES"])
            _same(result.as_numpy("y"), SAMPLES["UINT64"])

    asyncio.run(main())
