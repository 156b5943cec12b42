"""The gRPC port's HTTP/2 limits (``grpc/http2.py``), over real sockets: grpcio channels
multiplexing more streams than h2's old default of 100, the configured limit as grpcio
sees it (calls wait, none is cut) and as a client that ignores it sees it (that stream
refused alone, the connection goes on), and the windows the server opens."""

from __future__ import annotations

import contextlib
import gc
import socket
import threading
import time
import uuid
from typing import Any

import grpc
import grpclib.protocol
import h2.config
import h2.connection
import h2.events
import h2.settings
import trio
from h2.errors import ErrorCodes

from streamwise.grpc import http2
from streamwise.grpc.convert import request_to_proto
from streamwise.grpc.http2 import RESET_BURST
from streamwise.types import InferenceRequest
from tests.support import TEST_MODELS, StartServer, probe
from tests.support.grpc_stubs import in_thread, load_stubs

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
    """Limit 2, three calls on one channel: two are served (which two is grpcio's
    choice), the third waits in the client; cancelling one lets the third through."""
    info = await start_server(TEST_MODELS, grpc_max_concurrent_streams=2)
    rids = [f"wait-{uuid.uuid4()}" for _ in range(3)]

    def run(stub: Any) -> tuple[list[str], list[str]]:
        calls = [streaming_call(stub, rid) for rid in rids]
        served = [threading.Event() for _ in calls]
        got: list[list[str]] = [[] for _ in calls]

        def read_two(i: int) -> None:
            with contextlib.suppress(grpc.RpcError):  # cancelled at the end
                for _, response in zip(range(2), calls[i], strict=False):
                    got[i].append(response.id)
            served[i].set()

        readers = [threading.Thread(target=read_two, args=(i,)) for i in range(3)]
        for reader in readers:
            reader.start()
        try:
            deadline = time.monotonic() + 30
            while sum(e.is_set() for e in served) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            first = [i for i in range(3) if served[i].is_set()]
            assert len(first) == 2, f"served: {first}"
            (waiting,) = {0, 1, 2} - set(first)
            assert got[waiting] == [] and not served[waiting].wait(0.3)  # held back
            calls[first[0]].cancel()  # a slot frees: the queued call is served
            assert served[waiting].wait(30)
            return got[first[1]], got[waiting]
        finally:
            for call in calls:
                call.cancel()
            for reader in readers:
                reader.join(10)

    other, queued = await in_thread(info, run)
    assert len(set(other)) == 1 and len(other) == 2
    assert len(set(queued)) == 1 and len(queued) == 2 and queued[0] in rids
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
        self.send_headers(stream_id)
        frame = b"\0" + len(message).to_bytes(4, "big") + message
        self.h2.send_data(stream_id, frame, end_stream=True)
        self.flush()

    def send_headers(self, stream_id: int) -> None:
        self.h2.send_headers(
            stream_id,
            [
                (":method", "POST"), (":scheme", "http"), (":path", STREAM_INFER),
                (":authority", "127.0.0.1"), ("content-type", "application/grpc"),
                ("te", "trailers"),
            ],
        )  # fmt: skip

    def rapid_resets(self, count: int, first_id: int = 1) -> None:
        """``count`` streams opened and reset at once (CVE-2023-44487), in one write."""
        for stream_id in range(first_id, first_id + 2 * count, 2):
            self.send_headers(stream_id)
            self.h2.reset_stream(stream_id, ErrorCodes.CANCEL)
        self.flush()

    def read_to_close(self) -> list[Any]:
        """Events until the server closes the connection (fails after 10 s)."""
        while data := self.sock.recv(65536):
            self.events.extend(self.h2.receive_data(data))
        return self.events

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


def goaway_of(events: list[Any]) -> Any:
    (goaway,) = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
    return goaway


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


def live_protocols() -> int:
    """Our protocol objects (one per gRPC connection) alive in this process."""
    return sum(1 for o in gc.get_objects() if type(o) is http2._Protocol)


def grpclib_streams() -> int:
    """grpclib's stream objects alive in this process (the server runs in it)."""
    return sum(1 for o in gc.get_objects() if type(o) is grpclib.protocol.Stream)


async def test_streams_reset_at_once_leave_nothing_behind(start_server: StartServer) -> None:
    """A stream reset before its handler ran used to stay in grpclib's table for the life
    of the connection (~8 KB each). Counted, not timed: the connection stays open, and
    every stream object must be gone once the server has answered a PING sent after the
    resets."""
    info = await start_server(TEST_MODELS)
    gc.collect()
    baseline = grpclib_streams()

    def attack() -> RawClient:
        client = RawClient(info.grpc_port)
        try:
            client.rapid_resets(150)  # within the budget: the connection is kept
            client.h2.ping(b"resets!!")
            client.flush()
            client.read_until(lambda ev: any(isinstance(e, h2.events.PingAckReceived) for e in ev))
        except BaseException:
            client.close()
            raise
        return client

    client = await trio.to_thread.run_sync(attack)
    try:
        with trio.fail_after(10):
            while True:
                gc.collect()
                if grpclib_streams() <= baseline:
                    break
                await trio.sleep(0.05)
        assert not any(isinstance(e, h2.events.ConnectionTerminated) for e in client.events)
    finally:
        client.close()


