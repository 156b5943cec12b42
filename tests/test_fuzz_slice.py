"""Hostile input, the fast slice: hypothesis-generated REST bodies, garbage bodies, paths,
methods and headers, raw HTTP/1.1 (lengths that lie, broken chunks), hostile
ModelInferRequests and garbage gRPC messages, against an in-process server of the demo
models. Every answer must be a client error (or a success, for a valid request), never a
server error; afterwards the server must still be live with every model ready.

The strategies and the property live in tests/support/hostile/; scripts/soak_fuzz.py runs the
same targets at 10,000+ cases and watches memory."""

from __future__ import annotations

import collections
import gc
import socket
import sys
from typing import Any

import grpc
import pytest
import trio
import trio.testing
from hypothesis import given, settings

from streamwise import ServerInfo
from tests.support import DEMO, StartServer, hostile, rawhttp
from tests.support.grpc_stubs import code_of, in_thread

EXAMPLES = 150


@pytest.fixture
async def server(start_server: StartServer) -> ServerInfo:
    return await start_server(DEMO, **hostile.SERVER_OVERRIDES)


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return False
    return True


@pytest.mark.parametrize("target", hostile.TARGETS, ids=lambda t: t.name)
async def test_hostile_input_gets_a_client_error(
    server: ServerInfo, target: hostile.Target
) -> None:
    assert server.grpc_port is not None
    clients = hostile.open_clients(server.http_port, server.grpc_port)
    recent: collections.deque[str] = collections.deque(maxlen=3)
    died: list[str] = []

    @settings(max_examples=EXAMPLES, suppress_health_check=hostile.SUPPRESS, deadline=None)
    @given(case=target.strategy)
    def answers_hold(case: object) -> None:
        # A server that died fails every later case, the simplest of which hypothesis then
        # reports: the message names the cases that came just before the death instead.
        assert not died, died[0]
        outcome = hostile.run_case(target, clients, case)
        if outcome.problem is not None and not listening(server.http_port):
            died.append(
                f"{target.name}: the server died, during or just after one of these cases:\n"
                + "\n".join([*recent, repr(case)])
            )
            raise AssertionError(died[0])
        recent.append(repr(case))
        assert outcome.problem is None, f"{target.name}: {outcome.problem}"

    def run() -> list[str]:
        answers_hold()
        return hostile.liveness_problems(clients)

    try:
        assert await trio.to_thread.run_sync(run) == []
    finally:
        hostile.close_clients(clients)


# clients closing mid-body: tests/test_limits.py::test_clients_closing_mid_body_never_stop_the_server


@pytest.mark.parametrize(
    ("second", "code"),
    [
        (b"9", grpc.StatusCode.INVALID_ARGUMENT),  # not a ModelInferRequest
        (b"\x12\x01\xff", grpc.StatusCode.INVALID_ARGUMENT),  # a version not UTF-8
        (
            hostile.pb2.ModelInferRequest(
                model_name="identity", id="x" * 300_000
            ).SerializeToString(),
            grpc.StatusCode.RESOURCE_EXHAUSTED,  # over grpc_max_message_length
        ),
    ],
    ids=["garbage", "bad-utf8", "over-the-limit"],
)
async def test_a_bad_later_message_on_a_stream_is_the_clients_error(
    server: ServerInfo, second: bytes, code: grpc.StatusCode
) -> None:
    """Found by grpc_garbage: a later message of a bidi stream is decoded inside the model's
    request iterator, and what decoding raised came out as INTERNAL "model failed"."""
    first = hostile.pb2.ModelInferRequest(model_name="identity").SerializeToString()

    def run() -> tuple[int, grpc.StatusCode]:
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            call = channel.stream_stream("/inference.GRPCInferenceService/ModelStreamInfer")
            answers = 0
            try:
                for _ in call(iter([first, second]), timeout=10):
                    answers += 1
            except grpc.RpcError as exc:
                return answers, exc.code()
            return answers, grpc.StatusCode.OK

    assert await trio.to_thread.run_sync(run) == (1, code)


