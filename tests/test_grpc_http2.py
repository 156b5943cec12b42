"""The gRPC port's HTTP/2 limits (``grpc/http2.py``), over real sockets: grpcio channels
multiplexing more streams than h2's old default of 100, the configured limit as grpcio
sees it (calls wait, none is cut) and as a client that ignores it sees it (that stream
refused alone, the connection goes on), and the windows the server opens."""

from __future__ import annotations

import socket
import uuid
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import probe
import trio
from conftest import TEST_MODELS, StartServer
from grpc_stubs import in_thread, load_stubs
from h2.errors import ErrorCodes

from streamwise.grpc.convert import request_to_proto
from streamwise.types import InferenceRequest

pb2, pb2_grpc = load_stubs()
MODEL = "slow-stream-aio"  # two tokens at once, then one a minute
STREAM_INFER = "/inference.GRPCInferenceService/ModelStreamInfer"


def request(rid: str) -> bytes:
    body = InferenceRequest.model_validate(
        {"id": rid, "inputs": [{"name": "p", "shape": [1], "datatype": "BYTES", "data": ["x"]}]}
    )
    return bytes(request_to_proto(body, MODEL))


def streaming_call(stub: Any, rid: str) -> Any:
    return stub.ModelStreamInfer(iter([pb2.ModelInferRequest.FromString(request(rid))]), timeout=30)


async def wait_for_finallys(rids: list[str]) -> None:
    with trio.fail_after(20):  # the models' next steps are a minute away
        while not all(rid in probe.finally_at for rid in rids):  # noqa: ASYNC110 - a dict
            await trio.sleep(0.01)
    assert all(probe.cancelled[rid] for rid in rids)


async def test_one_channel_holds_more_streams_than_h2s_old_default(
    start_server: StartServer,
) -> None:
    """300 streams on one grpcio channel are all served at once: each gets its first two
    tokens while every other one is still open (with h2's default of 100, calls 101-300
    would wait in the client for a minute, and fail at their deadline)."""
    info = await start_server(TEST_MODELS)
    rids = [f"many-{uuid.uuid4()}" for _ in range(300)]

    def run(stub: Any) -> list[int]:
        calls = [streaming_call(stub, rid) for rid in rids]
        try:
            return [sum(1 for _, _ in zip(range(2), call, strict=False)) for call in calls]
        finally:
            for call in calls:
                call.cancel()

    assert await in_thread(info, run) == [2] * len(rids)
    await wait_for_finallys(rids)


async def test_past_the_limit_grpcio_calls_wait_and_none_is_cut(
    start_server: StartServer,
) -> None:
    info = await start_server(TEST_MODELS, grpc_max_concurrent_streams=2)
    rids = [f"wait-{uuid.uuid4()}" for _ in range(3)]

    def run(stub: Any) -> list[str]:
        first, second, third = (streaming_call(stub, rid) for rid in rids)
        for call in (first, second):
            next(call), next(call)
        first.cancel()  # a slot frees: the third call, queued by grpcio, is served
        got = [next(third).id, next(third).id]
        second.cancel()
        third.cancel()
        return got

    assert await in_thread(info, run) == [rids[2], rids[2]]
    await wait_for_finallys(rids)


class RawClient:
    """A blocking HTTP/2 client on h2 that sends what it is told, limits or not."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.h2.initiate_connection()
        self.events: list[Any] = []
        self.flush()

    def flush(self) -> None:
        self.sock.sendall(self.h2.data_to_send())

    def open_call(self, stream_id: int, rid: str) -> None:
        message = request(rid)
        self.h2.send_headers(
            stream_id,
            [
                (":method", "POST"), (":scheme", "http"), (":path", STREAM_INFER),
                (":authority", "127.0.0.1"), ("content-type", "application/grpc"),
                ("te", "trailers"),
            ],
        )  # fmt: skip
        frame = b"\0" + len(message).to_bytes(4, "big") + message
        self.h2.send_data(stream_id, frame, end_stream=True)
        self.flush()

    def read_until(self, done: Any) -> list[Any]:
        """Events until ``done(events)``; fails on a closed connection or after 10 s."""
        while not done(self.events):
            data = self.sock.recv(65536)
            assert data, f"connection closed; events: {self.events}"
            for event in self.h2.receive_data(data):
                if isinstance(event, h2.events.DataReceived):
                    self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                self.events.append(event)
            self.flush()
        return self.events

    def close(self) -> None:
        self.sock.close()


def data_on(stream_id: int) -> Any:
    return lambda events: any(
        isinstance(e, h2.events.DataReceived) and e.stream_id == stream_id for e in events
    )


def settings_of(events: list[Any]) -> dict[int, int]:
    changed = [e for e in events if isinstance(e, h2.events.RemoteSettingsChanged)]
    return {code: c.new_value for e in changed for code, c in e.changed_settings.items()}


async def test_a_client_past_the_limit_is_refused_that_stream_alone(
    start_server: StartServer,
) -> None:
    info = await start_server(TEST_MODELS, grpc_max_concurrent_streams=2)
    rids = {sid: f"raw-{sid}-{uuid.uuid4()}" for sid in (1, 3, 5, 7)}

    def run() -> tuple[dict[int, int], list[Any]]:
        client = RawClient(info.grpc_port)
        try:
            # all three sent before the server's SETTINGS are read: h2 on this side
            # does not know the limit yet, so it does not hold the third back
            for sid in (1, 3, 5):
                client.open_call(sid, rids[sid])
            events = client.read_until(
                lambda ev: data_on(1)(ev) and data_on(3)(ev)
                and any(isinstance(e, h2.events.StreamReset) and e.stream_id == 5 for e in ev)
            )  # fmt: skip
            settings = settings_of(events)
            # the connection goes on: a stream that ends frees a slot for a new one
            client.h2.reset_stream(1, ErrorCodes.CANCEL)
            client.open_call(7, rids[7])
            events = client.read_until(data_on(7))
            client.h2.reset_stream(3, ErrorCodes.CANCEL)
            client.h2.reset_stream(7, ErrorCodes.CANCEL)
            client.flush()
            return settings, events
        finally:
            client.close()

    settings, events = await trio.to_thread.run_sync(run)
    codes = h2.settings.SettingCodes
    assert settings[codes.MAX_CONCURRENT_STREAMS] == 2
    (refusal,) = [e for e in events if isinstance(e, h2.events.StreamReset)]
    assert (refusal.stream_id, refusal.error_code) == (5, ErrorCodes.REFUSED_STREAM)
    assert not any(isinstance(e, h2.events.ConnectionTerminated) for e in events)
    # the refused request never reached the model; the others did, and were cancelled
    await wait_for_finallys([rids[1], rids[3], rids[7]])
    assert rids[5] not in probe.finally_at


async def test_the_default_advertises_no_stream_limit_and_opens_wide_windows(
    start_server: StartServer,
) -> None:
    info = await start_server(TEST_MODELS)

    def run() -> tuple[dict[int, int], int]:
        client = RawClient(info.grpc_port)
        try:
            events = client.read_until(
                lambda ev: any(isinstance(e, h2.events.WindowUpdated) for e in ev)
            )
            return settings_of(events), client.h2.outbound_flow_control_window
        finally:
            client.close()

    settings, connection_window = await trio.to_thread.run_sync(run)
    codes = h2.settings.SettingCodes
    assert codes.MAX_CONCURRENT_STREAMS not in settings  # no limit, as grpcio
    assert settings[codes.INITIAL_WINDOW_SIZE] == 4 * 1024 * 1024
    assert connection_window == 64 * 1024 * 1024  # 16 streams' worth