async def test_rapid_reset_is_answered_with_goaway_enhance_your_calm(
    start_server: StartServer,
) -> None:
    info = await start_server(TEST_MODELS)

    def attack() -> list[Any]:
        client = RawClient(info.grpc_port)
        try:
            client.rapid_resets(RESET_BURST + 100)
            return client.read_to_close()
        finally:
            client.close()

    assert (
        goaway_of(await trio.to_thread.run_sync(attack)).error_code == ErrorCodes.ENHANCE_YOUR_CALM
    )
    # the server goes on serving everyone else
    ready = await in_thread(info, lambda stub: stub.ServerReady(pb2.ServerReadyRequest()).ready)
    assert ready


async def test_an_idle_connection_gets_goaway_and_grpcio_reconnects(
    start_server: StartServer,
) -> None:
    info = await start_server(TEST_MODELS, grpc_max_connection_idle_s=0.3)

    def idle() -> list[Any]:
        client = RawClient(info.grpc_port)  # the preface, then nothing
        try:
            return client.read_to_close()
        finally:
            client.close()

    assert goaway_of(await trio.to_thread.run_sync(idle)).error_code == ErrorCodes.NO_ERROR

    def calls_across_an_idle_close(stub: Any) -> list[bool]:
        ready = [stub.ServerReady(pb2.ServerReadyRequest()).ready]
        time.sleep(0.8)  # the channel's connection is closed meanwhile
        ready.append(stub.ServerReady(pb2.ServerReadyRequest()).ready)
        return ready

    assert await in_thread(info, calls_across_an_idle_close) == [True, True]


async def test_a_connection_with_a_call_open_is_not_idle(start_server: StartServer) -> None:
    info = await start_server(TEST_MODELS, grpc_max_connection_idle_s=0.2)
    rid = f"busy-{uuid.uuid4()}"

    def run(stub: Any) -> bool:
        call = streaming_call(stub, rid)
        next(call), next(call)  # the model's next token is a minute away
        time.sleep(1.0)  # five idle timeouts: the call keeps the connection
        active = call.is_active()
        call.cancel()
        return bool(active)

    assert await in_thread(info, run)
    await wait_for_finallys([rid])


async def test_past_the_connection_cap_new_connections_are_closed_served_ones_go_on(
    start_server: StartServer,
) -> None:
    info = await start_server(TEST_MODELS, grpc_max_connections=2)

    def run() -> tuple[bool, list[bool]]:
        closed = False
        served = [RawClient(info.grpc_port) for _ in range(2)]
        try:
            for client in served:  # both get the server's SETTINGS
                client.read_until(lambda ev: bool(settings_of(ev)))
            for _ in range(30):  # refused: closed at once, and nothing of them kept
                try:
                    extra = RawClient(info.grpc_port)
                except (ConnectionResetError, BrokenPipeError):
                    continue  # reset before its preface was even sent
                try:
                    closed = extra.sock.recv(65536) == b""
                except ConnectionResetError:
                    closed = True
                finally:
                    extra.close()
                assert closed
            alive = []
            for client in served:
                client.h2.ping(b"still ok")
                client.flush()
                client.read_until(
                    lambda ev: any(isinstance(e, h2.events.PingAckReceived) for e in ev)
                )
                alive.append(True)
            return closed, alive
        finally:
            for client in served:
                client.close()

    assert await trio.to_thread.run_sync(run) == (True, [True, True])
    gc.collect()
    # grpclib forgets closed connections every tenth new one: not 30 kept
    assert live_protocols() <= 2 + 10


async def test_an_aged_connection_finishes_its_calls_refuses_new_ones_then_closes(
    start_server: StartServer,
) -> None:
    info = await start_server(TEST_MODELS, grpc_max_connection_age_s=1.0)
    rids = {1: f"aged-{uuid.uuid4()}", 3: f"late-{uuid.uuid4()}"}

    def run() -> tuple[Any, list[Any], bool]:
        client = RawClient(info.grpc_port)
        try:
            client.open_call(1, rids[1])
            client.read_until(
                lambda ev: sum(isinstance(e, h2.events.DataReceived) for e in ev) >= 1
            )
            events = client.read_until(
                lambda ev: any(isinstance(e, h2.events.ConnectionTerminated) for e in ev)
            )
            goaway = goaway_of(events)
            # h2 on this side would not open a stream after a GOAWAY: send one anyway
            client.h2.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN
            client.open_call(3, rids[3])
            client.read_until(lambda ev: any(isinstance(e, h2.events.StreamReset) for e in ev))
            # the aged call is still open: the server neither ended nor reset it
            still_open = not any(
                isinstance(e, h2.events.StreamEnded | h2.events.StreamReset) and e.stream_id == 1
                for e in client.events
            )
            client.h2.reset_stream(1, ErrorCodes.CANCEL)  # its last call ends
            client.flush()
            while client.sock.recv(65536):  # then the server closes the connection
                pass
            return goaway, client.events, still_open
        finally:
            client.close()

    goaway, events, still_open = await trio.to_thread.run_sync(run)
    assert (goaway.error_code, goaway.last_stream_id) == (ErrorCodes.NO_ERROR, 1)
    (refusal,) = [e for e in events if isinstance(e, h2.events.StreamReset)]
    assert (refusal.stream_id, refusal.error_code) == (3, ErrorCodes.REFUSED_STREAM)
    assert still_open
    await wait_for_finallys([rids[1]])  # the aged call ran until its client cancelled it
    assert rids[3] not in probe.finally_at


