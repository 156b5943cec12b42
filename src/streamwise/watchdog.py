"""The event loop watchdog: notices when a loop stops running tasks, because some code
(typically a model) called something blocking on it, and logs where it is stuck.

Each loop (trio's, and the asyncio loop's when it runs) has a task that beats a few times
a second; a thread watches the beats. When none came from a loop for ``threshold``
seconds, the thread logs a warning with that loop thread's stack (the blocking call is on
it), and once the loop runs again, for how long it was blocked. While the trio loop is
blocked every request waits; while the asyncio loop is, every asyncio model and gRPC.
Blocking code belongs in a thread (``trio.to_thread.run_sync``, ``asyncio.to_thread``;
docs/reliability.md).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field

import trio

from ._bridge import AsyncioLoop, every

__all__ = ["run"]

log = logging.getLogger(__name__)

STACK_FRAMES = 12


def _stack_of(thread_id: int | None) -> str:
    frame = sys._current_frames().get(thread_id) if thread_id is not None else None
    if frame is None:
        return "(no stack)"
    return "".join(traceback.format_stack(frame, limit=STACK_FRAMES))


@dataclass(eq=False)
class _Loop:
    name: str
    thread_id: int | None
    last_beat: float = field(default_factory=time.monotonic)
    blocked_since: float | None = None

    def beat(self) -> None:
        self.last_beat = time.monotonic()

    def check(self, threshold: float) -> None:
        """From the watching thread."""
        beat = self.last_beat
        silent = time.monotonic() - beat
        if silent >= threshold and self.blocked_since != beat:
            self.blocked_since = beat
            log.warning(
                "%s blocked for %.1f s (event_loop_watchdog_s=%g): code is running on the "
                "loop without yielding, and everything on it waits. Run blocking code in a "
                "thread (trio.to_thread.run_sync, asyncio.to_thread). The loop is here:\n%s",
                self.name,
                silent,
                threshold,
                _stack_of(self.thread_id),
            )
        elif self.blocked_since is not None and beat != self.blocked_since:
            log.warning("%s running again after %.1f s", self.name, beat - self.blocked_since)
            self.blocked_since = None


async def run(
    threshold: float,
    aio: AsyncioLoop | None = None,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Watch the trio loop this runs on (and ``aio``'s) until cancelled."""
    interval = min(threshold / 4, 0.25)
    loops = [_Loop("the trio event loop", threading.get_ident())]
    if aio is not None:
        loops.append(_Loop(f"the asyncio event loop ({aio.kind})", aio.thread.ident))
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(interval):
            for loop in loops:
                loop.check(threshold)

    thread = threading.Thread(target=watch, name="streamwise-watchdog", daemon=True)
    thread.start()
    try:
        async with trio.open_nursery() as nursery:
            if aio is not None:
                nursery.start_soon(aio.run, every, interval, loops[1].beat)
            task_status.started()
            while True:
                loops[0].beat()
                await trio.sleep(interval)
    finally:
        stop.set()
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(thread.join)
