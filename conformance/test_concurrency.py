"""Concurrent streams never cross, and a stream does not hold up other requests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from .wire import describe, first_text, request, sse, tensor, text_input, tokens

pytestmark = pytest.mark.streaming


def parallel(n: int, job: Callable[[int], Any]) -> list[Any]:
    """Run job(0..n-1) at once, each on its own thread (and its own connection)."""
    barrier = threading.Barrier(n)

    def run(i: int) -> Any:
        barrier.wait(timeout=30)
        return job(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


def test_concurrent_streams_keep_their_ids_and_order(target, need) -> None:
    need("token-streamer")

    def job(i: int) -> list[dict[str, Any]]:
        with httpx.Client(base_url=target.http, timeout=30) as client:
            response, events = sse(
                client,
                "/v2/models/token-streamer/generate_stream",
                tokens(50, 0.005, id=f"stream-{i}"),
            )
            assert response.status_code == 200, describe(response)
            return [e.json() for e in events]

    for i, events in enumerate(parallel(8, job)):
        assert {e.get("id") for e in events} == {f"stream-{i}"}, f"stream {i} got other ids"
        assert [first_text(e) for e in events] == [f"token-{k}" for k in range(50)]


def test_concurrent_streams_keep_their_own_text(target, need) -> None:
    need("word-streamer")
    texts = [" ".join(f"w{i}-{k}" for k in range(30)) for i in range(6)]

    def job(i: int) -> str:
        with httpx.Client(base_url=target.http, timeout=30) as client:
            body = request(text_input("text", texts[i]))
            response, events = sse(client, "/v2/models/word-streamer/generate_stream", body)
            assert response.status_code == 200, describe(response)
            return "".join(first_text(e.json()) for e in events)

    assert parallel(6, job) == texts


def test_document_streams_run_side_by_side(target, need) -> None:
    """Three of the document's 3-second streams at once take far less than 9 s: the
    server does not serve streams one after the other."""
    need("text-model")
    body = request(text_input("prompt", "one two three four five six"))

    def job(i: int) -> int:
        with httpx.Client(base_url=target.http, timeout=30) as client:
            response, events = sse(client, "/v2/models/text-model/generate_stream", body)
            assert response.status_code == 200, describe(response)
            return len(events)

    start = time.monotonic()
    assert parallel(3, job) == [6, 6, 6]
    elapsed = time.monotonic() - start
    assert elapsed < 7.5, f"three 3 s streams took {elapsed:.1f} s: they were serialized"


def test_unary_requests_are_served_while_a_stream_runs(target, http: httpx.Client, need) -> None:
    need("token-streamer", "identity")
    finished: list[float] = []

    def stream() -> None:
        with httpx.Client(base_url=target.http, timeout=30) as client:
            response, events = sse(
                client, "/v2/models/token-streamer/generate_stream", tokens(10, 0.2)
            )
            assert len(events) == 10
            finished.append(time.monotonic())

    with ThreadPoolExecutor(1) as pool:
        streaming = pool.submit(stream)
        time.sleep(0.3)
        for i in range(20):
            body = request(tensor("x", "INT32", [1], [i]))
            response = http.post("/v2/models/identity/infer", json=body)
            assert response.status_code == 200, describe(response)
            assert response.json()["outputs"][0]["data"] in ([i], [[i]])
        unary_done = time.monotonic()
        streaming.result()
    assert unary_done < finished[0], "unary requests waited for the stream to end"
