"""A native asyncio event loop, run inside the trio run by a trio task, and the two ways
across.

::

    trio task "asyncio loop" (open_loop)            what it runs, in turns
    ────────────────────────────────────            ──────────────────────
    while True:                                     asyncio: every ready callback, I/O
        one turn: loop iterations until nothing       polled without waiting, until the
          is ready or the turn is spent               turn is spent (then trio's tasks)
        nothing ready: park until woken (by
          trio code, or by the task watching the    trio: Hypercorn, the data plane,
          loop's selector), or the next timer       trio models, the transports

``run`` starts an asyncio task from trio and waits for it; ``to_trio`` starts a trio task
(in the portal nursery) from asyncio and waits for it. Both are plain calls in one thread:
no locks, no thread hand-overs, no system calls. MLServer runtimes (asyncio code) and
grpclib run on this loop; while they run, nothing else does, as in MLServer's own single
event loop; each turn is bounded (``MAX_TURN_S``), so that neither loop starves the other.

The loop is asyncio's own (``SelectorEventLoop``), run one iteration at a time with its
documented idiom, ``loop.stop(); loop.run_forever()``, which polls I/O without waiting.
What to wait for between turns is read from its standard internals (``_ready``,
``_scheduled``, ``_selector``; CPython 3.11 to 3.13): ``tests/test_bridge.py`` fails if
they change. uvloop cannot be stepped like this (its next timer is not visible).

Ownership: every asyncio task ``run`` starts is awaited by the trio task that started it,
which does not return (even when cancelled) before the asyncio task has finished, so a
model's ``finally`` has run by then. Trio tasks started from asyncio live in the portal
nursery, inside the ``open_loop`` block, and the asyncio side waits for them likewise.
Leaving the block cancels what is left on both sides and closes the loop.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import outcome
import sniffio
import trio

__all__ = ["AsyncioLoop", "LoopStopped", "open_loop", "CLOSE_TIMEOUT_S", "MAX_TURN_S", "TURN_S"]

log = logging.getLogger(__name__)

T = TypeVar("T")

CLOSE_TIMEOUT_S = 5.0
"""How long a cancelled call on the other side may take to finish (its ``finally``)
before the canceller stops waiting for it (and logs it)."""

TURN_S = 0.001
MAX_TURN_S = 0.010
"""A turn of the asyncio loop, while it has work, lasts as long as trio's tasks took since
its last one, within ``[TURN_S, MAX_TURN_S]``: with both loops busy each gets half the
time, and under load a turn runs each model for several responses, which the transports
then write as one batch; an idle trio gives the asyncio loop short turns (low latency)."""


class LoopStopped(RuntimeError):
    """The call on the other loop ended without a result: cancelled by something else than
    its caller (the loop closing, or its own code)."""


class _Loop(asyncio.SelectorEventLoop):
    """asyncio's loop, knowing how to wake the trio task that runs it. Nothing of
    asyncio's behaviour is changed."""

    wake: Callable[[], None] = staticmethod(lambda: None)


