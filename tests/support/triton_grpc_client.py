"""``tritonclient.grpc`` as its users run it, in a process of its own, printing JSON.

Run by tests/test_triton_grpc.py as ``python -m tests.support.triton_grpc_client URL
SCENARIO [ARG]``. A process of its own because tritonclient's protobuf stubs register
``inference.*`` in protobuf's default descriptor pool, as do the stubs the other tests
compile from proto/ (tests/support/grpc_stubs.py): two in one process collide
(``duplicate symbol 'inference.ServerLiveRequest'``).

Scenarios (each prints one JSON document on stdout):

- ``infer``: a unary ``infer`` on the demo's ``identity`` model;
- ``metadata MODEL``, ``config MODEL``: ``get_model_metadata`` / ``get_model_config``,
  both ``as_json`` and as the protobuf message (turned into a dict here);
- ``config-missing MODEL``: the ``InferenceServerException`` of ``get_model_config``;
- ``stream``: one stream to ``token-streamer``: 3 tokens, then a request the model refuses
  (``n`` = -1), then 2 tokens with ``enable_empty_final_response``; every callback, in
  order;
- ``cancel MODEL ID``: a stream to a model that sends two responses and then waits a
  minute; after the two, ``stop_stream(cancel_requests=True)``.
"""

from __future__ import annotations

import json
import queue
import sys
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
from google.protobuf.json_format import MessageToDict
from tritonclient.utils import InferenceServerException


def _int64(name: str, value: int) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, [1], "INT64")
    tensor.set_data_from_numpy(np.array([value], dtype=np.int64))
    return tensor


def _event(result: Any, error: Any) -> dict[str, Any]:
    if error is not None:
        return {"error": str(error)}
    response = result.get_response()
    params = response.parameters
    token = result.as_numpy("token") if any(o.name == "token" for o in response.outputs) else None
    return {
        "id": response.id,
        "model": response.model_name,
        "token": None if token is None else token.reshape(-1)[0].decode(),
        "final": params["triton_final_response"].bool_param
        if "triton_final_response" in params
        else None,
    }


def main(url: str, scenario: str, *args: str) -> Any:
    client = grpcclient.InferenceServerClient(url)
    if scenario == "infer":
        tensor = grpcclient.InferInput("x", [2, 2], "FP32")
        tensor.set_data_from_numpy(np.array([[1, 2], [3, 4]], dtype=np.float32))
        result = client.infer("identity", [tensor], request_id="unary-1")
        return {"id": result.get_response().id, "x": result.as_numpy("x").tolist()}
    if scenario == "compressed":  # args: the compression algorithms
        out = {}
        for algorithm in args:
            tensor = grpcclient.InferInput("x", [50_000], "FP32")  # zeros: compressible
            tensor.set_data_from_numpy(np.zeros(50_000, dtype=np.float32))
            result = client.infer("identity", [tensor], compression_algorithm=algorithm)
            x = result.as_numpy("x")
            out[algorithm] = {"shape": list(x.shape), "all_zero": not x.any()}
        return out
    if scenario == "metadata":
        return {
            "json": client.get_model_metadata(args[0], as_json=True),
            "message": MessageToDict(
                client.get_model_metadata(args[0]), preserving_proto_field_name=True
            ),
        }
    if scenario == "config":
        return {
            "json": client.get_model_config(args[0], as_json=True),
            "message": MessageToDict(
                client.get_model_config(args[0]).config,
                preserving_proto_field_name=True,
                always_print_fields_with_no_presence=True,
            ),
        }
    if scenario == "config-missing":
        try:
            client.get_model_config(args[0])
        except InferenceServerException as exc:
            return {"status": exc.status(), "message": exc.message()}
        return {"status": None}
    events: queue.Queue[dict[str, Any]] = queue.Queue()
    client.start_stream(callback=lambda result, error: events.put(_event(result, error)))
    if scenario == "stream":
        client.async_stream_infer("token-streamer", [_int64("n", 3)], request_id="first")
        client.async_stream_infer("token-streamer", [_int64("n", -1)], request_id="refused")
        client.async_stream_infer(
            "token-streamer",
            [_int64("n", 2)],
            request_id="second",
            enable_empty_final_response=True,
        )
        client.stop_stream()  # waits for the responses of every request sent
        return [events.get_nowait() for _ in range(events.qsize())]
    if scenario == "cancel":
        model, request_id = args
        tensor = grpcclient.InferInput("p", [1], "BYTES")
        tensor.set_data_from_numpy(np.array([b"x"], dtype=np.object_))
        client.async_stream_infer(model, [tensor], request_id=request_id)
        seen = [events.get(timeout=30), events.get(timeout=30)]
        client.stop_stream(cancel_requests=True)
        return seen
    raise SystemExit(f"unknown scenario {scenario!r}")


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:])))
