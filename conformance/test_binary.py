"""The binary tensor data extension (Triton, KServe): tensors as raw little-endian bytes
after the JSON header. Checked only on servers that advertise ``binary_tensor_data``
in their server metadata; skipped elsewhere."""

from __future__ import annotations

import json
import struct
from typing import Any

import httpx
import numpy as np
import pytest

from .wire import describe

INFER = "/v2/models/identity/infer"


@pytest.fixture(autouse=True)
def _advertised(server_metadata: dict[str, Any], need) -> None:
    if "binary_tensor_data" not in (server_metadata.get("extensions") or []):
        pytest.skip("the server does not advertise binary_tensor_data")
    need("identity")


def post_binary(http: httpx.Client, header: dict[str, Any], blob: bytes) -> httpx.Response:
    head = json.dumps(header).encode()
    return http.post(
        INFER,
        content=head + blob,
        headers={
            "Inference-Header-Content-Length": str(len(head)),
            "Content-Type": "application/octet-stream",
        },
    )


def split_response(response: httpx.Response) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The JSON header and, per output sent as binary, its bytes."""
    assert response.status_code == 200, describe(response)
    length = response.headers.get("inference-header-content-length")
    if length is None:
        return response.json(), {}
    body = response.content
    header = json.loads(body[: int(length)])
    blobs, offset = {}, int(length)
    for out in header["outputs"]:
        size = (out.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            blobs[out["name"]] = body[offset : offset + size]
            offset += size
    assert offset == len(body), f"{len(body) - offset} bytes after the last binary output"
    return header, blobs


def test_binary_input(http: httpx.Client) -> None:
    values = np.array([1.5, -2.0, 3.25], dtype="<f4")
    header = {
        "inputs": [
            {
                "name": "x",
                "datatype": "FP32",
                "shape": [3],
                "parameters": {"binary_data_size": values.nbytes},
            }
        ]
    }
    got, blobs = split_response(post_binary(http, header, values.tobytes()))
    (out,) = got["outputs"]
    data = np.frombuffer(blobs["x"], "<f4") if "x" in blobs else np.array(out["data"], "<f4")
    assert data.tolist() == values.tolist(), out


def test_binary_bytes_input(http: httpx.Client) -> None:
    items = [b"hello", b"", "wörld".encode()]
    blob = b"".join(struct.pack("<I", len(i)) + i for i in items)
    header = {
        "inputs": [
            {
                "name": "x",
                "datatype": "BYTES",
                "shape": [3],
                "parameters": {"binary_data_size": len(blob)},
            }
        ]
    }
    got, blobs = split_response(post_binary(http, header, blob))
    if "x" in blobs:
        assert blobs["x"] == blob
    else:
        assert got["outputs"][0]["data"] == [i.decode() for i in items], got


def test_binary_output_on_request(http: httpx.Client) -> None:
    body = {
        "inputs": [{"name": "x", "datatype": "INT32", "shape": [2], "data": [7, -8]}],
        "outputs": [{"name": "x", "parameters": {"binary_data": True}}],
    }
    got, blobs = split_response(http.post(INFER, json=body))
    assert "x" in blobs, f"binary output asked for, JSON returned: {got}"
    assert np.frombuffer(blobs["x"], "<i4").tolist() == [7, -8]
