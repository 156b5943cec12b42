"""Triton's gRPC stream (opt in: ``--grpc-stream-wrapper triton``): ``ModelStreamInfer``
answering ``ModelStreamInferResponse`` messages, as ``tritonclient.grpc``'s
``start_stream`` reads them. Each request is its own inference: its responses carry its
id, a request that fails gets its ``error_message`` in the stream, and the stream goes on
with the next request and ends OK."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from .grpc_client import Client, code_of, output_values

pytestmark = [pytest.mark.grpc, pytest.mark.streaming, pytest.mark.usefixtures("triton_stream")]


def _tokens(client: Client, n: int, id: str) -> Any:
    request = client.pb.ModelInferRequest(model_name="token-streamer", id=id)
    request.inputs.add(name="n", datatype="INT64", shape=[1]).contents.int64_contents.append(n)
    return request


def _stream(client: Client, requests: list[Any]) -> tuple[list[Any], grpc.StatusCode]:
    if not hasattr(client, "TritonModelStreamInfer"):
        pytest.skip("the protos (--proto-dir) have no ModelStreamInferResponse")
    call = client.TritonModelStreamInfer(iter(requests), timeout=30)
    replies = []
    try:
        for reply in call:
            replies.append(reply)
    except grpc.RpcError as error:
        return replies, code_of(error)
    return replies, grpc.StatusCode.OK


def test_requests_answered_in_one_stream(grpc_client: Client, need) -> None:
    need("token-streamer")
    replies, status = _stream(
        grpc_client, [_tokens(grpc_client, 3, "a"), _tokens(grpc_client, 2, "b")]
    )
    assert status == grpc.StatusCode.OK
    assert all(not r.error_message for r in replies), [r.error_message for r in replies]
    by_id: dict[str, list[str]] = {}
    for r in replies:
        if r.infer_response.outputs:  # an empty one may mark a request complete
            by_id.setdefault(r.infer_response.id, []).append(
                output_values(r.infer_response, 0)[0].decode()
            )
    assert by_id == {"a": ["token-0", "token-1", "token-2"], "b": ["token-0", "token-1"]}


def test_a_failed_request_is_an_error_message_and_the_stream_goes_on(
    grpc_client: Client, need
) -> None:
    """A model failing after its tokens (``fail-mid-stream``), a request for a model
    nobody serves, then a good one."""
    need("token-streamer", "fail-mid-stream")
    pb = grpc_client.pb
    failing = pb.ModelInferRequest(model_name="fail-mid-stream", id="bad")
    unknown = pb.ModelInferRequest(model_name="no-such-model-anywhere", id="gone")
    replies, status = _stream(grpc_client, [failing, unknown, _tokens(grpc_client, 2, "good")])
    assert status == grpc.StatusCode.OK, f"the stream ended {status.name}"
    errors = {r.infer_response.id: r.error_message for r in replies if r.error_message}
    assert set(errors) == {"bad", "gone"}, errors
    assert all(message.strip() for message in errors.values()), errors
    good = [r for r in replies if r.infer_response.id == "good" and r.infer_response.outputs]
    assert [output_values(r.infer_response, 0)[0] for r in good] == [b"token-0", b"token-1"]
