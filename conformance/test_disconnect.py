"""Clients that go away: the server stays live, new streams work, and (best effort,
recorded as a deviation when not) the model stops instead of streaming to no one.

slow-stream answers unary inference with counts of its streams (started, ended,
completed, stopped), which is how a client can see whether the model was stopped."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from .wire import describe, raw_request, tokens

pytestmark = [pytest.mark.streaming, pytest.mark.usefixtures("_models")]
SLOW = "/v2/models/slow-stream/generate_stream"


@pytest.fixture
def _models(need) -> None:
    need("slow-stream", "token-streamer")


def counts(http: httpx.Client) -> dict[str, int]:
    response = http.post("/v2/models/slow-stream/infer", json={"inputs": []})
    assert response.status_code == 200, describe(response)
    return {o["name"]: int(sum_all(o["data"])) for o in response.json()["outputs"]}


def sum_all(data: object) -> int:
    return sum(map(sum_all, data)) if isinstance(data, list) else int(data)  # type: ignore[arg-type]


def all_ended(http: httpx.Client, timeout: float = 5.0) -> dict[str, int] | None:
    """Poll until every stream the model started has ended; None if some never did."""
    deadline = time.monotonic() + timeout
    while True:
        now = counts(http)
        if now["ended"] == now["started"]:
            return now
        if time.monotonic() > deadline:
            return None
        time.sleep(0.05)


def a_stream_works(http: httpx.Client) -> None:
    response = http.post("/v2/models/token-streamer/generate_stream", json=tokens(3))
    assert response.status_code == 200, describe(response)
    assert response.text.count("data:") == 3, response.text


def disconnect_after(target, events: int, body: object = None) -> None:
    with raw_request(target.http, "POST", SLOW, body or tokens(100, 0.1)) as r:
        assert r.status == 200, r.headers
        for i, _ in enumerate(r.events(), 1):
            if i >= events:
                break
    # leaving the block closed the socket mid-stream


def test_disconnect_mid_stream_then_a_new_stream_works(target, http: httpx.Client) -> None:
    disconnect_after(target, 2)
    a_stream_works(http)


def test_model_stops_after_a_disconnect(target, http: httpx.Client, deviation) -> None:
    assert all_ended(http) is not None, "slow-stream had streams running before the check"
    before = counts(http)
    disconnect_after(target, 2)
    after = all_ended(http)
    if after is None:
        deviation("the model kept streaming for 5 s after its client went away")
        return
    assert after["started"] == before["started"] + 1, (before, after)
    assert after["stopped"] == before["stopped"] + 1, (before, after)


def test_many_disconnects_in_a_row(target, http: httpx.Client, deviation) -> None:
    for _ in range(20):
        disconnect_after(target, 1, tokens(100, 0.02))
    a_stream_works(http)
    if all_ended(http) is None:
        deviation("models of dropped streams were still running 5 s later")


def test_disconnect_before_the_first_event(target, http: httpx.Client, deviation) -> None:
    with raw_request(target.http, "POST", SLOW, tokens(100, 0.5)) as r:
        assert r.status == 200
    a_stream_works(http)
    if all_ended(http) is None:
        deviation("a stream dropped before its first event kept its model running")


def test_request_cut_in_the_middle_of_its_body(target, http: httpx.Client) -> None:
    host, port = httpx.URL(target.http).host, httpx.URL(target.http).port
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(
            f"POST {SLOW} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            'Content-Length: 1000\r\n\r\n{"inputs": ['.encode()
        )
    a_stream_works(http)


def test_connection_dropped_right_after_connecting(target, http: httpx.Client) -> None:
    host, port = httpx.URL(target.http).host, httpx.URL(target.http).port
    for _ in range(10):
        socket.create_connection((host, port), timeout=10).close()
    a_stream_works(http)
