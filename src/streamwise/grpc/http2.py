"""The gRPC port's HTTP/2 limits and protections, set below grpclib.

grpclib keeps h2's defaults, which do not fit a streaming server: at most 100 concurrent
streams per connection (a grpcio channel that multiplexes 1,000 streams is served 100 at a
time; the rest wait in the client), and a client that opens one stream too many loses the
whole connection (h2 answers with GOAWAY PROTOCOL_ERROR). Here:

- the limit is ``Settings.grpc_max_concurrent_streams``: None (the default) advertises no
  limit, as grpcio, grpc-go and Triton do; a number is advertised in SETTINGS;
- a stream past the advertised limit is refused alone, with RST_STREAM REFUSED_STREAM
  (RFC 9113 5.1.2: the request was not processed, a client may retry it); the
  connection and its other streams go on;
- the connection's receive window is 16 times a stream's (grpc-go's ratio), so one
  stream whose messages are not read yet cannot use up the window of every other stream
  on its connection;
- what the connection's streams write in one iteration of the loop goes out as one
  socket write (grpclib writes every frame at once: with a thousand streams on a
  channel, a system call and a TCP segment per token of each);
- h2 counts a connection's open streams by walking all of them at every new stream (and
  drops the closed ones as it goes): with no limit to check, that walk is done once per
  :data:`PURGE_EVERY` new streams instead (10,000 streams on one connection would
  otherwise cost 50 million steps to open);
- a stream reset before its handler ran leaves nothing behind: grpclib releases a stream
  in its handler's ``finally``, which a handler cancelled before its first step never
  reaches (each such stream kept ~8 KB: its buffer, queue and events, for the life of the
  connection);
- resets have a budget per connection (CVE-2023-44487, "rapid reset": open a stream and
  reset it at once, over and over): :data:`RESET_BURST` resets, refilled at
  :data:`RESETS_PER_S` a second, counting the streams reset before the server answered
  anything and the streams the server refuses (a client cancelling calls it is being
  answered on spends nothing). Past it the
  connection gets GOAWAY ENHANCE_YOUR_CALM and is closed;
- a connection without a call for ``grpc_max_connection_idle_s`` gets GOAWAY NO_ERROR and
  is closed (gRPC's MAX_CONNECTION_IDLE: grpcio reconnects at its next call), and past
  ``grpc_max_connections`` open connections a new one is closed at once, the served ones
  untouched;
- with ``grpc_max_connection_age_s``, a connection that old gets a graceful GOAWAY (its
  open calls go on, for at most ``grpc_max_connection_age_grace_s``; newer streams are
  refused) and closes once they have ended (gRPC's MAX_CONNECTION_AGE).

Uses h2 and grpclib internals, checked against h2 4.x and grpclib 0.4.9
(``tests/test_grpc_http2.py`` drives both over real sockets).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

from grpclib.config import Configuration
from grpclib.protocol import Connection, EventsProcessor, H2Protocol, _set_nodelay
from grpclib.server import Handler
from h2.config import H2Configuration
from h2.connection import H2Connection, _decode_headers
from h2.errors import ErrorCodes
from h2.exceptions import (
    DenialOfServiceError,
    ProtocolError,
    StreamIDTooLowError,
    TooManyStreamsError,
)
from h2.settings import SettingCodes, Settings
from h2.stream import StreamClosedBy
from hyperframe.frame import Frame, GoAwayFrame, HeadersFrame, RstStreamFrame

__all__ = ["STREAM_WINDOW_BYTES", "CONNECTION_WINDOW_BYTES", "Http2Limits", "connection_for"]

PURGE_EVERY = 64
RESET_BURST = 200
RESETS_PER_S = 100.0
"""A client's resets of streams not answered yet (its RST_STREAM frames, and the streams
refused past the stream limit): a burst of this many, then this many a second. A grpcio
client cancels a call with a reset: one cancelling more than 100 calls a second, each
before any answer, for long on one connection, is cut too."""

STREAM_WINDOW_BYTES = 4 * 1024 * 1024
"""A stream's receive window: grpclib's and grpcio's default."""
CONNECTION_WINDOW_BYTES = 16 * STREAM_WINDOW_BYTES


