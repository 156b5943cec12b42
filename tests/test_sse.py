"""SSE over real sockets: framing, headers, incremental delivery, id echo, and errors
before and after the stream starts (must show 2)."""

from __future__ import annotations

import json

import httpx
import trio
from httpx_sse import aconnect_sse

from streamwise import ServerInfo
from tests.support import rawhttp

PROMPT = {
    "inputs": [
        {
            "name": "prompt",
            "shape": [1],
            "datatype": "BYTES",
            "data": ["a b c"],
            "parameters": {"content_type": "str"},
        }
    ]
}


def tokens(n: int, delay_s: float = 0.0, **extra: object) -> dict[str, object]:
    return {
        "inputs": [
            {"name": "n", "shape": [1], "datatype": "INT64", "data": [n]},
            {"name": "delay_s", "shape": [1], "datatype": "FP64", "data": [delay_s]},
        ],
        **extra,
    }


async def test_sse_framing_headers_and_compact_json(demo: ServerInfo) -> None:
    r = await rawhttp.request(
        demo.http_port, "POST", "/v2/models/token-streamer/generate_stream", tokens(3, id="req-1")
    )
    assert r.status == 200
    assert r.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert r.headers["cache-control"] == "no-cache"
    assert r.headers["x-accel-buffering"] == "no"
    body = await r.read_body()
    await r.stream.aclose()
    events = rawhttp.parse_sse(body)
    assert [list(e) for e in events] == [["data"]] * 3  # no event:/id: lines, no [DONE]
    for i, event in enumerate(events):
        assert ": " not in event["data"] and ", " not in event["data"]  # compact JSON
        payload = json.loads(event["data"])
        assert payload["id"] == "req-1"
        assert payload["model_name"] == "token-streamer"
        assert payload["outputs"][0]["data"] == [f"token-{i}"]
        assert payload["outputs"][0]["shape"] == [1, 1]
        assert payload["outputs"][0]["parameters"] == {"content_type": "str"}


async def test_every_event_carries_one_generated_id(
    demo: ServerInfo, client: httpx.AsyncClient
) -> None:
    url = f"{demo.http_url}/v2/models/token-streamer/infer_stream"
    async with aconnect_sse(client, "POST", url, json=tokens(5)) as source:
        ids = {json.loads(e.data)["id"] async for e in source.aiter_sse()}
    assert len(ids) == 1 and len(ids.pop()) == 36  # one uuid4 for the whole stream


async def test_events_arrive_at_the_models_pace(demo: ServerInfo) -> None:
    """Each event is written when the model yields it, not buffered to the end."""
    r = await rawhttp.request(
        demo.http_port, "POST", "/v2/models/token-streamer/generate_stream", tokens(4, delay_s=0.4)
    )
    start = trio.current_time()
    arrivals = []
    while (chunk := await r.read_chunk()) is not None:
        arrivals.append((trio.current_time() - start, chunk.count(b"data: ")))
    await r.stream.aclose()
    assert sum(n for _, n in arrivals) == 4
    assert [n for _, n in arrivals] == [1, 1, 1, 1]  # one write per event at this pace
    assert arrivals[-1][0] - arrivals[0][0] >= 1.0  # 3 gaps of 0.4 s: not one burst


async def test_versioned_stream_routes(demo: ServerInfo) -> None:
    for path in ("/v2/models/text-model/versions/v1.2.3", "/v2/models/text-model"):
        r = await rawhttp.request(demo.http_port, "POST", path + "/generate_stream", PROMPT)
        # the text model sleeps 0.5 s per word: read only the first event, then leave
        first = await r.read_chunk()
        await r.stream.aclose()
        assert r.status == 200 and first is not None
        [event] = rawhttp.parse_sse(first)
        assert json.loads(event["data"])["outputs"][0]["data"] == ["a"]


async def test_unknown_model_is_a_json_404_not_a_stream(demo: ServerInfo) -> None:
    r = await rawhttp.request(demo.http_port, "POST", "/v2/models/nope/generate_stream", PROMPT)
    body = await r.read_body()
    await r.stream.aclose()
    assert r.status == 404
    assert r.headers["content-type"] == "application/json"
    assert json.loads(body) == {"error": "model 'nope' not found"}


async def test_unknown_version_and_invalid_request_are_json_4xx(demo: ServerInfo) -> None:
    cases = [
        ("/v2/models/text-model/versions/9/generate_stream", PROMPT, 404),
        ("/v2/models/text-model/generate_stream", b"{not json", 400),
        ("/v2/models/text-model/generate_stream", {"inputs": [{"name": "prompt"}]}, 400),
        (
            "/v2/models/token-streamer/generate_stream",
            tokens(2) | {"inputs": [{"name": "n", "shape": [2], "datatype": "INT64", "data": [1]}]},
            400,
        ),
    ]
    for path, body, status in cases:
        r = await rawhttp.request(demo.http_port, "POST", path, body)
        payload = json.loads(await r.read_body())
        await r.stream.aclose()
        assert (r.status, list(payload)) == (status, ["error"]), (path, payload)
        assert "detail" not in payload


async def test_model_failing_mid_stream_ends_with_an_error_event(models: ServerInfo) -> None:
    r = await rawhttp.request(
        models.http_port, "POST", "/v2/models/fail-mid-stream/generate_stream", PROMPT | {"id": "x"}
    )
    assert r.status == 200
    events = rawhttp.parse_sse(await r.read_body())
    await r.stream.aclose()
    assert [e.get("event") for e in events] == [None, None, "error"]
    assert [json.loads(e["data"])["outputs"][0]["data"] for e in events[:2]] == [["t0"], ["t1"]]
    error = json.loads(events[2]["data"])
    assert list(error) == ["error"] and "boom after two tokens" in error["error"]


async def test_httpx_sse_client_sees_the_error_event(
    models: ServerInfo, client: httpx.AsyncClient
) -> None:
    url = f"{models.http_url}/v2/models/fail-mid-stream/generate_stream"
    async with aconnect_sse(client, "POST", url, json=PROMPT) as source:
        events = [(e.event, e.data) async for e in source.aiter_sse()]
    assert [kind for kind, _ in events] == ["message", "message", "error"]
