"""gRPC ModelStreamInfer: the document's flow, order and ids, bidirectional exchange,
failures, cancel and deadline (and whether they stop the model), concurrent streams."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import httpx
import pytest

from .grpc_client import (
    CLIENT_ERRORS,
    Client,
    code_of,
    describe,
    expect_client_error,
    expect_model_error,
    output_values,
    still_live,
)

pytestmark = [pytest.mark.grpc, pytest.mark.streaming, pytest.mark.usefixtures("mlserver_stream")]

PROMPT = "What is the capital of France?"


# -- requests --
def text_request(client: Client, text: str = PROMPT) -> Any:
    """The document's request for text-model, as its gRPC example sends it."""
    pb = client.pb
    request = pb.ModelInferRequest(
        model_name="text-model",
        outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="output")],
    )
    prompt = request.inputs.add(name="prompt", datatype="BYTES", shape=[1])
    prompt.parameters["content_type"].string_param = "str"
    prompt.contents.bytes_contents.append(text.encode())
    return request


def tokens(
    client: Client, model: str, n: int | None = None, delay_s: float | None = None, id: str = ""
) -> Any:
    """A request for token-streamer, slow-stream or fail-mid-stream."""
    request = client.pb.ModelInferRequest(model_name=model, id=id)
    if n is not None:
        request.inputs.add(name="n", datatype="INT64", shape=[1]).contents.int64_contents.append(n)
    if delay_s is not None:
        delay = request.inputs.add(name="delay_s", datatype="FP64", shape=[1])
        delay.contents.fp64_contents.append(delay_s)
    return request


# -- calls --
def run(
    client: Client, *requests: Any, timeout: float = 30
) -> tuple[list[tuple[float, Any]], grpc.RpcError | None]:
    """Send ``requests`` then half-close; every (arrival time, response) and the final
    error (None when the call ended OK)."""
    replies = []
    try:
        for reply in client.ModelStreamInfer(iter(requests), timeout=timeout):
            replies.append((time.monotonic(), reply))
    except grpc.RpcError as error:
        return replies, error
    return replies, None


def text(reply: Any) -> str:
    value = output_values(reply, 0)[0]
    return value.decode() if isinstance(value, bytes) else str(value)


class Bidi:
    """One ModelStreamInfer call fed request by request: ``send()``, then ``receive()``
    each answer (with a timeout) while the request stream stays open; ``close()``
    half-closes. A thread reads the answers."""

    END = object()

    def __init__(self, client: Client, timeout: float = 20) -> None:
        self._requests: queue.Queue[Any] = queue.Queue()
        self._answers: queue.Queue[Any] = queue.Queue()
        self.call = client.ModelStreamInfer(self._feed(), timeout=timeout)
        self.error: grpc.RpcError | None = None
        threading.Thread(target=self._read, daemon=True).start()

    def _feed(self) -> Iterator[Any]:
        while (request := self._requests.get()) is not None:
            yield request

    def _read(self) -> None:
        try:
            for reply in self.call:
                self._answers.put(reply)
        except grpc.RpcError as error:
            self.error = error
        self._answers.put(self.END)

    def send(self, request: Any) -> None:
        self._requests.put(request)

    def receive(self, timeout: float = 5) -> Any:
        """The next answer; None if the call ended (see ``error``)."""
        try:
            answer = self._answers.get(timeout=timeout)
        except queue.Empty:
            self.call.cancel()
            pytest.fail(f"no answer within {timeout} s while the request stream is open")
        return None if answer is self.END else answer

    def close(self) -> None:
        self._requests.put(None)


def counts(http: httpx.Client) -> dict[str, int]:
    """slow-stream's stream counts (started, ended, completed, stopped): its unary infer."""
    response = http.post("/v2/models/slow-stream/infer", json={"inputs": []})
    assert response.status_code == 200, f"slow-stream counts: {response.text[:200]}"
    return {o["name"]: int(o["data"][0]) for o in response.json()["outputs"]}


def model_stopped(http: httpx.Client, deviation: Any, after: str, wait_s: float = 5) -> None:
    """Wait up to ``wait_s`` for every slow-stream stream to have ended; a model that goes
    on after its client left wastes the server (a deviation, not a protocol violation)."""
    deadline = time.monotonic() + wait_s
    while (found := counts(http))["ended"] < found["started"] and time.monotonic() < deadline:
        time.sleep(0.05)
    if found["ended"] < found["started"]:
        deviation(f"model not stopped {wait_s:.0f} s after {after}: {found}")


# -- the document's flow --
def test_document_flow(grpc_client: Client, need) -> None:
    """The gRPC example of MLServer's streaming document: one request, six responses, one
    word (0.5 s apart) in each."""
    need("text-model")
    start = time.monotonic()
    replies, error = run(grpc_client, text_request(grpc_client))
    assert error is None, f"the stream ended with {describe(error)}"
    assert [text(r) for _, r in replies] == ["What", " is", " the", " capital", " of", " France?"]
    assert {r.model_name for _, r in replies} == {"text-model"}
    ids = {r.id for _, r in replies}
    assert len(ids) == 1, f"responses of one stream carry different ids: {ids}"
    times = [at for at, _ in replies]
    assert times[-1] - start >= 2.0, "six words 0.5 s apart arrived in under 2 s"
    assert times[-1] - times[0] >= 1.5, "the words arrived together, not as they were made"


