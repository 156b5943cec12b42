"""Cancellation: a client that goes away cancels the model (must show 3), and an embedded
server stops with its nursery, leaving no task behind (must show 4)."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
import trio

from streamwise import ServerInfo, load_settings, serve
from tests.support import DEMO, TEST_MODELS, probe, rawhttp
from tests.support.disconnects import disconnect_after_two_events

PROMPT = {"inputs": [{"name": "p", "shape": [1], "datatype": "BYTES", "data": ["x"]}]}


@pytest.mark.parametrize("model", ["slow-stream", "slow-stream-aio"])
async def test_disconnect_cancels_the_model_and_its_finally_runs(
    models: ServerInfo, model: str
) -> None:
    delays = []
    for _ in range(20):
        delay, cancelled = await disconnect_after_two_events(models, model)
        assert cancelled
        delays.append(delay)
    # Figures (median, max) are printed by scripts/bench_disconnect.py; here only the
    # behaviour: every one of the 20 models was cancelled long before its next step.
    assert max(delays) < 5.0, delays
    async with httpx.AsyncClient() as client:  # and the server serves on
        r = await client.get(f"{models.http_url}/v2/health/live")
        assert r.status_code == 200


async def test_client_leaving_after_a_bad_request_leaves_the_server_serving(
    models: ServerInfo,
) -> None:
    """A client that announces a body, sends half of it and leaves: no model call is
    started for it, and the server stays live."""
    part = b'{"inputs": ['
    head = (
        "POST /v2/models/slow-stream/generate_stream HTTP/1.1\r\nHost: x\r\n"
        f"Content-Type: application/json\r\nContent-Length: {2 * len(part)}\r\n\r\n"
    ).encode()
    for _ in range(10):
        stream = await trio.open_tcp_stream("127.0.0.1", models.http_port)
        await stream.send_all(head + part)  # half the body the header announced
        await stream.aclose()
    async with httpx.AsyncClient() as client:
        resp = await client.get(f"{models.http_url}/v2/models/slow-stream/ready")
    assert resp.status_code == 200
    assert models.dataplane.in_flight == 0  # no call was started on half a body


def _task_count() -> int:
    def count(task: trio.lowlevel.Task) -> int:
        return 1 + sum(count(t) for n in task.child_nurseries for t in n.child_tasks)

    return count(trio.lowlevel.current_root_task())


async def test_embedded_server_stops_with_its_nursery_and_leaves_no_task() -> None:
    settings = load_settings(
        DEMO, overrides={"http_port": 0, "grpc_port": 0, "metrics_port": 0}, environ={}
    )
    before = _task_count()
    async with trio.open_nursery() as nursery:
        info = await nursery.start(serve, settings)
        assert _task_count() > before
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{info.http_url}/v2/health/ready")).status_code == 200
            url = f"{info.http_url}/v2/models/token-streamer/generate_stream"
            body = {"inputs": [{"name": "n", "shape": [1], "datatype": "INT64", "data": [2]}]}
            r = await client.post(url, json=body)
            assert [
                json.loads(line[6:])["outputs"][0]["data"] for line in r.text.split("\n\n") if line
            ] == [["token-0"], ["token-1"]]
        nursery.cancel_scope.cancel()
    assert _task_count() == before
    assert not info.dataplane.ready()
    with pytest.raises(OSError):
        await trio.open_tcp_stream("127.0.0.1", info.http_port)


async def test_embedded_server_with_a_stream_open_stops_and_cancels_the_model() -> None:
    settings = load_settings(
        TEST_MODELS, overrides={"http_port": 0, "grpc_port": 0, "metrics_port": 0}, environ={}
    )
    rid = str(uuid.uuid4())
    before = _task_count()
    async with trio.open_nursery() as nursery:
        info = await nursery.start(serve, settings)
        r = await rawhttp.request(
            info.http_port, "POST", "/v2/models/slow-stream/generate_stream", PROMPT | {"id": rid}
        )
        assert (await r.read_chunk()) is not None
        nursery.cancel_scope.cancel()
    await r.stream.aclose()
    assert probe.cancelled[rid] is True
    assert _task_count() == before
