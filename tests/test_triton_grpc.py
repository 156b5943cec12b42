"""Triton's clients against streamwise: ``tritonclient.grpc`` (unary infer, metadata,
``get_model_config``, and ``start_stream`` / ``async_stream_infer`` with
``grpc_stream_wrapper: "triton"``), the stream's wire shape, and the model configuration
over REST (httpx and ``tritonclient.http``).

tritonclient.grpc runs in a process of its own (tests/support/triton_grpc_client.py: its
protobuf stubs and the ones tests/support/grpc_stubs.py compiles cannot share a process);
the server runs in this one, so that the test models' ``probe`` records are readable here.
"""

from __future__ import annotations

import json
import sys
import uuid
from typing import Any

import grpc
import httpx
import pytest
import trio
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from streamwise import ServerInfo
from tests.support import DEMO, ROOT, TEST_MODELS, StartServer, probe
from tests.support.grpc_stubs import load_stubs

pb2, _ = load_stubs()
STREAM = "/inference.GRPCInferenceService/ModelStreamInfer"


async def triton(info: ServerInfo, *args: str) -> Any:
    """One scenario of tests/support/triton_grpc_client.py against ``info``: its JSON."""
    done = await trio.run_process(
        [sys.executable, "-m", "tests.support.triton_grpc_client",
         f"127.0.0.1:{info.grpc_port}", *args],
        cwd=ROOT, capture_stdout=True, capture_stderr=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)


@pytest.fixture
async def triton_demo(start_server: StartServer) -> ServerInfo:
    return await start_server(DEMO, grpc_stream_wrapper="triton")


# -- tritonclient.grpc --
async def test_unary_infer_and_metadata(triton_demo: ServerInfo) -> None:
    assert await triton(triton_demo, "infer") == {"id": "unary-1", "x": [[1.0, 2.0], [3.0, 4.0]]}
    meta = await triton(triton_demo, "metadata", "token-streamer")
    assert meta["json"] == meta["message"]
    assert meta["json"]["name"] == "token-streamer"
    assert [(t["name"], t["datatype"]) for t in meta["json"]["inputs"]] == [
        ("n", "INT64"),
        ("delay_s", "FP64"),
    ]


async def test_get_model_config(triton_demo: ServerInfo) -> None:
    config = await triton(triton_demo, "config", "token-streamer")
    as_json, message = config["json"]["config"], config["message"]
    assert as_json["name"] == message["name"] == "token-streamer"
    assert as_json["platform"] == "streamwise"
    assert message["max_batch_size"] == 0
    assert [(t["name"], t["data_type"], t["dims"], t["optional"]) for t in message["input"]] == [
        ("n", "TYPE_INT64", ["1"], False),  # protobuf's JSON: int64 as strings
        ("delay_s", "TYPE_FP64", ["1"], True),
    ]
    assert [(t["name"], t["data_type"], t["dims"]) for t in message["output"]] == [
        ("token", "TYPE_STRING", ["1", "1"])
    ]
    assert as_json["model_transaction_policy"] == {"decoupled": True}


async def test_get_model_config_of_an_unknown_model_is_not_found(
    triton_demo: ServerInfo,
) -> None:
    assert await triton(triton_demo, "config-missing", "nope") == {
        "status": "StatusCode.NOT_FOUND",
        "message": "model 'nope' not found",
    }


async def test_stream_tokens_in_order_a_refused_request_and_the_next_one(
    triton_demo: ServerInfo,
) -> None:
    events = await triton(triton_demo, "stream")

    def token(rid: str, i: int) -> dict[str, Any]:
        return {"id": rid, "model": "token-streamer", "token": f"token-{i}", "final": False}

    assert events == [
        token("first", 0),
        token("first", 1),
        token("first", 2),
        {"error": "input 'n' must be a count of tokens, got -1"},
        token("second", 0),
        token("second", 1),
        # asked for with enable_empty_final_response: the request is complete
        {"id": "second", "model": "token-streamer", "token": None, "final": True},
    ]
    assert triton_demo.dataplane.in_flight == 0


@pytest.mark.parametrize("model", ["slow-stream", "slow-stream-aio"])
async def test_stop_stream_cancelling_requests_cancels_the_model(
    start_server: StartServer, model: str
) -> None:
    info = await start_server(TEST_MODELS, grpc_stream_wrapper="triton")
    rid = str(uuid.uuid4())
    seen = await triton(info, "cancel", model, rid)
    assert [e["id"] for e in seen] == [rid, rid]
    with trio.fail_after(10):  # the model's next step is a minute away
        while rid not in probe.finally_at:  # noqa: ASYNC110 - the model writes a dict
            await trio.sleep(0.01)
    assert probe.cancelled[rid]
    with trio.fail_after(10):
        while info.dataplane.in_flight:  # noqa: ASYNC110
            await trio.sleep(0.01)


