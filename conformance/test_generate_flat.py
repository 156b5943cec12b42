"""Triton's generate dialect on ``generate`` / ``generate_stream``: flat JSON in and out.

The reference is Triton's ``docs/protocol/extension_generate.md`` and its HTTP server: a
request ``{"text_input": "...", "parameters": {...}}`` (keys naming a model input are
tensors, other keys parameters), a response ``{"model_name", "model_version",
"text_output"}`` (one key per output, a one-element tensor as its value), on a stream one
``data:`` event per response and a failure as a last ``data: {"error": "..."}`` event;
errors before any inference as a JSON ``{"error": ...}`` with a 4xx.

The dialect is an extension, not the V2 protocol: a server that answers the flat body
with a 4xx saying ``inputs`` is missing (MLServer, whose ``generate`` takes V2 requests
only), or that has no ``generate`` route, is skipped with that reason. The model is
``text-generator`` (``text_input`` BYTES in, ``text_output`` out).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from .wire import describe, error_body, parse_event, raw_request

pytestmark = pytest.mark.streaming

MODEL = "/v2/models/text-generator"
TEXT = "What is the capital of France?"


@pytest.fixture
def flat(http: httpx.Client, need: Callable[..., None]) -> None:
    """Skip unless the target speaks the dialect (asked once per check: cheap). A refusal
    that mentions `inputs` anywhere (`{"error": ...}`, or FastAPI's `{"detail": [...]}`
    naming the missing field) is a server reading the body as a V2 request."""
    need("text-generator")
    response = http.post(f"{MODEL}/generate", json={"text_input": "probe"})
    if response.status_code in (404, 405) and "text-generator" not in response.text:
        pytest.skip(f"no generate route: {describe(response)}")
    if 400 <= response.status_code < 500 and "inputs" in response.text:
        pytest.skip(f"Triton's flat generate request is not understood: {describe(response)}")


def stream(target: Any, body: Any) -> tuple[int, dict[str, str], list[bytes], str]:
    """(status, headers, the event blocks, how the body ended: "clean" or "cut")."""
    with raw_request(target.http, "POST", f"{MODEL}/generate_stream", body) as r:
        if r.status != 200:
            return r.status, r.headers, [r.body()], "clean"
        blocks: list[bytes] = []
        try:
            for _, block in r.events():
                blocks.append(block)
        except (EOFError, ValueError, ConnectionError):
            return r.status, r.headers, blocks, "cut"
        return r.status, r.headers, blocks, "clean"


def test_generate_answers_one_flat_object(http: httpx.Client, flat: None) -> None:
    response = http.post(f"{MODEL}/generate", json={"text_input": TEXT, "id": "g-1"})
    assert response.status_code == 200, describe(response)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["model_name"] == "text-generator", body
    assert isinstance(body["model_version"], str), body
    assert body["text_output"] == TEXT, "a one-element output is its value, not a list"
    assert body["id"] == "g-1", "the request's id is echoed"
    assert "outputs" not in body, "a V2 response, not the flat one"


def test_generate_without_an_id_answers_none(http: httpx.Client, flat: None) -> None:
    """Triton's test_request_id: no id (or an empty one) in, no `id` key out."""
    for body in ({"text_input": TEXT}, {"text_input": TEXT, "id": ""}):
        response = http.post(f"{MODEL}/generate", json=body)
        assert response.status_code == 200, describe(response)
        assert "id" not in response.json(), response.json()


def test_generate_stream_events_are_flat_objects(target: Any, flat: None) -> None:
    status, headers, blocks, end = stream(target, {"text_input": TEXT, "id": "s-1"})
    assert status == 200, blocks
    assert headers.get("content-type", "").startswith("text/event-stream"), headers
    assert end == "clean"
    events = [parse_event(b) for b in blocks]
    assert all(list(e) == ["data"] for e in events), f"only data lines: {blocks[:2]}"
    data = [json.loads(e["data"]) for e in events]
    assert "".join(d["text_output"] for d in data) == TEXT, data
    assert {d["id"] for d in data} == {"s-1"}, data
    assert {d["model_name"] for d in data} == {"text-generator"}, data


@pytest.mark.parametrize("where", ["top-level", "parameters"])
def test_keys_that_are_no_input_are_parameters(target: Any, flat: None, where: str) -> None:
    """`fail_after` names no input of the model: it reaches it as a request parameter,
    from the top level or from `parameters`. The stream fails after one word, and says so
    in Triton's way: a last `data:` event holding `{"error": ...}`."""
    body: dict[str, Any] = {"text_input": "a b c"}
    if where == "top-level":
        body["fail_after"] = 1
    else:
        body["parameters"] = {"fail_after": 1}
    status, _, blocks, end = stream(target, body)
    assert status == 200, blocks
    events = [parse_event(b) for b in blocks]
    data = [json.loads(e["data"]) for e in events]
    assert len(data) == 2 and data[0]["text_output"] == "a", data
    assert list(data[1]) == ["error"] and isinstance(data[1]["error"], str), data
    assert "event" not in events[1], (
        f"the failure is V2's `event: error`, not Triton's data event: {blocks[1]!r}"
    )
    assert end == "clean"


def test_failure_before_the_first_response_is_never_a_clean_empty_stream(
    target: Any, flat: None
) -> None:
    status, _, blocks, end = stream(target, {"text_input": "a b", "fail_after": 0})
    if status != 200:  # Triton: the first response sets the status
        assert status >= 400 and error_body_of(blocks[0]), (status, blocks)
        return
    data = [json.loads(parse_event(b)["data"]) for b in blocks]
    assert data and list(data[-1]) == ["error"], (data, end)


def error_body_of(raw: bytes) -> str | None:
    text = raw.decode("utf-8", "replace").removeprefix("data: ").strip()
    try:
        body = json.loads(text)
    except ValueError:
        return None
    return body.get("error") if isinstance(body, dict) else None


@pytest.mark.parametrize(
    ("body", "what"),
    [
        ({"parameters": {"temperature": 0}}, "missing text_input"),
        ({"text_input": 5}, "a number for a BYTES input"),
        ({"text_input": {"role": "user"}}, "an object for an input"),
        ({"text_input": TEXT, "parameters": 1}, "parameters that is no object"),
        ({"text_input": TEXT, "parameters": {"nested": {"x": 1}}}, "a nested parameter"),
        ({"text_input": TEXT, "options": {"x": 1}}, "an object for a parameter"),
    ],
    ids=["missing", "wrong-type", "object-input", "parameters-1", "nested", "object-param"],
)
def test_refusals_are_json_4xx_before_any_stream(
    http: httpx.Client, target: Any, flat: None, body: dict[str, Any], what: str
) -> None:
    response = http.post(f"{MODEL}/generate", json=body)
    assert 400 <= response.status_code < 500, f"{what}: {describe(response)}"
    assert error_body(response), f"{what}: no {{'error': ...}} body: {describe(response)}"
    status, headers, blocks, _ = stream(target, body)
    assert 400 <= status < 500, f"{what} on a stream: {status} {blocks[:1]}"
    assert headers.get("content-type", "").startswith("application/json"), headers
    assert error_body_of(blocks[0]), blocks


def test_unknown_model_is_a_json_404(http: httpx.Client, flat: None) -> None:
    for route in ("generate", "generate_stream"):
        response = http.post(f"/v2/models/no-such-model/{route}", json={"text_input": TEXT})
        assert response.status_code == 404, describe(response)
        assert error_body(response), describe(response)
