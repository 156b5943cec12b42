"""Errors on streaming endpoints. Before the stream starts: a JSON 4xx, as for unary
calls, not a 200 stream. Mid-stream: something the client can detect, never what looks
like a clean end (that would pass a failed answer off as a short one)."""

from __future__ import annotations

import json

import httpx
import pytest

from .wire import (
    client_error,
    describe,
    parse_event,
    raw_request,
    request,
    tensor,
    text_input,
    tokens,
    versions_unsupported,
)

pytestmark = pytest.mark.streaming


@pytest.fixture(autouse=True)
def _still_live_afterwards(live) -> object:
    yield
    live()


def post(http: httpx.Client, path: str, **kwargs: object) -> httpx.Response:
    """The response to a streaming request that should be refused; a 200 stream is a
    failure in itself (the error was not reported before the stream started)."""
    with http.stream("POST", path, **kwargs) as response:  # type: ignore[arg-type]
        assert response.status_code != 200, (
            f"answered 200 {response.headers.get('content-type')}: the error was not "
            "reported before the stream started"
        )
        response.read()
        return response


def test_unknown_model(http: httpx.Client, deviation) -> None:
    response = post(http, "/v2/models/no-such-model/generate_stream", json=tokens(2))
    client_error(response, deviation, "stream on an unknown model", preferred=404)


def test_unknown_version(http: httpx.Client, need, deviation) -> None:
    need("token-streamer")
    path = "/v2/models/token-streamer/versions/no-such-version/generate_stream"
    response = post(http, path, json=tokens(2))
    if versions_unsupported(response, deviation):
        return
    client_error(response, deviation, "unknown version", preferred=404)


def test_malformed_json(http: httpx.Client, need, deviation) -> None:
    need("token-streamer")
    response = post(
        http,
        "/v2/models/token-streamer/generate_stream",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    client_error(response, deviation, "malformed JSON on a stream")


def test_invalid_datatype(http: httpx.Client, need, deviation) -> None:
    need("identity")
    body = request(tensor("x", "FLOAT99", [1], [1.0]))
    response = post(http, "/v2/models/identity/generate_stream", json=body)
    client_error(response, deviation, "invalid datatype on a stream")


def test_data_not_fitting_the_shape(http: httpx.Client, need, deviation) -> None:
    need("identity")
    body = request(tensor("x", "INT32", [2, 2], [1, 2, 3]))
    response = post(http, "/v2/models/identity/generate_stream", json=body)
    client_error(response, deviation, "data not fitting the shape on a stream")


def test_input_the_model_does_not_declare(http: httpx.Client, need, deviation) -> None:
    """text-model declares one input, `prompt`."""
    need("text-model")
    body = request(text_input("not-the-prompt", "a b"))
    response = http.post("/v2/models/text-model/generate_stream", json=body)
    if response.status_code == 200:
        blocks = response.content.replace(b"\r\n", b"\n").split(b"\n\n")
        refused = error_events([parse_event(b) for b in blocks if b.strip()])
        assert not refused, (
            f"answered 200, then refused in the stream ({refused[:1]}): the error was not "
            "reported before the stream started"
        )
        deviation("an input the model does not declare was accepted")
        return
    client_error(response, deviation, "undeclared input on a stream")


def read_until_end(
    target, path: str, body: dict[str, object]
) -> tuple[int, list[dict[str, str]], str]:
    """(status, events, how the body ended: "clean", "cut" or "json-error")."""
    with raw_request(target.http, "POST", path, body) as r:
        if r.status != 200:
            return r.status, [], "json-error" if "error" in json.loads(r.body() or b"{}") else "?"
        events: list[dict[str, str]] = []
        try:
            for _, block in r.events():
                events.append(parse_event(block))
        except (EOFError, ValueError, ConnectionError):
            return r.status, events, "cut"
        return r.status, events, "clean"


def error_events(events: list[dict[str, str]]) -> list[str]:
    """Messages of error events: `event: error` (streamwise), or a `data:` object with an
    `error` key (Triton's dialect)."""
    found = []
    for e in events:
        data = e.get("data", "")
        try:
            body = json.loads(data)
        except ValueError:
            body = None
        if e.get("event") == "error" or (isinstance(body, dict) and "error" in body):
            found.append(body.get("error", data) if isinstance(body, dict) else data)
    return found


def test_failure_mid_stream_is_never_a_clean_end(target, need, deviation) -> None:
    need("fail-mid-stream")
    status, events, end = read_until_end(
        target, "/v2/models/fail-mid-stream/generate_stream", tokens(2)
    )
    assert status == 200, status
    data = [e for e in events if e.get("event", "message") == "message" and not error_events([e])]
    assert len(data) == 2, f"the two responses before the failure: {events}"
    errors = error_events(events)
    if errors:
        assert all(isinstance(m, str) and m for m in errors), errors
        return
    assert end == "cut", (
        "the stream ended cleanly after a model failure: it looks like a short answer"
    )
    deviation("a mid-stream failure is only visible as a cut connection, with no message")


def test_failure_before_the_first_response(target, need, deviation) -> None:
    need("fail-mid-stream")
    status, events, end = read_until_end(
        target, "/v2/models/fail-mid-stream/generate_stream", tokens(0)
    )
    if status != 200:
        assert end == "json-error" and status >= 400, (status, end)
        return
    if error_events(events):
        return
    assert end == "cut", "an empty, clean 200 stream hid the model's failure"
    deviation("a failure before the first response is only visible as a cut connection")


def test_failure_is_reported_to_an_httpx_sse_client(http: httpx.Client, need, deviation) -> None:
    """What the document's client sees: an error event, or an exception from httpx."""
    from httpx_sse import connect_sse

    need("fail-mid-stream")
    seen: list[tuple[str, str]] = []
    try:
        with connect_sse(
            http, "POST", "/v2/models/fail-mid-stream/generate_stream", json=tokens(2)
        ) as source:
            for event in source.iter_sse():
                seen.append((event.event, event.data))
    except httpx.HTTPError as exc:
        deviation(f"the failure surfaces as {type(exc).__name__}, not as an event")
        return
    told = any(kind == "error" or _has_error(data) for kind, data in seen)
    assert told, f"events {seen}: the failure looks like a clean end"


def _has_error(data: str) -> bool:
    """An event's data that says the stream failed: a JSON object with an ``error``."""
    try:
        body = json.loads(data)
    except ValueError:
        return False
    return isinstance(body, dict) and "error" in body


def test_a_new_stream_works_after_a_failure(http: httpx.Client, need) -> None:
    need("fail-mid-stream", "token-streamer")
    try:
        http.post("/v2/models/fail-mid-stream/generate_stream", json=tokens(1))
    except httpx.HTTPError:
        pass  # a cut body: test_failure_mid_stream_is_never_a_clean_end judges it
    response = http.post("/v2/models/token-streamer/generate_stream", json=tokens(3))
    assert response.status_code == 200, describe(response)
    assert response.text.count("data:") == 3, response.text
