"""Server-sent events on ``generate_stream`` / ``infer_stream``: framing, pacing, ids.

The reference is the document's dialect: ``200``, ``text/event-stream``, one
``data: <compact JSON InferenceResponse>\\n\\n`` event per model response, flushed at
once, and the stream ends with the body.
"""

from __future__ import annotations

import json
import pathlib

import httpx
import pytest

from .wire import (
    describe,
    first_text,
    parse_event,
    raw_request,
    request,
    sse,
    tensor,
    text_input,
    tokens,
    versions_unsupported,
)

pytestmark = pytest.mark.streaming

DOCUMENT_REQUEST = json.loads(
    (pathlib.Path(__file__).parent / "requests" / "generate-request.json").read_text()
)
DOCUMENT_TEXT = "What is the capital of France?"


def stream_tokens(http: httpx.Client, n: int, **fields: object) -> list[dict[str, object]]:
    response, events = sse(http, "/v2/models/token-streamer/generate_stream", tokens(n, **fields))
    assert response.status_code == 200
    return [e.json() for e in events]


def test_content_type_and_status(target, need) -> None:
    need("token-streamer")
    with raw_request(
        target.http, "POST", "/v2/models/token-streamer/generate_stream", tokens(2)
    ) as r:
        assert r.status == 200, r.headers
        assert r.headers.get("content-type", "").startswith("text/event-stream"), r.headers
        assert "content-length" not in r.headers or r.headers.get("transfer-encoding"), (
            "a stream with a Content-Length was buffered whole before it was sent"
        )
        r.body()


def test_framing_is_data_lines_ended_by_a_blank_line(target, need, deviation) -> None:
    need("token-streamer")
    with raw_request(
        target.http, "POST", "/v2/models/token-streamer/generate_stream", tokens(3)
    ) as r:
        body = r.body()
    assert body.endswith(b"\n\n"), (
        f"the stream does not end with an event's blank line: {body[-40:]!r}"
    )
    blocks = body.split(b"\n\n")[:-1]
    assert len(blocks) == 3, body
    for block in blocks:
        lines = block.split(b"\n")
        assert lines[-1].startswith(b"data: "), block
        others = [line for line in lines if not line.startswith(b"data:")]
        if others:
            deviation(f"events carry other fields too: {others[:3]}")
        event = parse_event(block)
        assert json.loads(event["data"])["outputs"], event
        assert b"\r" not in block, f"CR inside an event: {block!r}"


def test_event_data_is_an_inference_response(http: httpx.Client, need) -> None:
    need("token-streamer")
    for i, event in enumerate(stream_tokens(http, 3)):
        assert event.get("model_name") == "token-streamer", event
        (out,) = event["outputs"]
        assert out["name"] == "token" and out["datatype"] == "BYTES", out
        assert first_text(event) == f"token-{i}", event


def test_document_request_streams_the_text_word_by_word(http: httpx.Client, need) -> None:
    """The document's REST client, its request file and its model (0.5 s per word)."""
    need("text-model")
    response, events = sse(http, "/v2/models/text-model/generate_stream", DOCUMENT_REQUEST)
    assert response.status_code == 200, describe(response)
    words = [first_text(e.json()) for e in events]
    assert words == ["What", " is", " the", " capital", " of", " France?"], words
    assert "".join(words) == DOCUMENT_TEXT
    assert events[-1].at - events[0].at >= 2.0, "six words 0.5 s apart arrived at once"


@pytest.mark.parametrize("accept_encoding", [None, "gzip"])
def test_events_arrive_at_the_models_pace(target, need, accept_encoding: str | None) -> None:
    """Each event is flushed when the model yields it, also when the client accepts gzip
    (a compressing middleware must not hold events back)."""
    need("token-streamer")
    headers = {"Accept-Encoding": accept_encoding} if accept_encoding else None
    path = "/v2/models/token-streamer/generate_stream"
    with raw_request(target.http, "POST", path, tokens(5, 0.3), headers=headers) as r:
        assert r.status == 200
        arrivals = [at for at, _ in r.events()]
    assert len(arrivals) == 5, arrivals
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    assert sorted(gaps)[len(gaps) // 2] >= 0.15, f"events were held back: gaps {gaps}"


def test_same_request_id_on_every_event(http: httpx.Client, need) -> None:
    need("token-streamer")
    events = stream_tokens(http, 5, id="sse-id-1")
    assert [e.get("id") for e in events] == ["sse-id-1"] * 5, events


def test_one_generated_id_for_the_whole_stream(http: httpx.Client, need) -> None:
    need("token-streamer")
    ids = {e.get("id") for e in stream_tokens(http, 5)}
    assert None not in ids, "events without an id (MLServer generates one per stream)"
    assert len(ids) == 1, f"the events of one stream carry different ids: {ids}"


def test_many_events_arrive_complete_and_in_order(http: httpx.Client, need) -> None:
    need("token-streamer")
    events = stream_tokens(http, 2000)
    assert [first_text(e) for e in events] == [f"token-{i}" for i in range(2000)]


def test_infer_stream_is_generate_stream(http: httpx.Client, need) -> None:
    need("token-streamer")
    response, events = sse(http, "/v2/models/token-streamer/infer_stream", tokens(3))
    assert response.status_code == 200, describe(response)
    assert [first_text(e.json()) for e in events] == ["token-0", "token-1", "token-2"]


def test_versioned_stream_path(http: httpx.Client, need, deviation) -> None:
    need("identity")
    sent = tensor("x", "INT32", [2], [7, 8])
    path = "/v2/models/identity/versions/v1/generate_stream"
    response, events = sse(http, path, request(sent))
    if versions_unsupported(response, deviation):
        return
    assert response.status_code == 200, describe(response)
    (event,) = [e.json() for e in events]
    assert event["outputs"][0]["data"] in ([7, 8], [[7, 8]]), event


def test_unicode_survives_the_stream(http: httpx.Client, need) -> None:
    need("word-streamer")
    text = "héllo wörld ✓ 日本"
    response, events = sse(
        http, "/v2/models/word-streamer/generate_stream", request(text_input("text", text))
    )
    assert response.status_code == 200, describe(response)
    assert "".join(first_text(e.json()) for e in events) == text


def test_connection_is_reusable_after_a_stream(http: httpx.Client, need) -> None:
    """The body ends properly (the last chunk is sent), so one connection serves on."""
    need("token-streamer")
    for _ in range(3):
        assert len(stream_tokens(http, 2)) == 2
    assert http.get("/v2/health/live").status_code == 200
