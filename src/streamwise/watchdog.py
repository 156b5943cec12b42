"""The event loop watchdog: notices when the trio thread stops running tasks, because some
code (typically a model) called something blocking on it, and logs where it is stuck.

A task on the loop beats a few times a second; a thread watches the beats. When none came
for ``threshold`` seconds, the thread logs a warning with the loop thread's stack (the
blocking call is on it), and once the loop runs again, for how long it was blocked. Every
request of every model waits while the loop is blocked: blocking code belongs in a thread
(``trio.to_thread.run_sync``, ``asyncio.to_thread``; docs/reliability.md).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import traceback

import trio

__all__ = ["run"]

log = logging.getLogger(__name__)

STACK_FRAMES = 12


def _stack_of(thread_id: int) -> str:
    frame = sys._current_frames().get(thread_id)
    if frame is None:
        return "(no stack)"
    return "".join(traceback.format_stack(frame, limit=STACK_FRAMES))


async def run(
    threshold: float, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Watch the loop this runs on until cancelled."""
    interval = min(threshold / 4, 0.25)
    loop_thread = threading.get_ident()
    last_beat = time.monotonic()
    stop = threading.Event()

    def watch() -> None:
        blocked_since: float | None = None
        while not stop.wait(interval):
            beat = last_beat
            silent = time.monotonic() - beat
            if silent >= threshold and blocked_since != beat:
                blocked_since = beat
                log.warning(
                    "event loop blocked for %.1f s (event_loop_watchdog_s=%g): code is "
                    "running on the loop without yielding, and every request waits. Run "
                    "blocking code in a thread (trio.to_thread.run_sync, asyncio.to_thread). "
                    "The loop is here:\n%s",
                    silent,
                    threshold,
                    _stack_of(loop_thread),
                )
            elif blocked_since is not None and beat != blocked_since:
                log.warning("event loop running again after %.1f s", beat - blocked_since)
                blocked_since = None

    thread = threading.Thread(target=watch, name="streamwise-watchdog", daemon=True)
    thread.start()
    try:
        task_status.started()
        while True:
            last_beat = time.monotonic()
            await trio.sleep(interval)
    finally:
        stop.set()
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(thread.join)