class Http2Limits:
    """What every connection of the gRPC port is given, and the connections open now."""

    def __init__(
        self,
        max_concurrent_streams: int | None = None,
        max_connections: int | None = None,
        max_connection_idle_s: float | None = None,
        max_connection_age_s: float | None = None,
        max_connection_age_grace_s: float | None = None,
    ) -> None:
        self.max_concurrent_streams = max_concurrent_streams
        self.max_connections = max_connections
        self.max_connection_idle_s = max_connection_idle_s
        self.max_connection_age_s = max_connection_age_s
        self.max_connection_age_grace_s = max_connection_age_grace_s
        self.connections: set[_Protocol] = set()


class _Connection(H2Connection):
    """h2's server connection with our stream limit, refusing a stream past it alone."""

    def __init__(self, config: H2Configuration, limits: Http2Limits) -> None:
        super().__init__(config=config)
        values = {
            SettingCodes.MAX_HEADER_LIST_SIZE: self.DEFAULT_MAX_HEADER_LIST_SIZE,
            SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW_BYTES,
        }
        if limits.max_concurrent_streams is not None:
            values[SettingCodes.MAX_CONCURRENT_STREAMS] = limits.max_concurrent_streams
        # h2's initial values but its limit of 100 streams (absent, h2 neither enforces
        # nor advertises one), with our stream window: all sent in the first SETTINGS
        self.local_settings = Settings(client=False, initial_values=values)
        self._unlimited = limits.max_concurrent_streams is None
        self._new_streams = 0
        self._resets = float(RESET_BURST)
        self._resets_at = time.monotonic()
        self.last_stream_served: int | None = None
        """Set by :meth:`goaway_gracefully`: newer streams are refused."""

    def goaway_gracefully(self, reason: bytes) -> None:
        """GOAWAY NO_ERROR naming the last stream served: the streams open go on, newer
        ones are refused. Written by hand: h2 closes the whole connection with its GOAWAY
        (no more frames on any stream)."""
        goaway = GoAwayFrame(0)
        goaway.last_stream_id = self.last_stream_served = self.highest_inbound_stream_id
        goaway.error_code = ErrorCodes.NO_ERROR
        goaway.additional_data = reason
        self._prepare_for_sending([goaway])

    def _reset_spent(self) -> None:
        """One more of the client's resets; :class:`DenialOfServiceError` (h2 answers it
        with GOAWAY ENHANCE_YOUR_CALM) once the budget is gone."""
        now = time.monotonic()
        self._resets = min(RESET_BURST, self._resets + (now - self._resets_at) * RESETS_PER_S)
        self._resets_at = now
        self._resets -= 1
        if self._resets < 0:
            raise DenialOfServiceError("too many streams reset on this connection")

    def _receive_rst_stream_frame(self, frame: RstStreamFrame) -> tuple[list[Frame], list[Any]]:
        stream = self.streams.get(frame.stream_id)
        if stream is None or not stream.state_machine.headers_sent:
            # reset before the server answered anything: the rapid-reset pattern. A client
            # cancelling a stream it is being answered on (a user stopping a generation)
            # spends nothing.
            self._reset_spent()
        return cast(tuple[list[Frame], list[Any]], super()._receive_rst_stream_frame(frame))

    @property
    def open_inbound_streams(self) -> int:
        """h2 asks at every new stream, to check the limit. Without one, the answer does
        not matter but for the walk's other job, dropping closed streams: done once per
        :data:`PURGE_EVERY` new streams."""
        if self._unlimited:
            self._new_streams += 1
            if self._new_streams % PURGE_EVERY:
                return 0
        return super().open_inbound_streams

    def initiate_connection(self) -> None:
        super().initiate_connection()
        # the connection's window is not SETTINGS' business: it opens by WINDOW_UPDATE
        opened = CONNECTION_WINDOW_BYTES - self.inbound_flow_control_window
        self.increment_flow_control_window(opened)

    def _receive_headers_frame(self, frame: HeadersFrame) -> tuple[list[Frame], list[Any]]:
        last = self.last_stream_served
        if last is not None and frame.stream_id > last and frame.stream_id not in self.streams:
            return self._refuse(frame, charged=False)  # opened after our GOAWAY: not abuse
        try:
            return cast(tuple[list[Frame], list[Any]], super()._receive_headers_frame(frame))
        except TooManyStreamsError:
            return self._refuse(frame)

    def _refuse(self, frame: HeadersFrame, charged: bool = True) -> tuple[list[Frame], list[Any]]:
        stream_id = frame.stream_id
        # decoded all the same: HPACK's table is shared by every stream of the connection
        _decode_headers(self.decoder, frame.data)
        if charged:
            self._reset_spent()
        if stream_id <= self.highest_inbound_stream_id:
            # not a new stream (trailers on one gone): what h2 does below its limit
            raise StreamIDTooLowError(stream_id, self.highest_inbound_stream_id)
        if stream_id % 2 == 0:
            raise ProtocolError("Invalid stream ID for peer.")
        self.highest_inbound_stream_id = stream_id
        # later frames of this stream get h2's answer to a stream it reset (RST_STREAM
        # STREAM_CLOSED; DATA still credited back to the connection's window)
        self._closed_streams[stream_id] = StreamClosedBy.SEND_RST_STREAM
        refusal = RstStreamFrame(stream_id)
        refusal.error_code = ErrorCodes.REFUSED_STREAM
        return [refusal], []


