"""The asyncio bridge: the one module that touches trio-asyncio.

Models: MLServer runtimes are asyncio code (``run``, ``anext``, ``aclose`` below).
gRPC: grpclib is asyncio-only; its server lives on the same loop, its handlers cross into
trio with ``to_trio`` and call back into asyncio (receive, send a batch) with ``to_asyncio``.

``serve()`` opens a trio-asyncio loop inside its trio run; models whose
``async_backend`` is ``"asyncio"`` have each coroutine, and each step of their
generators, run as an asyncio task on that loop. A trio cancel scope around such a
call cancels the asyncio task, so a generator's ``finally`` runs promptly.

``trio_asyncio`` is imported lazily: importing it replaces the process's asyncio loop
policy, which must not happen to a program that merely imports streamwise.
"""

from __future__ import annotations

import heapq
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["open_loop", "run", "anext", "aclose", "to_trio", "to_asyncio"]


PURGE_AT = 256
"""Cancelled timers the loop may hold before it drops them (see ``_purge_cancelled_timers``)."""


@asynccontextmanager
async def open_loop() -> AsyncIterator[None]:
    """Run an asyncio loop inside the current trio run for the duration of the block."""
    import trio_asyncio

    async with trio_asyncio.open_loop() as loop:
        _purge_cancelled_timers(loop)
        yield


def _purge_cancelled_timers(loop: Any) -> None:
    """Make the loop drop cancelled timers, as asyncio's own loop does.

    trio-asyncio (0.15) keeps a cancelled timer in its heap until the time it was due: an
    asyncio model cancelled inside ``asyncio.sleep(3600)`` would hold its timer and context
    for the hour, and every closed gRPC connection leaves grpclib's 2-hour keepalive timer
    behind. Once cancellations outnumber ``PURGE_AT`` and half the heap, the heap is rebuilt
    without them. (The loop reads ``_timers`` afresh on each step; this runs synchronously
    in ``TimerHandle.cancel``, so no step is in the middle of using it.)
    """
    if not isinstance(getattr(loop, "_timers", None), list):
        return  # another trio-asyncio layout: leave it alone
    cancelled = 0

    def timer_handle_cancelled(handle: Any) -> None:
        nonlocal cancelled
        cancelled += 1
        if cancelled >= PURGE_AT and cancelled * 2 >= len(loop._timers):
            loop._timers = [t for t in loop._timers if not t.cancelled()]
            heapq.heapify(loop._timers)
            cancelled = 0

    loop._timer_handle_cancelled = timer_handle_cancelled


def _runner() -> Callable[[Awaitable[Any]], Awaitable[Any]]:
    import trio_asyncio

    if trio_asyncio.current_loop.get() is None:
        raise RuntimeError(
            "this model runs on asyncio (async_backend = 'asyncio') and needs the "
            "trio-asyncio loop that streamwise.serve() opens; outside serve(), wrap the "
            "code in `async with streamwise.runtime.asyncio_loop():`"
        )
    return trio_asyncio.run_aio_coroutine  # type: ignore[no-any-return]


async def run(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """``await fn(*args)`` as an asyncio task."""
    return await _runner()(fn(*args))  # type: ignore[no-any-return]


async def anext(agen: AsyncIterator[T]) -> T:
    """One step of an asyncio async iterator; raises StopAsyncIteration at its end."""
    return await _runner()(agen.__anext__())  # type: ignore[no-any-return]


async def aclose(agen: AsyncGenerator[Any, Any]) -> None:
    await _runner()(agen.aclose())


def to_trio(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """From asyncio code: a coroutine function that runs trio ``fn`` as a trio task.
    Cancelling the asyncio caller cancels the trio task."""
    import trio_asyncio

    return trio_asyncio.trio_as_aio(fn)  # type: ignore[no-any-return]


def to_asyncio(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """From trio code: a function that runs asyncio ``fn`` on the bridge's loop.
    Cancelling the trio caller cancels the asyncio task."""
    import trio_asyncio

    return trio_asyncio.aio_as_trio(fn)  # type: ignore[no-any-return]