# -- the wire shape, with stubs compiled from proto/ --
def _request(model: str, rid: str, **params: Any) -> Any:
    request = pb2.ModelInferRequest(model_name=model, id=rid)
    tensor = request.inputs.add(name="p", datatype="BYTES", shape=[1])
    tensor.contents.bytes_contents.append(b"x")
    for key, value in params.items():
        request.parameters[key].bool_param = value
    return request


async def _triton_stream(info: ServerInfo, requests: list[Any]) -> tuple[list[Any], Any]:
    """The responses of one ModelStreamInfer, read as Triton's ModelStreamInferResponse,
    and the status it ended with."""

    def run() -> tuple[list[Any], Any]:
        with grpc.insecure_channel(f"127.0.0.1:{info.grpc_port}") as channel:
            call = channel.stream_stream(
                STREAM,
                request_serializer=pb2.ModelInferRequest.SerializeToString,
                response_deserializer=pb2.ModelStreamInferResponse.FromString,
            )(iter(requests))
            out = []
            try:
                for response in call:
                    out.append(response)
            except grpc.RpcError:
                pass
            return out, call.code()

    return await trio.to_thread.run_sync(run)


def _final(response: Any) -> bool | None:
    params = response.infer_response.parameters
    return params["triton_final_response"].bool_param if "triton_final_response" in params else None


async def test_triton_stream_wire_shape(start_server: StartServer) -> None:
    """A model that does not stream: one response, final. A refused request: its id and
    the message. A model failing after two responses: the two, then its failure with the
    request's id and the final flag. The stream ends OK after all of them."""
    info = await start_server(TEST_MODELS, grpc_stream_wrapper="triton")
    out, status = await _triton_stream(
        info,
        [
            _request("headers", "unary"),
            _request("nope", "missing"),
            _request("fail-mid-stream", "broken", triton_enable_empty_final_response=True),
        ],
    )
    assert [(r.error_message, r.infer_response.id, _final(r)) for r in out] == [
        ("", "unary", True),
        ("model 'nope' not found", "missing", None),
        ("", "broken", False),
        ("", "broken", False),
        ("model failed: ValueError: boom after two tokens", "broken", True),
    ]
    assert out[0].infer_response.outputs[0].name == "n"
    assert [r.infer_response.model_name for r in out[2:]] == ["fail-mid-stream"] * 3
    assert status == grpc.StatusCode.OK


async def test_default_stream_is_mlserver_s(models: ServerInfo) -> None:
    """Without the setting, the same path answers bare ModelInferResponse messages: read as
    Triton's wrapper, the model name lands in error_message (the very symptom the setting
    exists for)."""
    out, status = await _triton_stream(models, [_request("fail-mid-stream", "x")])
    assert [r.error_message for r in out] == ["fail-mid-stream"] * 2
    assert status == grpc.StatusCode.INTERNAL  # MLServer's: a failure ends the stream


# -- REST --
async def test_rest_config(demo: ServerInfo, client: httpx.AsyncClient) -> None:
    r = await client.get(f"{demo.http_url}/v2/models/text-model/versions/v1.2.3/config")
    assert r.status_code == 200
    assert r.json() == {
        "name": "text-model",
        "platform": "mlserver",
        "backend": "streamwise",
        "max_batch_size": 0,
        "input": [{"name": "prompt", "data_type": "TYPE_STRING", "dims": [1], "optional": False}],
        "output": [{"name": "output", "data_type": "TYPE_STRING", "dims": [1]}],
        "model_transaction_policy": {"decoupled": True},
    }
    identity = (await client.get(f"{demo.http_url}/v2/models/identity/config")).json()
    assert (identity["input"], identity["output"]) == ([], [])
    for path in ("nope/config", "text-model/versions/9/config"):
        r = await client.get(f"{demo.http_url}/v2/models/{path}")
        assert r.status_code == 404
        assert "not found" in r.json()["error"]


async def test_rest_config_of_a_model_that_does_not_stream(
    models: ServerInfo, client: httpx.AsyncClient
) -> None:
    r = await client.get(f"{models.http_url}/v2/models/headers/config")
    assert r.json()["model_transaction_policy"] == {"decoupled": False}


async def test_tritonclient_http_config_and_metadata(demo: ServerInfo) -> None:
    def run() -> tuple[Any, Any, str]:
        client = httpclient.InferenceServerClient(f"127.0.0.1:{demo.http_port}")
        try:
            config = client.get_model_config("token-streamer")
            metadata = client.get_model_metadata("token-streamer")
            with pytest.raises(InferenceServerException) as missing:
                client.get_model_config("nope")
            return config, metadata, missing.value.message()
        finally:
            client.close()

    config, metadata, missing = await trio.to_thread.run_sync(run)
    assert config["model_transaction_policy"] == {"decoupled": True}
    assert [(t["name"], t["data_type"], t["dims"]) for t in config["input"]] == [
        ("n", "TYPE_INT64", [1]),
        ("delay_s", "TYPE_FP64", [1]),
    ]
    assert metadata["name"] == "token-streamer"
    assert missing == "model 'nope' not found"
