"""How long a model's ``finally`` takes to run after its client goes away, for the test
models ``slow-stream`` and ``slow-stream-aio`` (two tokens at once, the next a minute
away). Used by tests/test_cancellation.py and tests/test_grpc.py (every model must be
cancelled, soon) and by scripts/bench_disconnect.py (the figures)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import trio

from streamwise import ServerInfo
from streamwise.types import InferenceRequest

from . import probe, rawhttp
from .grpc_stubs import in_thread, to_pb2

PROMPT = {"inputs": [{"name": "p", "shape": [1], "datatype": "BYTES", "data": ["x"]}]}


async def _finally_of(rid: str, gone_at: float) -> tuple[float, bool]:
    with trio.fail_after(10):  # the model's next step is 60 s away
        while rid not in probe.finally_at:  # noqa: ASYNC110 - the model writes a dict, no Event
            await trio.sleep(0.001)
    return probe.finally_at[rid] - gone_at, probe.cancelled[rid]


async def disconnect_after_two_events(info: ServerInfo, model: str) -> tuple[float, bool]:
    """Read two events, close the socket; how long until the model's finally ran, and
    whether the model was cancelled (it would otherwise sleep a minute first)."""
    rid = str(uuid.uuid4())
    r = await rawhttp.request(
        info.http_port, "POST", f"/v2/models/{model}/generate_stream", PROMPT | {"id": rid}
    )
    assert r.status == 200
    seen = 0
    while seen < 2:
        chunk = await r.read_chunk()
        assert chunk is not None
        seen += chunk.count(b"data: ")
    closed_at = time.monotonic()
    await r.stream.aclose()
    return await _finally_of(rid, closed_at)


async def grpc_cancel_after_two(info: ServerInfo, model: str) -> tuple[float, bool]:
    """Cancel a ModelStreamInfer after two messages; time until the model's finally ran,
    and whether the model was cancelled."""
    rid = str(uuid.uuid4())
    message = to_pb2(InferenceRequest.model_validate(PROMPT | {"id": rid}), model)

    def run(stub: Any) -> float:
        call = stub.ModelStreamInfer(iter([message]))
        for i, _ in enumerate(call):
            if i == 1:
                break
        cancelled_at = time.monotonic()
        call.cancel()
        return cancelled_at

    cancelled_at = await in_thread(info, run)
    return await _finally_of(rid, cancelled_at)