def test_many_responses_in_order(grpc_client: Client, need) -> None:
    need("token-streamer")
    replies, error = run(grpc_client, tokens(grpc_client, "token-streamer", 200, id="tok-200"))
    assert error is None, f"the stream ended with {describe(error)}"
    assert [text(r) for _, r in replies] == [f"token-{i}" for i in range(200)]
    assert {r.id for _, r in replies} == {"tok-200"}, "responses without the request's id"


def test_bidirectional(grpc_client: Client, need) -> None:
    """echo-stream answers each request before it reads the next: every answer must reach
    the client while its request stream is still open."""
    need("echo-stream")
    pb = grpc_client.pb
    stream = Bidi(grpc_client)
    try:
        for i in range(3):
            request = pb.ModelInferRequest(model_name="echo-stream", id=f"round-{i}")
            x = request.inputs.add(name="x", datatype="BYTES", shape=[1])
            x.contents.bytes_contents.append(f"message {i}".encode())
            stream.send(request)
            reply = stream.receive()
            assert reply is not None, f"round {i}: the call ended: {describe(stream.error)}"
            assert text(reply) == f"message {i}", f"round {i}: the answer's data"
            assert reply.id == f"round-{i}", (
                f"round {i}: the answer carries id {reply.id!r}, not its request's "
                f"'round-{i}' (the client's ids are lost)"
            )
    finally:
        stream.close()
    assert stream.receive() is None, "an answer nobody asked for"
    assert stream.error is None, f"the call ended with {describe(stream.error)}"


def test_concurrent_streams_do_not_cross(grpc_client: Client, need) -> None:
    need("token-streamer")
    ids = [f"concurrent-{k}" for k in range(4)]
    start = threading.Barrier(len(ids))

    def one(id: str) -> tuple[list[tuple[float, Any]], grpc.RpcError | None]:
        start.wait(timeout=10)
        return run(grpc_client, tokens(grpc_client, "token-streamer", 50, 0.01, id=id))

    with ThreadPoolExecutor(len(ids)) as pool:
        results = dict(zip(ids, pool.map(one, ids), strict=True))
    for id, (replies, error) in results.items():
        assert error is None, f"{id}: the stream ended with {describe(error)}"
        assert {r.id for _, r in replies} == {id}, f"{id}: responses of other streams"
        assert [text(r) for _, r in replies] == [f"token-{i}" for i in range(50)], id


# -- failures --
def test_model_error_mid_stream(grpc_client: Client, need, deviation, live) -> None:
    need("fail-mid-stream")
    replies, error = run(grpc_client, tokens(grpc_client, "fail-mid-stream", 2))
    assert [text(r) for _, r in replies] == ["token-0", "token-1"]
    expect_model_error(error, deviation, "a stream whose model raised after 2 responses")
    still_live(grpc_client, live)


def test_unknown_model(grpc_client: Client, deviation, live) -> None:
    replies, error = run(grpc_client, tokens(grpc_client, "no-such-model", 2))
    assert not replies, "responses from a model that does not exist"
    expect_client_error(error, deviation, "ModelStreamInfer on an unknown model")
    still_live(grpc_client, live)


def test_empty_request_stream(grpc_client: Client, deviation, live) -> None:
    """Half-close without a request: nothing to answer. OK with no responses, or a client
    error status (a deviation); INTERNAL/UNKNOWN blame the server for it."""
    replies, error = run(grpc_client)
    assert not replies, "responses to no request"
    if error is not None:
        assert code_of(error) in CLIENT_ERRORS, f"an empty request stream: {describe(error)}"
        deviation(f"an empty request stream ended with {describe(error)}, not OK")
    still_live(grpc_client, live)


# -- cancel and deadline --
def test_client_cancel(grpc_client: Client, http: httpx.Client, need, deviation, live) -> None:
    need("slow-stream")
    call = grpc_client.ModelStreamInfer(iter([tokens(grpc_client, "slow-stream")]), timeout=15)
    assert text(next(call)) == "token-0"
    assert text(next(call)) == "token-1"
    call.cancel()
    still_live(grpc_client, live)
    replies, error = run(grpc_client, tokens(grpc_client, "slow-stream", 3, 0.01))
    assert error is None, f"a new stream after a cancel ended with {describe(error)}"
    assert [text(r) for _, r in replies] == ["token-0", "token-1", "token-2"]
    model_stopped(http, deviation, "the client cancelled")


def test_deadline(grpc_client: Client, http: httpx.Client, need, deviation, live) -> None:
    need("slow-stream")
    replies, error = run(grpc_client, tokens(grpc_client, "slow-stream"), timeout=0.5)
    assert error is not None, f"100 tokens 0.1 s apart within 0.5 s? ({len(replies)} came)"
    assert code_of(error) == grpc.StatusCode.DEADLINE_EXCEEDED, describe(error)
    still_live(grpc_client, live)
    model_stopped(http, deviation, "the deadline passed")
