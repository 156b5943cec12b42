"""A bounded queue of stream items between a producer and a consumer that may run on
different event loops (and, in general, in different threads), taken in batches.

::

    producer (a model's loop)              consumer (a transport's loop)
    ─────────────────────────              ─────────────────────────────
    offer(item)  -> False when full        take() -> every item waiting, at once
    put(item)    waits for room            ...    -> [] once ended (then .failure)
    end(failure)                           abandon(): the producer's next offer raises

Each side waits on its own loop through a :class:`Parker`: a trio task parks on a
:class:`TrioParker`, an asyncio task on an :class:`AsyncioParker`. Whoever changes the
state wakes the parked side, directly when both run in the same thread, else through that
loop's thread-safe entry (``TrioToken.run_sync_soon``, ``loop.call_soon_threadsafe``): one
wake-up per batch, not per item, because a consumer that is awake takes everything waiting.

The lock is held only around list operations; nothing awaits while holding it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import trio

__all__ = [
    "ASYNCIO",
    "TRIO",
    "Abandoned",
    "AsyncioParker",
    "Handoff",
    "Parker",
    "Side",
    "TrioParker",
    "fill",
    "FAIR_EVERY",
]

T = TypeVar("T")
X = TypeVar("X")

FIRST_WINDOW = 2
"""Items a producer may put before its consumer has taken any (see :class:`Handoff`)."""

FAIR_EVERY = 16
"""A producer that never waits yields to its loop after this many items, so that a model
that never awaits cannot hold the scheduler (and the transport writes them as a batch)."""


class Abandoned(Exception):
    """The consumer has gone: nobody will take what the producer offers."""


class Parker(Protocol):
    def unpark(self) -> None:
        """Wake the parked task; from any thread, any number of times."""

    async def park(self) -> None:
        """Wait (on the loop that created this parker) until ``unpark``."""


class TrioParker:
    """Parks a trio task."""

    __slots__ = ("_event", "_token", "_thread")

    def __init__(self) -> None:
        self._event = trio.Event()
        self._token = trio.lowlevel.current_trio_token()
        self._thread = threading.get_ident()

    def unpark(self) -> None:
        if threading.get_ident() == self._thread:
            self._event.set()
            return
        try:
            self._token.run_sync_soon(self._event.set)
        except trio.RunFinishedError:
            pass  # the trio run is over: nobody is parked any more

    async def park(self) -> None:
        await self._event.wait()


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class AsyncioParker:
    """Parks an asyncio task."""

    __slots__ = ("_future", "_loop", "_thread")

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._future: asyncio.Future[None] = self._loop.create_future()
        self._thread = threading.get_ident()

    def unpark(self) -> None:
        if threading.get_ident() == self._thread:
            _wake(self._future)
            wake = getattr(self._loop, "wake", None)  # a loop run by trio (loop.py)
            if wake is not None:
                wake()
            return
        try:
            self._loop.call_soon_threadsafe(_wake, self._future)
        except RuntimeError:
            pass  # the loop is closed: nobody is parked any more

    async def park(self) -> None:
        await self._future


class Handoff(Generic[T]):
    """Items from one producer to one consumer, at most ``capacity`` waiting: the
    backpressure of a stream. ``failure`` says how the producer ended (None: cleanly).

    The room starts at :data:`FIRST_WINDOW` items and doubles with each batch the consumer
    takes, up to ``capacity`` (a slow start): a hundred streams starting together do not
    first run every model ``capacity`` items ahead, holding the interpreter while their
    clients wait for a first token, but each gets its first items written at once."""

    __slots__ = ("_lock", "_items", "_capacity", "_window", "_ended", "failure",
                 "_abandoned", "_consumer", "_producer", "producer_side",
                 "producer_turn")  # fmt: skip

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._lock = threading.Lock()
        self._items: list[T] = []  # not a deque: an empty one holds a 600-byte block
        self._capacity = capacity
        self._window = min(FIRST_WINDOW, capacity)
        self._ended = False
        self.failure: Exception | None = None
        self._abandoned = False
        self._consumer: Parker | None = None
        self._producer: Parker | None = None
        self.producer_side: str | None = None
        """The loop the producer runs on (``Side.name``), and from the other loop, until
        that loop has run another turn: both set by whoever runs the producer, for a
        consumer that waits for more items (``runtime/pipeline.py``)."""
        self.producer_turn: Callable[[], Awaitable[object]] | None = None

    # -- the producer's side --
    def offer(self, item: T) -> bool:
        """Add ``item`` if there is room (True), else False; :class:`Abandoned` if the
        consumer has gone."""
        with self._lock:
            if self._abandoned:
                raise Abandoned()
            if self._ended:
                raise RuntimeError("offer() after end()")
            items = self._items
            if len(items) >= self._window:
                return False
            items.append(item)
            parked, self._consumer = self._consumer, None
        if parked is not None:
            parked.unpark()
        return True

    async def put(self, item: T, parker: Callable[[], Parker]) -> None:
        """Add ``item``, waiting (parked with a new ``parker()``) while the queue is full."""
        while not self.offer(item):
            park = parker()
            with self._lock:
                full = len(self._items) >= self._window and not self._abandoned
                if full:
                    self._producer = park
            if full:
                try:
                    await park.park()
                finally:
                    self._forget_producer(park)

    def end(self, failure: Exception | None = None) -> None:
        """No more items; the consumer gets the ones waiting, then ``[]``. Only the first
        call counts."""
        with self._lock:
            if self._ended:
                return
            self._ended = True
            self.failure = failure
            parked, self._consumer = self._consumer, None
        if parked is not None:
            parked.unpark()

    # -- the consumer's side --
    def poll(self, limit: int = 256) -> list[T] | None:
        """The items waiting (at most ``limit``), ``[]`` if the producer has ended and
        nothing is left, None if there is nothing yet."""
        with self._lock:
            batch = self._take_locked(limit)
            if batch is None:
                return [] if self._ended else None
            parked, self._producer = self._producer, None
        if parked is not None:
            parked.unpark()
        return batch

    async def take(self, parker: Callable[[], Parker], limit: int = 256) -> list[T]:
        """Wait for items and take every one waiting (at most ``limit``); ``[]`` at the end."""
        while True:
            batch = self.poll(limit)
            if batch is not None:
                return batch
            park = parker()
            with self._lock:
                idle = not self._items and not self._ended
                if idle:
                    self._consumer = park
            if idle:
                try:
                    await park.park()
                finally:
                    self._forget_consumer(park)

    def abandon(self) -> None:
        """The consumer leaves: items waiting are dropped, the producer's next ``offer``
        (or its ``put`` waiting for room) raises :class:`Abandoned`."""
        with self._lock:
            self._abandoned = True
            self._items.clear()
            parked, self._producer = self._producer, None
        if parked is not None:
            parked.unpark()

    @property
    def ended(self) -> bool:
        return self._ended

    def __len__(self) -> int:
        """Items waiting now."""
        return len(self._items)

    def _take_locked(self, limit: int) -> list[T] | None:
        items = self._items
        if not items:
            return None
        if self._window < self._capacity:
            self._window = min(self._capacity, self._window * 2)
        if len(items) <= limit:
            self._items = []
            return items
        batch = items[:limit]
        del items[:limit]
        return batch

    def _forget_producer(self, park: Parker) -> None:
        with self._lock:
            if self._producer is park:
                self._producer = None

    def _forget_consumer(self, park: Parker) -> None:
        with self._lock:
            if self._consumer is park:
                self._consumer = None


@dataclass(frozen=True, slots=True)
class Side:
    """What code that runs on either loop needs of the one it is on."""

    name: str
    parker: Callable[[], Parker]
    pause: Callable[[], Awaitable[object]]
    """Let the loop's other tasks run (a checkpoint)."""
    sleep: Callable[[float], Awaitable[object]]


async def _asyncio_pause() -> None:
    await asyncio.sleep(0)


TRIO = Side("trio", TrioParker, trio.lowlevel.checkpoint, trio.sleep)
ASYNCIO = Side("asyncio", AsyncioParker, _asyncio_pause, asyncio.sleep)


async def fill(
    handoff: Handoff[T], items: AsyncIterator[X], transform: Callable[[X], T], side: Side
) -> None:
    """Put ``transform(x)`` for each ``x`` of ``items`` into ``handoff``, on the loop
    ``side`` names. While there is room it does not wait, so that a fast producer fills
    the queue and the consumer takes a batch; after :data:`FAIR_EVERY` items in a row it
    pauses, so that it never holds its loop."""
    run = 0
    async for x in items:
        item = transform(x)
        if handoff.offer(item):
            run += 1
            if run >= FAIR_EVERY:
                run = 0
                await side.pause()
        else:
            run = 0
            await handoff.put(item, side.parker)
