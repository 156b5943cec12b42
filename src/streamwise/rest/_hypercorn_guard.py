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
``keep_alive_timeout``; its timer is a task started (``nursery.start``) by whoever reports
the connection idle. After a response, that is the app's task, as Quart-Trio ends the
request by cancelling its nursery: trio does not move a task whose starter is cancelled
into its nursery, so the timer died at once and a connection idle after its first
request stayed open for ever (file descriptors for every client that keeps its
connections). Starting the timer shielded from the caller's cancellation fixes it
(tests/test_rest_api.py::test_idle_keep_alive_connections_are_closed).
"""

from __future__ import annotations

import logging
from typing import Any

import h11
import trio
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import TrioSingleTask

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

    restart = TrioSingleTask.restart

    async def restart_shielded(self: Any, task_group: Any, action: Any) -> None:
        with trio.CancelScope(shield=True):  # returns once the task has started: at once
            await restart(self, task_group, action)

    TrioSingleTask.restart = restart_shielded  # type: ignore[method-assign]
