"""Client mistakes and model failures over REST: a clear status, a V2 error body
``{"error": "..."}``, and a server that keeps serving."""

from __future__ import annotations

import httpx
import pytest

from .wire import client_error, describe, error_body, flatten, request, tensor, versions_unsupported

INFER = "/v2/models/identity/infer"


@pytest.fixture(autouse=True)
def _still_live_afterwards(need, live) -> object:
    need("identity")
    yield
    live()


def test_unknown_model(http: httpx.Client, deviation) -> None:
    response = http.post(
        "/v2/models/no-such-model/infer", json=request(tensor("x", "INT32", [1], [1]))
    )
    client_error(response, deviation, "infer on an unknown model", preferred=404)


def test_unknown_version(http: httpx.Client, deviation) -> None:
    response = http.post(
        "/v2/models/identity/versions/no-such-version/infer",
        json=request(tensor("x", "INT32", [1], [1])),
    )
    if versions_unsupported(response, deviation):
        return
    client_error(response, deviation, "infer on an unknown version", preferred=404)


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"", b"[1, 2, 3]", b'"a string"', b'{"inputs": "nope"}', b"{}"],
    ids=["malformed", "empty", "array", "string", "inputs-not-a-list", "no-inputs"],
)
def test_malformed_body(http: httpx.Client, deviation, body: bytes) -> None:
    response = http.post(INFER, content=body, headers={"content-type": "application/json"})
    client_error(response, deviation, f"body {body[:20]!r}")


@pytest.mark.parametrize(
    "bad",
    [
        tensor("x", "FLOAT99", [1], [1.0]),
        {"name": "x", "shape": [1], "data": [1]},
        {"datatype": "INT32", "shape": [1], "data": [1]},
        {"name": "x", "datatype": "INT32", "data": [1]},
        tensor("x", "INT32", [-1], [1]),
    ],
    ids=["unknown-datatype", "no-datatype", "no-name", "no-shape", "negative-shape"],
)
def test_malformed_tensor(http: httpx.Client, deviation, bad: dict[str, object]) -> None:
    client_error(http.post(INFER, json=request(bad)), deviation, f"tensor {bad}")


@pytest.mark.parametrize(
    "bad",
    [
        tensor("x", "INT32", [2, 2], [1, 2, 3]),
        tensor("x", "INT32", [2], [1, 2, 3]),
        tensor("x", "INT32", [2, 2], [[1, 2], [3]]),
    ],
    ids=["too-few", "too-many", "ragged"],
)
def test_data_not_fitting_the_shape(http: httpx.Client, deviation, bad: dict[str, object]) -> None:
    """A server that answers 200 here hands the model a tensor that is not what the
    client described: data is lost or invented somewhere."""
    client_error(http.post(INFER, json=request(bad)), deviation, f"data not fitting {bad}")


@pytest.mark.parametrize(
    "bad",
    [
        tensor("x", "FP32", [1], ["abc"]),
        tensor("x", "BOOL", [1], ["yes"]),
        tensor("x", "INT32", [1], [1.5]),
    ],
    ids=["string-in-fp32", "string-in-bool", "float-in-int32"],
)
def test_data_of_the_wrong_type(http: httpx.Client, deviation, bad: dict[str, object]) -> None:
    client_error(http.post(INFER, json=request(bad)), deviation, f"wrong data type {bad}")


@pytest.mark.parametrize(("datatype", "value"), [("INT8", 300), ("UINT8", -1), ("UINT16", 70000)])
def test_value_out_of_range(http: httpx.Client, deviation, datatype: str, value: int) -> None:
    """Refused, or passed through unchanged (a deviation); never silently wrapped."""
    response = http.post(INFER, json=request(tensor("x", datatype, [1], [value])))
    if response.status_code == 200:
        data = flatten(response.json()["outputs"][0]["data"])
        assert data == [value], f"{datatype} {value} came back as {data}: the value was changed"
        deviation(f"{datatype} value {value} out of range accepted unchanged")
        return
    client_error(response, deviation, f"{datatype} value {value}")


def test_duplicate_input_names(http: httpx.Client, deviation) -> None:
    body = request(tensor("x", "INT32", [1], [1]), tensor("x", "INT32", [1], [2]))
    response = http.post(INFER, json=body)
    if response.status_code == 200:
        deviation("two inputs of the same name were accepted")
        return
    client_error(response, deviation, "duplicate input names")


def test_declared_input_of_the_wrong_datatype(http: httpx.Client, need, deviation) -> None:
    """slow-stream declares `n` as INT64; a BYTES `n` contradicts the model's metadata."""
    need("slow-stream")
    body = request(tensor("n", "BYTES", [1], ["three"]))
    response = http.post("/v2/models/slow-stream/infer", json=body)
    if response.status_code == 200:
        deviation("an input contradicting the model's metadata was accepted")
        return
    client_error(response, deviation, "declared input of the wrong datatype")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", INFER),
        ("PUT", INFER),
        ("DELETE", "/v2/models/identity"),
        ("POST", "/v2/models/identity/ready"),
    ],
)
def test_wrong_method(http: httpx.Client, deviation, method: str, path: str) -> None:
    response = http.request(method, path)
    assert 400 <= response.status_code < 500, f"{method} {path}: {describe(response)}"
    if response.status_code != 405:
        deviation(f"{method} {path}: {response.status_code}, not 405")


def test_unknown_path(http: httpx.Client) -> None:
    response = http.get("/v2/no/such/endpoint")
    assert response.status_code == 404, describe(response)


def test_model_failure_in_infer(http: httpx.Client, need, deviation) -> None:
    """fail-mid-stream's unary predict raises: a 5xx with a V2 error body."""
    need("fail-mid-stream")
    response = http.post("/v2/models/fail-mid-stream/infer", json=request())
    assert 500 <= response.status_code < 600, describe(response)
    assert error_body(response), f"no {{'error': ...}} body: {describe(response)}"
    if response.status_code != 500:
        deviation(f"model failure answered {response.status_code}, not 500")
