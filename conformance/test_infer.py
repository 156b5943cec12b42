"""Unary inference over REST: every datatype, data layouts, ids, outputs, parameters."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from .datatypes import DATATYPES, SAMPLES
from .wire import Json, describe, flatten, request, tensor, text_input, versions_unsupported

pytestmark = pytest.mark.usefixtures("_identity")


@pytest.fixture
def _identity(need) -> None:
    need("identity")


def infer(http: httpx.Client, body: Json, path: str = "/v2/models/identity/infer") -> Json:
    response = http.post(path, json=body)
    assert response.status_code == 200, describe(response)
    assert response.headers.get("content-type", "").startswith("application/json")
    return response.json()  # type: ignore[no-any-return]


def output(response: Json, name: str) -> Json:
    found = [o for o in response.get("outputs", []) if o["name"] == name]
    assert len(found) == 1, f"output {name!r}: {response.get('outputs')}"
    return found[0]


def assert_echoed(sent: Json, got: Json) -> None:
    assert got["datatype"] == sent["datatype"], got
    assert got["shape"] == sent["shape"], got
    assert flatten(got["data"]) == flatten(sent["data"]), got


@pytest.mark.parametrize("datatype", DATATYPES)
def test_every_datatype_round_trips(http: httpx.Client, datatype: str) -> None:
    sent = tensor("x", datatype, [len(SAMPLES[datatype])], SAMPLES[datatype])
    if datatype == "BYTES":
        sent["parameters"] = {"content_type": "str"}
    assert_echoed(sent, output(infer(http, request(sent)), "x"))


def test_nested_data_is_accepted(http: httpx.Client) -> None:
    sent = tensor("x", "INT32", [2, 3], [[1, 2, 3], [4, 5, 6]])
    assert_echoed(sent, output(infer(http, request(sent)), "x"))


def test_multidimensional_flat_data(http: httpx.Client) -> None:
    sent = tensor("x", "FP64", [2, 2, 2], [float(i) for i in range(8)])
    assert_echoed(sent, output(infer(http, request(sent)), "x"))


def test_several_inputs(http: httpx.Client) -> None:
    inputs = [
        tensor("a", "INT64", [2], [1, 2]),
        tensor("b", "BOOL", [1], [True]),
        text_input("c", "text"),
    ]
    got = infer(http, request(*inputs))
    for sent in inputs:
        assert_echoed(sent, output(got, sent["name"]))


def test_empty_tensor(http: httpx.Client) -> None:
    sent = tensor("x", "FP32", [0], [])
    assert_echoed(sent, output(infer(http, request(sent)), "x"))


def test_large_tensor(http: httpx.Client) -> None:
    sent = tensor("x", "FP32", [200, 500], [float(i % 1000) for i in range(100_000)])
    assert_echoed(sent, output(infer(http, request(sent)), "x"))


def test_id_is_echoed(http: httpx.Client) -> None:
    got = infer(http, request(tensor("x", "INT32", [1], [1]), id="conformance-id-42"))
    assert got.get("id") == "conformance-id-42", got


def test_response_names_the_model(http: httpx.Client) -> None:
    got = infer(http, request(tensor("x", "INT32", [1], [1])))
    assert got.get("model_name") == "identity", got
    assert got.get("id") is None or (isinstance(got["id"], str) and got["id"]), got
    assert got.get("model_version") is None or isinstance(got["model_version"], str), got


def test_requested_outputs_subset(http: httpx.Client, deviation) -> None:
    body = request(
        tensor("a", "INT32", [1], [1]), tensor("b", "INT32", [1], [2]), outputs=[{"name": "b"}]
    )
    got = infer(http, body)
    assert_echoed(body["inputs"][1], output(got, "b"))
    extra = sorted(o["name"] for o in got["outputs"] if o["name"] != "b")
    if extra:
        deviation(f"outputs not requested were returned too: {extra}")


def test_request_parameters_reach_the_model(http: httpx.Client) -> None:
    parameters: dict[str, Any] = {"flag": True, "count": 7, "label": "x", "ratio": 0.5}
    got = infer(http, request(tensor("x", "INT32", [1], [1]), parameters=parameters))
    echoed = got.get("parameters") or {}
    assert {k: echoed.get(k) for k in parameters} == parameters, got


def test_input_parameters_reach_the_model(http: httpx.Client) -> None:
    sent = tensor("x", "BYTES", [1], ["é"], {"content_type": "str", "custom": "kept"})
    got = output(infer(http, request(sent)), "x")
    assert (got.get("parameters") or {}).get("custom") == "kept", got
    assert flatten(got["data"]) == ["é"], got


def test_versioned_infer(http: httpx.Client, deviation) -> None:
    """identity is version v1 (model-settings `parameters.version`)."""
    response = http.post(
        "/v2/models/identity/versions/v1/infer", json=request(tensor("x", "INT8", [1], [5]))
    )
    if versions_unsupported(response, deviation):
        return
    assert response.status_code == 200, describe(response)
    got = response.json()
    assert flatten(output(got, "x")["data"]) == [5]
    assert got.get("model_version") in (None, "v1"), got


def test_generate_is_infer(http: httpx.Client, deviation) -> None:
    """MLServer's dialect: `generate` takes a V2 request like `infer` (Triton's takes flat
    JSON: a server speaking that dialect records a deviation here)."""
    sent = tensor("x", "INT16", [2], [3, 4])
    response = http.post("/v2/models/identity/generate", json=request(sent))
    if response.status_code in (400, 404, 405, 422):
        deviation(f"generate does not take a V2 request: {describe(response)}")
        return
    assert response.status_code == 200, describe(response)
    assert_echoed(sent, output(response.json(), "x"))
