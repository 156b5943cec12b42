"""Triton's model configuration extension: ``GET /v2/models/NAME/config`` and gRPC
``ModelConfig``. Optional: a server that answers 404 for a model it serves (or
UNIMPLEMENTED) does not have it, and the checks are skipped.

What is checked is what a client relies on: the configuration is the model's (its name),
its tensors are those of the model's metadata with Triton's ``TYPE_*`` names of their
datatypes and their dims, and a model that streams (``token-streamer``) says it is
decoupled."""

from __future__ import annotations

from typing import Any

import grpc
import httpx
import pytest

from .conftest import MODELS
from .grpc_client import Client, code_of
from .grpc_client import describe as describe_grpc
from .wire import describe, error_body

TYPES = {
    "BOOL": "TYPE_BOOL", "UINT8": "TYPE_UINT8", "UINT16": "TYPE_UINT16",
    "UINT32": "TYPE_UINT32", "UINT64": "TYPE_UINT64", "INT8": "TYPE_INT8",
    "INT16": "TYPE_INT16", "INT32": "TYPE_INT32", "INT64": "TYPE_INT64", "FP16": "TYPE_FP16",
    "FP32": "TYPE_FP32", "FP64": "TYPE_FP64", "BYTES": "TYPE_STRING", "BF16": "TYPE_BF16",
}  # fmt: skip


def _config(http: httpx.Client, model: str) -> dict[str, Any]:
    response = http.get(f"/v2/models/{model}/config")
    if response.status_code == 404 and http.get(f"/v2/models/{model}").status_code == 200:
        pytest.skip("no model configuration endpoint (404 for a model the server serves)")
    assert response.status_code == 200, describe(response)
    body = response.json()
    assert isinstance(body, dict), describe(response)
    return body


def _signature(tensors: list[dict[str, Any]], batched: bool) -> list[tuple[str, str, list[int]]]:
    """(name, TYPE_*, dims) of metadata tensors, the batch dimension left out if batched."""
    return [
        (t["name"], TYPES[t["datatype"]], list(t["shape"][1:] if batched else t["shape"]))
        for t in tensors
    ]


@pytest.mark.parametrize("model", MODELS)
def test_config_matches_metadata(http: httpx.Client, need, model: str) -> None:
    need(model)
    config = _config(http, model)
    metadata = http.get(f"/v2/models/{model}").json()
    assert config.get("name") == model, config
    batched = int(config.get("max_batch_size") or 0) > 0
    for key, kind in (("inputs", "input"), ("outputs", "output")):
        declared = metadata.get(key) or []
        if not declared:
            continue  # a model without a declared signature: nothing to compare
        got = [(t.get("name"), t.get("data_type"), t.get("dims")) for t in config.get(kind, [])]
        assert got == _signature(declared, batched), f"{kind}: {got} for metadata {declared}"


def test_streaming_model_is_decoupled(http: httpx.Client, need) -> None:
    need("token-streamer")
    config = _config(http, "token-streamer")
    policy = config.get("model_transaction_policy") or {}
    assert policy.get("decoupled") is True, f"token-streamer streams, its config says {config}"


def test_unknown_model_config(http: httpx.Client, need, deviation) -> None:
    need("identity")
    _config(http, "identity")  # skips without the extension
    response = http.get("/v2/models/no-such-model-anywhere/config")
    assert 400 <= response.status_code < 500, describe(response)
    assert error_body(response), f"no {{'error': ...}} body: {describe(response)}"
    if response.status_code != 404:
        deviation(f"config of an unknown model answered {response.status_code}, not 404")


@pytest.mark.grpc
def test_grpc_config_matches_rest(http: httpx.Client, grpc_client: Client, need) -> None:
    need("token-streamer")
    rest = _config(http, "token-streamer")
    if not hasattr(grpc_client, "ModelConfig"):
        pytest.skip("the protos (--proto-dir) have no ModelConfig")
    pb = grpc_client.pb
    try:
        reply = grpc_client.ModelConfig(pb.ModelConfigRequest(name="token-streamer"), timeout=10)
    except grpc.RpcError as error:
        if code_of(error) == grpc.StatusCode.UNIMPLEMENTED:
            pytest.skip("no gRPC ModelConfig")
        raise AssertionError(f"ModelConfig: {describe_grpc(error)}") from None
    config = reply.config
    assert config.name == rest["name"]
    assert [(t.name, pb.DataType.Name(t.data_type), list(t.dims)) for t in config.input] == [
        (t["name"], t["data_type"], t["dims"]) for t in rest.get("input", [])
    ]
    assert config.model_transaction_policy.decoupled is True
    try:
        grpc_client.ModelConfig(pb.ModelConfigRequest(name="no-such-model-anywhere"), timeout=10)
    except grpc.RpcError as error:
        assert code_of(error) == grpc.StatusCode.NOT_FOUND, describe_grpc(error)
    else:
        raise AssertionError("ModelConfig of an unknown model: OK")