class _Coalescing:
    """A connection's transport whose writes of one loop iteration are joined into one.

    The join is written by a callback of the next iteration, which the bridge's loop runs
    in the same turn (it turns while callbacks are ready): no added wait."""

    __slots__ = ("_transport", "_pending", "_loop")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._pending: list[bytes] = []
        self._loop = asyncio.get_running_loop()

    def write(self, data: bytes) -> None:
        if data:
            if not self._pending:
                self._loop.call_soon(self._flush)
            self._pending.append(data)

    def _flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self._flush()  # what was written before close() goes first, as with a transport
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _GrpclibConnection(Connection):
    """grpclib's connection, which sends what h2 still has to say before it closes (a
    GOAWAY: grpclib closes the transport after a protocol error without flushing it)."""

    def close(self) -> None:
        if not self.is_closing():
            self.flush()
        super().close()


class _Handler(Handler):
    """grpclib's per-connection handler, which lets go of a call as soon as its task has
    ended: its stream released also when the task was cancelled (a client's reset) before
    it ran, and the task dropped at once (grpclib keeps ended tasks, with their stream,
    until it next tidies up, ten calls later on that connection, or never)."""

    protocol: _Protocol | None = None

    def accept(self, stream: Any, headers: Any, release_stream: Any) -> None:
        if self.protocol is not None:
            self.protocol.touch()
        for name, value in headers:
            if name == "grpc-encoding":  # the call's compressed messages: grpc/codec.recv
                stream.grpc_encoding = value
        released = False

        def release_once() -> None:
            nonlocal released
            if not released:
                released = True
                release_stream()

        super().accept(stream, headers, release_once)

        def ended(task: Any) -> None:
            release_once()
            if self.protocol is not None:
                self.protocol.touch()
            if self._tasks.get(stream) is task:
                del self._tasks[stream]
            self._cancelled.discard(task)
            if not task.cancelled():
                task.exception()  # retrieved: asyncio does not keep it to complain

        self._tasks[stream].add_done_callback(ended)


