"""A native asyncio event loop (uvloop when installed) in a thread of its own, owned by a
trio block, and the two ways across.

::

    trio thread                                    asyncio thread ("streamwise-asyncio")
    ───────────                                    ─────────────────────────────────────
    async with open_loop() as aio:                 loop.run_forever() (asyncio.Runner)
        await aio.run(fn, *args)  ─────────────►   task = create_task(fn(*args))
          (cancelled: task.cancel(), then waits    ◄── done: TrioToken.run_sync_soon
           for the task to finish)
        portal nursery  ◄───────────────────────   await aio.to_trio(fn, *args)
          task: await fn(*args)  ───────────────►    (cancelled: the trio task's scope is
                                                      cancelled, then it waits for it)

MLServer runtimes (asyncio code) run on this loop, and grpclib with them; trio keeps
Hypercorn, the data plane and trio-native models. Each crossing is one thread-safe call
each way; a stream crosses once per batch (``handoff.py``), not once per item.

Ownership: every asyncio task ``run`` starts is awaited by the trio task that started it,
which does not return (even when cancelled) before the asyncio task has finished, so a
model's ``finally`` has run by then. Trio tasks started from asyncio live in the portal
nursery, inside the ``open_loop`` block, and the asyncio side waits for them likewise.
Leaving the block cancels what is left on both sides and stops the thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import outcome
import trio

__all__ = ["AsyncioLoop", "LoopKind", "LoopStopped", "every", "open_loop", "CLOSE_TIMEOUT_S"]

log = logging.getLogger(__name__)

T = TypeVar("T")
LoopKind = Literal["auto", "uvloop", "asyncio"]

CLOSE_TIMEOUT_S = 5.0
"""How long a cancelled call on the other side may take to finish (its ``finally``)
before the canceller stops waiting for it (and logs it)."""


class LoopStopped(RuntimeError):
    """The asyncio loop stopped before the call finished."""


def _loop_factory(kind: LoopKind) -> tuple[Callable[[], asyncio.AbstractEventLoop], str]:
    if kind in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise
        else:
            return uvloop.new_event_loop, "uvloop"
    return asyncio.new_event_loop, "asyncio"


def _notify(token: trio.lowlevel.TrioToken, fn: Callable[[], object]) -> None:
    try:
        token.run_sync_soon(fn)
    except trio.RunFinishedError:
        pass  # the trio run is over: nobody waits any more


@dataclass(eq=False)
class AsyncioLoop:
    """The running asyncio loop, its thread, and the trio side's handles."""

    loop: asyncio.AbstractEventLoop
    kind: str
    """``"uvloop"`` or ``"asyncio"``."""
    thread: threading.Thread
    token: trio.lowlevel.TrioToken
    portal: trio.Nursery
    """Where trio tasks started from asyncio (``to_trio``) live."""

    # -- from trio --
    async def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``await fn(*args)`` as an asyncio task on the loop; its result or exception.

        Cancelling the caller cancels the task and waits (shielded, at most
        :data:`CLOSE_TIMEOUT_S`) until it has finished before ``Cancelled`` goes on."""
        done = trio.Event()
        token = self.token
        started: list[asyncio.Task[T]] = []

        def finished(_: object) -> None:
            _notify(token, done.set)

        def start() -> None:
            task = self.loop.create_task(_call(fn, args))
            started.append(task)
            task.add_done_callback(finished)

        self.loop.call_soon_threadsafe(start)
        try:
            await done.wait()
        except BaseException:
            self.loop.call_soon_threadsafe(_cancel_first, started)
            with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT_S) as waited:
                await done.wait()
            if waited.cancelled_caught:
                log.warning("%s: still running %g s after it was cancelled", fn, CLOSE_TIMEOUT_S)
            raise
        task = started[0]
        if task.cancelled():
            raise LoopStopped(f"the asyncio loop stopped while running {fn!r}")
        exc = task.exception()
        if exc is not None:
            raise exc
        return task.result()

    def call_soon(self, fn: Callable[..., object], *args: Any) -> None:
        """``fn(*args)`` on the loop, soon; not waited for."""
        self.loop.call_soon_threadsafe(fn, *args)

    # -- from asyncio --
    async def to_trio(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """From a task on this loop: ``await fn(*args)`` as a trio task in the portal.

        Cancelling the asyncio caller cancels the trio task and waits (at most
        :data:`CLOSE_TIMEOUT_S`) until it has finished before ``CancelledError`` goes on."""
        loop = self.loop
        future: asyncio.Future[outcome.Outcome[T]] = loop.create_future()
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
                _resolve_threadsafe(loop, future, result)

        self.token.run_sync_soon(self.portal.start_soon, in_trio)
        try:
            got = await asyncio.shield(future)
        except asyncio.CancelledError:
            self.token.run_sync_soon(scope.cancel)
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


async def every(seconds: float, fn: Callable[[], object]) -> None:
    """On the asyncio loop: ``fn()`` every ``seconds``, until cancelled."""
    while True:
        fn()
        await asyncio.sleep(seconds)


def _cancel_first(started: list[asyncio.Task[Any]]) -> None:
    if started:
        started[0].cancel()


def _resolve(future: asyncio.Future[Any], result: object) -> None:
    if not future.done():
        future.set_result(result)


def _resolve_threadsafe(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], result: object
) -> None:
    try:
        loop.call_soon_threadsafe(_resolve, future, result)
    except RuntimeError:
        pass  # the loop is closed: nobody waits any more


@asynccontextmanager
async def open_loop(kind: LoopKind = "auto") -> AsyncIterator[AsyncioLoop]:
    """Run an asyncio loop in a new thread for the duration of the block."""
    factory, name = _loop_factory(kind)
    token = trio.lowlevel.current_trio_token()
    started, stopped = trio.Event(), trio.Event()
    handles: dict[str, Any] = {}

    async def serve_forever() -> None:
        handles["loop"] = asyncio.get_running_loop()
        handles["stop"] = stop = asyncio.Event()
        _notify(token, started.set)
        await stop.wait()

    def thread_main() -> None:
        try:
            with asyncio.Runner(loop_factory=factory) as runner:
                runner.run(serve_forever())
        except BaseException:
            log.exception("the asyncio loop's thread failed")
        finally:
            _notify(token, started.set)  # in case it failed before it started
            _notify(token, stopped.set)

    thread = threading.Thread(target=thread_main, name="streamwise-asyncio", daemon=True)
    thread.start()
    try:
        with trio.CancelScope(shield=True):
            await started.wait()
        if "stop" not in handles:
            raise RuntimeError(f"the asyncio loop ({name}) did not start; see the log")
        async with trio.open_nursery() as portal:
            try:
                yield AsyncioLoop(handles["loop"], name, thread, token, portal)
            finally:
                portal.cancel_scope.cancel()
    finally:
        stop: asyncio.Event | None = handles.get("stop")
        if stop is not None:
            try:
                handles["loop"].call_soon_threadsafe(stop.set)
            except RuntimeError:
                pass  # already closed
        with trio.CancelScope(shield=True):
            await stopped.wait()
        thread.join()
