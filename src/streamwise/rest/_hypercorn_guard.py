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
``_KeepAliveTimer`` stands in for it: while the connection is idle, one task sleeping in
a cancel scope whose deadline is ``keep_alive_timeout`` away, started with ``start_soon``
(no round trip, no lock, and a cancelled caller cannot lose it); a request cancels it.
It closes the connection when idle and the deadline passes, when the server stops (at
once if idle, else when the request in flight is answered and the connection would go
idle), and when the client's side ended while idle (at once, where Hypercorn's waited for
the timeout). By profile it is ~5% of a unary request where Hypercorn's was ~15%. One
task for the connection's whole life, its deadline moved, cost ~1.6%, but kept ~3 KiB per
busy connection alive (a trio task), +7% RSS per open stream with 1000 streams held: the
streams won (tests/test_rest_api.py, tests/test_shutdown.py; docs/performance.md).
"""

from __future__ import annotations

import logging
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
        self._scope: trio.CancelScope | None = None  # the running timer's, while idle
        self._reads_ended = False

    async def restart(self, task_group: Any, action: Any) -> None:
        """The connection is idle (``action``, Hypercorn's timer body, is not needed)."""
        if self._scope is not None:
            self._scope.cancel()
        deadline = trio.current_time() + self._server.config.keep_alive_timeout
        self._scope = scope = trio.CancelScope(deadline=deadline)
        if self._reads_ended or self._server.context.terminated.is_set():
            scope.cancel()
        task_group._nursery.start_soon(self._run, scope)

    async def stop(self) -> None:
        """A request arrived: no timer until the next ``restart``."""
        if self._scope is not None:
            self._scope.cancel()
            self._scope = None

    def reads_ended(self) -> None:
        self._reads_ended = True
        if self._scope is not None:
            self._scope.cancel()

    async def _run(self, scope: trio.CancelScope) -> None:
        with scope:
            await self._server.context.terminated.wait()
        if scope is not self._scope:
            return  # stopped (a request arrived) or restarted
        self._scope = None
        with trio.CancelScope(shield=True):
            await self._server._initiate_server_close()
