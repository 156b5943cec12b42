"""Guards around Hypercorn's per-connection task (Hypercorn 0.18, trio).

**Errors escaping a connection.**
Found by fuzzing (tests/test_fuzz_slice.py; regression test in tests/test_limits.py): a
client that closes its side mid-body, after the server answered without reading the
body, makes Hypercorn's own error response race the app's on the same socket; the
``trio.BusyResourceError`` (h11's protocol errors, an ``OSError`` such as ENOTCONN)
escapes the connection task, reaches Hypercorn's server nursery and ends ``serve()``.
One broken connection must never stop the server: any ``Exception`` escaping a
connection task now ends that connection only, logged (DEBUG for the known protocol
errors, WARNING with the traceback for anything else). ``Cancelled`` is a
``BaseException`` and passes through untouched.

**The idle timer.** Hypercorn closes a keep-alive connection idle for
``keep_alive_timeout``. Its timer (``TrioSingleTask``) is a task started by whoever
reports the connection idle and cancelled when a request arrives: a new task, a
``nursery.start`` and a cancellation for every request, ~15% of a unary request's CPU by
profile. It also died at once when the app's task reported idle, as Quart-Trio ends the
request by cancelling its nursery (trio does not move a task whose starter is cancelled
into its nursery), so a connection idle after its first request stayed open for ever.
``_KeepAliveTimer`` stands in for it: one task per connection, started once
(``start_soon``, which a cancelled caller cannot lose), whose cancel scope's deadline
moves, to ``keep_alive_timeout`` from now when the connection goes idle, to never when a
request arrives. It closes the connection when idle and the deadline passes, when the
server stops (at once if idle, else once the request in flight is answered), and when the
client's side ended while idle; its task ends with the connection's reads, so it never
holds the connection open (tests/test_rest_api.py, tests/test_shutdown.py).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import h11
import trio
from hypercorn.trio.tcp_server import TCPServer

log = logging.getLogger(__name__)

_CONNECTION_ERRORS = (trio.BusyResourceError, h11.RemoteProtocolError, h11.LocalProtocolError)


def install() -> None:
    if getattr(TCPServer.run, "_streamwise_guarded", False):
        return
    original = TCPServer.run

    async def run(self: Any) -> None:
        try:
            await original(self)
        except* _CONNECTION_ERRORS as group:
            log.debug("connection ended by a protocol error: %r", group.exceptions)
        except* Exception as group:
            log.warning("connection ended by an error", exc_info=group)

    run._streamwise_guarded = True  # type: ignore[attr-defined]
    TCPServer.run = run  # type: ignore[method-assign]

    init, read_data = TCPServer.__init__, TCPServer._read_data

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.idle_task = _KeepAliveTimer(self)

    async def _read_data(self: Any) -> None:
        try:
            await read_data(self)
        finally:
            self.idle_task.reads_ended()

    TCPServer.__init__ = __init__  # type: ignore[method-assign]
    TCPServer._read_data = _read_data  # type: ignore[method-assign]


class _KeepAliveTimer:
    """A connection's idle timer, in place of Hypercorn's ``TrioSingleTask`` (its
    ``restart`` and ``stop`` are what ``TCPServer`` calls): see the module's docstring."""

    def __init__(self, server: TCPServer) -> None:
        self._server = server
        self._scope: trio.CancelScope | None = None  # the running timer's
        self._idle = False
        self._reads_ended = False

    async def restart(self, task_group: Any, action: Any) -> None:
        """The connection is idle (``action``, Hypercorn's timer body, is not needed)."""
        self._idle = True
        if self._scope is None:
            self._scope = trio.CancelScope()
            task_group._nursery.start_soon(self._run, self._scope)
        self._scope.deadline = trio.current_time() + self._server.config.keep_alive_timeout
        if self._reads_ended or self._server.context.terminated.is_set():
            self._scope.cancel()

    async def stop(self) -> None:
        """A request arrived: the connection is busy until the next ``restart``."""
        self._idle = False
        if self._scope is not None:
            self._scope.deadline = math.inf

    def reads_ended(self) -> None:
        self._reads_ended = True
        if self._scope is not None:
            self._scope.cancel()

    async def _run(self, scope: trio.CancelScope) -> None:
        with scope:
            await self._server.context.terminated.wait()
            while not self._idle:  # the server stops: close once the request is answered
                await trio.sleep_forever()
        if self._scope is scope:
            self._scope = None
        if self._idle:  # not when a request arrived as the deadline passed
            with trio.CancelScope(shield=True):
                await self._server._initiate_server_close()