async def test_a_stream_the_client_leaves_closes_its_request_iterator(server: ServerInfo) -> None:
    """Found by rest_stream: a client leaving a stream cancels the model mid-iteration of its
    requests; pipeline.single, the one-request async generator, was then left unclosed
    ("ResourceWarning: Async generator ... was garbage collected before it had been
    exhausted", an error under this suite's warning filter)."""
    body = {"inputs": [{"name": "n", "shape": [1], "datatype": "INT64", "data": [10**9]}]}
    unraisable: list[Any] = []  # what finalizers raise (a ResourceWarning is an error here)
    hook, sys.unraisablehook = sys.unraisablehook, unraisable.append
    try:
        for _ in range(20):
            response = await rawhttp.request(
                server.http_port, "POST", "/v2/models/token-streamer/generate_stream", body
            )
            async with response.stream:
                assert response.status == 200
                assert await response.read_chunk()  # the first tokens, then away
        with trio.fail_after(10):  # the models are cancelled: no call in flight
            while server.dataplane.in_flight:  # noqa: ASYNC110 - a count, no event
                await trio.sleep(0.01)
        gc.collect()
        # trio's finalizer hook closes collected async generators in a system task (and
        # would warn there): every task blocked means that task has run
        await trio.testing.wait_all_tasks_blocked()
    finally:
        sys.unraisablehook = hook
    assert not unraisable, [u.exc_value for u in unraisable]


async def test_a_huge_name_is_cut_in_grpc_status_messages(server: ServerInfo) -> None:
    """Found by grpc_infer: a 200 kB model name quoted whole in NOT_FOUND's message became a
    200 kB HTTP/2 trailer, HPACK-encoded in pure Python: the server stalled for ~29 s and
    grpcio refused the metadata. Messages quote client input cut short, and every status
    message is cut to 1000 characters."""
    name = "m" * 200_000

    def run(stub: Any) -> list[tuple[grpc.StatusCode, str]]:
        pb2 = hostile.pb2
        infer = pb2.ModelInferRequest(model_name=name)
        return [
            code_of(lambda: stub.ModelInfer(infer, timeout=10)),
            code_of(lambda: stub.ModelMetadata(pb2.ModelMetadataRequest(name=name), timeout=10)),
            code_of(lambda: list(stub.ModelStreamInfer(iter([infer]), timeout=10))),
        ]

    for code, details in await in_thread(server, run):
        assert code == grpc.StatusCode.NOT_FOUND
        assert details.startswith("model 'mmm") and len(details) < 100, details[:200]


@pytest.mark.parametrize(
    "data",
    [b"9", b"\x0a\x01\xff", b"\xff" * 20],
    ids=["not-a-message", "bad-utf8", "garbage"],
)
async def test_garbage_protobuf_is_invalid_argument(server: ServerInfo, data: bytes) -> None:
    """Found by grpc_garbage: bytes that are no ModelInferRequest were answered UNKNOWN
    (whatever betterproto2's parser raised escaped grpclib's handler)."""

    def run() -> tuple[grpc.StatusCode, str]:
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
            return code_of(lambda: call(data, timeout=10))

    code, details = await trio.to_thread.run_sync(run)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("malformed ModelInferRequest"), details


async def test_token_streamer_takes_a_lone_value_and_refuses_nonsense(server: ServerInfo) -> None:
    """Found by rest_stream: the demo token-streamer crashed ("model failed: TypeError") on
    ``"data": 3``, a lone value validation accepts for a one-element shape. It now reads
    any spelling of one value, and refuses values it cannot use as the client's error."""

    async def stream(n: Any, shape: list[int], delay: Any = None) -> str:
        inputs = [{"name": "n", "shape": shape, "datatype": "INT64", "data": n}]
        if delay is not None:
            inputs.append({"name": "delay_s", "shape": [1], "datatype": "FP64", "data": delay})
        response = await rawhttp.request(
            server.http_port,
            "POST",
            "/v2/models/token-streamer/generate_stream",
            {"inputs": inputs},
        )
        async with response.stream:
            assert response.status == 200
            return (await response.read_body()).decode()

    for n, shape in [(3, [1]), ([3], [1]), ([[3]], [1, 1])]:
        text = await stream(n, shape)
        assert text.count("event: error") == 0 and text.count("data: ") == 3, text
        assert "token-2" in text
    for n, shape, delay, says in [
        (-1, [1], None, "input 'n' must be a count of tokens, got -1"),
        ([1, 2], [2], None, "input 'n' must hold one value, it holds 2"),
        ([], [0], None, "input 'n' must hold one value, it holds 0"),
        (1, [1], -0.5, "input 'delay_s' must be seconds, got -0.5"),
    ]:
        text = await stream(n, shape, delay)
        assert text == f'event: error\ndata: {{"error":"{says}"}}\n\n', text