class _Protocol(H2Protocol):
    """grpclib's protocol, its connection made with ``_Connection``; refused at once past
    ``max_connections``, and closed (GOAWAY NO_ERROR) after ``max_connection_idle_s``
    without a call."""

    def __init__(
        self, handler: Any, config: Configuration, h2_config: H2Configuration, limits: Http2Limits
    ) -> None:
        super().__init__(handler, config, h2_config)
        self._limits = limits
        self._transport: Any = None
        self._last_active = time.monotonic()
        self._idle_timer: asyncio.TimerHandle | None = None
        self._age_timer: asyncio.TimerHandle | None = None
        self._closing_when_idle = False
        self._lost = False

    def connection_made(self, transport: Any) -> None:
        limits = self._limits
        if limits.max_connections is not None and len(limits.connections) >= limits.max_connections:
            transport.abort()  # served connections go on; this one is told by its reset
            self.handler.close()  # nothing to cancel: lets grpclib's server forget it
            return
        limits.connections.add(self)
        self._transport = transport
        # grpclib's connection_made (0.4.9) but for the h2 connection, which sets its
        # windows itself
        sock = transport.get_extra_info("socket")
        if sock is not None:
            _set_nodelay(sock)
        h2_conn = _Connection(self.h2_config, limits)
        h2_conn.initiate_connection()
        self.connection = _GrpclibConnection(
            h2_conn, cast(Any, _Coalescing(transport)), config=self.config
        )
        self.connection.flush()
        self.connection.initialize()
        self.processor = EventsProcessor(self.handler, self.connection)
        self.touch()
        if limits.max_connection_age_s is not None:
            self._age_timer = asyncio.get_running_loop().call_later(
                limits.max_connection_age_s, self._aged
            )

    def data_received(self, data: bytes) -> None:
        if self._transport is not None:
            super().data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._transport is None:
            return  # refused: nothing was set up
        self._limits.connections.discard(self)
        self._lost = True  # the calls it cancels below must not start a timer again
        cast(_Handler, self.handler).protocol = None  # grpclib's server keeps it a while
        for timer in (self._idle_timer, self._age_timer):
            if timer is not None:
                timer.cancel()
        self._idle_timer = self._age_timer = None
        super().connection_lost(exc)

    # -- the idle timeout --
    def touch(self) -> None:
        """A call started or ended: the connection is not idle since now."""
        if self._lost:
            return
        if self._closing_when_idle and not self.processor.streams:
            self.connection.close()  # aged, and its last call has ended
            return
        self._last_active = time.monotonic()
        idle_s = self._limits.max_connection_idle_s
        if idle_s is not None and self._idle_timer is None and self._transport is not None:
            self._idle_timer = asyncio.get_running_loop().call_later(idle_s, self._idle_check)

    def _idle_check(self) -> None:
        self._idle_timer = None
        idle_s = self._limits.max_connection_idle_s
        if self._lost or idle_s is None or self.processor.streams:
            return  # busy: the end of its last call starts the timer again
        left = self._last_active + idle_s - time.monotonic()
        if left > 0:
            self._idle_timer = asyncio.get_running_loop().call_later(left, self._idle_check)
            return
        h2_conn = self.connection._connection
        h2_conn.close_connection(ErrorCodes.NO_ERROR, additional_data=b"idle")
        self.connection.close()  # flushes the GOAWAY first

    # -- the maximum age --
    def _aged(self) -> None:
        """``max_connection_age_s`` has passed: GOAWAY, the calls open finish (for at most
        ``max_connection_age_grace_s``), then the connection closes. Clients open a new
        one for their next calls: long-lived channels spread over new server replicas."""
        self._age_timer = None
        if self._lost or self.connection.is_closing():
            return
        h2_conn = cast(_Connection, self.connection._connection)
        h2_conn.goaway_gracefully(b"max age")
        self.connection.flush()
        self._closing_when_idle = True
        if not self.processor.streams:
            self.connection.close()
        elif (grace := self._limits.max_connection_age_grace_s) is not None:
            self._age_timer = asyncio.get_running_loop().call_later(grace, self.connection.close)


def connection_for(server: Any, limits: Http2Limits) -> H2Protocol:
    """What grpclib's ``Server._protocol_factory`` (0.4.9) makes for a new connection,
    with our handler, connection and limits."""
    server.__gc_step__()
    handler = _Handler(
        server._mapping, server._codec, server._status_details_codec, server.__dispatch__
    )
    server._handlers.add(handler)
    protocol = _Protocol(handler, server._config, server._h2_config, limits)
    handler.protocol = protocol
    return protocol