class AsyncioLoop:
    """The asyncio loop inside this trio run, and the two ways across."""

    def __init__(self, loop: _Loop, portal: trio.Nursery) -> None:
        self.loop = loop
        self.portal = portal
        """Where trio tasks started from asyncio (``to_trio``) live."""
        self._parked: trio.lowlevel.Task | None = None
        """The driver, while the loop has nothing to do."""
        self._io_seen = trio.Event()
        self._turned: trio.Event | None = None
        self._running = trio.CancelScope(shield=True)
        """Around ``drive``: the loop turns until ``open_loop`` ends it, even while the
        block is being cancelled (its cleanup may need asyncio)."""
        loop.wake = self.wake

    def wake(self) -> None:
        """From trio: the loop has work (a task, a callback); run it at the next turn."""
        task, self._parked = self._parked, None
        if task is not None:
            trio.lowlevel.reschedule(task)

    async def next_turn(self) -> None:
        """From trio: until the loop has run another turn; at once if it has nothing to do
        (then nothing on it will produce anything before something wakes it)."""
        if self._parked is not None:
            await trio.lowlevel.checkpoint()
            return
        if self._turned is None:
            self._turned = trio.Event()
        await self._turned.wait()

    def _unparked(self, _: Any) -> trio.lowlevel.Abort:
        self._parked = None
        return trio.lowlevel.Abort.SUCCEEDED

    # -- the trio tasks that run the loop --
    async def drive(self) -> None:
        with self._running:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_selector)
                await self._turns()

    async def _watch_selector(self) -> None:
        """Wakes the loop when its selector has I/O; then waits for a turn to take it."""
        fd = self.loop._selector.fileno()  # type: ignore[attr-defined]
        while True:
            await trio.lowlevel.wait_readable(fd)
            self._io_seen = trio.Event()
            self.wake()
            await self._io_seen.wait()

    async def _turns(self) -> None:
        # asyncio's internals are read afresh each time: it replaces ``_scheduled`` when
        # cancelled timers pile up (a stale heap once made this loop sleep 60 s too long)
        loop: Any = self.loop
        until = 0.0

        def turn_over() -> None:
            """A callback in every iteration: stops the loop when nothing else is ready,
            or the turn is spent."""
            if not loop._ready or time.perf_counter() >= until:
                loop.stop()
            else:
                loop.call_soon(turn_over)

        turn = TURN_S
        while True:
            until = time.perf_counter() + turn
            loop.call_soon(turn_over)
            previous, sniffio.thread_local.name = sniffio.thread_local.name, "asyncio"
            try:
                loop.run_forever()
            finally:
                sniffio.thread_local.name = previous
            self._io_seen.set()  # this turn polled the selector
            if self._turned is not None:
                self._turned.set()
                self._turned = None
            if loop._ready:  # still busy: trio's tasks run, then another turn, as long as theirs
                yielded = time.perf_counter()
                await trio.lowlevel.checkpoint()
                turn = min(MAX_TURN_S, max(TURN_S, time.perf_counter() - yielded))
                continue
            turn = TURN_S
            # nothing to do: park until woken (trio code, the selector) or the next timer
            scheduled = loop._scheduled
            timeout = max(0.0, scheduled[0].when() - loop.time()) if scheduled else math.inf
            with trio.move_on_after(timeout):
                self._parked = trio.lowlevel.current_task()
                await trio.lowlevel.wait_task_rescheduled(self._unparked)

    # -- from trio --
    async def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``await fn(*args)`` as an asyncio task on the loop; its result or exception.

        Cancelling the caller cancels the task and waits (shielded, at most
        :data:`CLOSE_TIMEOUT_S`) until it has finished before ``Cancelled`` goes on."""
        done = trio.Event()
        task = self.loop.create_task(_call(fn, args))
        task.add_done_callback(lambda _: done.set())
        self.wake()
        try:
            await done.wait()
        except BaseException:
            task.cancel()
            self.wake()
            with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT_S) as waited:
                await done.wait()
            if waited.cancelled_caught:
                log.warning("%s: still running %g s after it was cancelled", fn, CLOSE_TIMEOUT_S)
            raise
        if task.cancelled():  # not by us: the loop is closing, or the code cancelled itself
            raise LoopStopped(f"the asyncio task running {fn!r} was cancelled")
        return task.result()

    # -- from asyncio --
    async def to_trio(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """From a task on this loop: ``await fn(*args)`` as a trio task in the portal.

        Cancelling the asyncio caller cancels the trio task and waits (at most
        :data:`CLOSE_TIMEOUT_S`) until it has finished before ``CancelledError`` goes on."""
        future: asyncio.Future[outcome.Outcome[T] | None] = self.loop.create_future()
        scope = trio.CancelScope()

        async def in_trio() -> None:
            result: outcome.Outcome[T] | None = None
            try:
                with scope:
                    try:
                        result = outcome.Value(await fn(*args))
                    except Exception as exc:  # Cancelled is not captured: it goes on
                        result = outcome.Error(exc)
            finally:  # a Cancelled from our scope ended above; the portal's goes on
                if not future.done():
                    future.set_result(result)
                    self.wake()

        self.portal.start_soon(in_trio)
        try:
            got = await asyncio.shield(future)
        except asyncio.CancelledError:
            scope.cancel()
            try:
                await asyncio.wait_for(asyncio.shield(future), CLOSE_TIMEOUT_S)
            except TimeoutError:
                log.warning("%s: still running %g s after it was cancelled", fn, CLOSE_TIMEOUT_S)
            raise
        if got is None:
            raise LoopStopped(f"the trio side stopped while running {fn!r}")
        return got.unwrap()


async def _call(fn: Callable[..., Awaitable[T]], args: tuple[Any, ...]) -> T:
    return await fn(*args)


@asynccontextmanager
async def open_loop() -> AsyncIterator[AsyncioLoop]:
    """Run an asyncio loop inside this trio run for the duration of the block."""
    loop = _Loop()
    try:
        async with trio.open_nursery() as nursery:
            try:
                async with trio.open_nursery() as portal:
                    aio = AsyncioLoop(loop, portal)
                    nursery.start_soon(aio.drive, name="asyncio loop")
                    try:
                        yield aio
                    finally:
                        portal.cancel_scope.cancel()
            finally:
                with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT_S):
                    await _finish(aio)
                aio._running.cancel()
    finally:
        loop.close()


async def _finish(aio: AsyncioLoop) -> None:
    """Cancel the asyncio tasks still running and let them (and async generators) end."""

    async def end_everything() -> None:
        this = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not this]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await aio.loop.shutdown_asyncgens()

    await aio.run(end_everything)