async def test_an_aged_connection_is_closed_under_its_calls_after_the_grace(
    start_server: StartServer,
) -> None:
    info = await start_server(
        TEST_MODELS, grpc_max_connection_age_s=1.0, grpc_max_connection_age_grace_s=0.5
    )
    rid = f"grace-{uuid.uuid4()}"

    def run() -> tuple[Any, float]:
        client = RawClient(info.grpc_port)
        try:
            client.open_call(1, rid)
            events = client.read_until(
                lambda ev: any(isinstance(e, h2.events.ConnectionTerminated) for e in ev)
            )
            aged = time.monotonic()
            while client.sock.recv(65536):  # closed by the server (10 s timeout)
                pass
            return goaway_of(events), time.monotonic() - aged
        finally:
            client.close()

    goaway, grace = await trio.to_thread.run_sync(run)
    assert goaway.error_code == ErrorCodes.NO_ERROR
    assert grace >= 0.4  # the call had its grace (a timer never fires early) before the close
    await wait_for_finallys([rid])  # the call was cancelled with its connection


async def test_cancelling_streams_being_answered_spends_no_reset_budget(
    start_server: StartServer,
) -> None:
    """Users stopping generations is not an attack: twice the burst of streams, each
    answered, all reset at once; the connection goes on."""
    info = await start_server(TEST_MODELS)
    ids = list(range(1, 4 * RESET_BURST, 2))
    rids = {sid: f"stop-{sid}-{uuid.uuid4()}" for sid in ids}

    def run() -> list[Any]:
        client = RawClient(info.grpc_port)
        try:
            for sid in ids:
                client.open_call(sid, rids[sid])
            answered = set()

            def all_answered(events: list[Any]) -> bool:
                answered.update(
                    e.stream_id for e in events if isinstance(e, h2.events.DataReceived)
                )
                return len(answered) == len(ids)

            client.read_until(all_answered)
            for sid in ids:
                client.h2.reset_stream(sid, ErrorCodes.CANCEL)
            client.h2.ping(b"still ok")
            client.flush()
            return client.read_until(
                lambda ev: any(isinstance(e, h2.events.PingAckReceived) for e in ev)
            )
        finally:
            client.close()

    events = await trio.to_thread.run_sync(run)
    assert not any(isinstance(e, h2.events.ConnectionTerminated) for e in events)
    await wait_for_finallys(list(rids.values()))


async def test_a_peer_that_stops_answering_pings_is_dropped_and_its_model_cancelled(
    start_server: StartServer,
) -> None:
    """Keepalive: a client gone without a word (here: it stops reading, so it answers no
    PING) in the middle of a slow stream; the server's ping goes unanswered, the
    connection is closed and the model cancelled, long before its next token."""
    info = await start_server(TEST_MODELS, grpc_keepalive_time_s=0.2, grpc_keepalive_timeout_s=0.3)
    rid = f"gone-{uuid.uuid4()}"

    def open_and_fall_silent() -> RawClient:
        client = RawClient(info.grpc_port)
        client.open_call(1, rid)
        client.read_until(
            lambda ev: (
                sum(isinstance(e, h2.events.DataReceived) for e in ev) >= 2
                or any(isinstance(e, h2.events.DataReceived) and len(e.data) > 200 for e in ev)
            )
        )
        return client  # and reads nothing more

    client = await trio.to_thread.run_sync(open_and_fall_silent)
    try:
        await wait_for_finallys([rid])  # within 20 s; the model's next token is 60 s away
    finally:
        client.close()


async def test_a_connection_lost_with_calls_open_is_let_go(start_server: StartServer) -> None:
    """Its calls, cancelled as it goes, end after it has gone: they must not start its
    idle timer again (that kept every such connection for the idle timeout)."""
    info = await start_server(TEST_MODELS)
    gc.collect()
    baseline = live_protocols()
    rids = [f"lost-{uuid.uuid4()}" for _ in range(3)]

    def open_and_drop() -> None:
        client = RawClient(info.grpc_port)
        try:
            for sid, rid in zip((1, 3, 5), rids, strict=True):
                client.open_call(sid, rid)
            client.read_until(
                lambda ev: (
                    {e.stream_id for e in ev if isinstance(e, h2.events.DataReceived)} == {1, 3, 5}
                )
            )
        finally:
            client.close()  # gone, its three calls open

    await trio.to_thread.run_sync(open_and_drop)
    await wait_for_finallys(rids)
    with trio.fail_after(10):
        while True:
            gc.collect()
            if live_protocols() <= baseline:
                break
            await trio.sleep(0.05)
