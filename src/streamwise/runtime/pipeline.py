"""The streaming pipeline: a model's stream, driven on its own loop, into a bounded
:class:`~streamwise._bridge.Handoff` that the transport takes in batches.

::

    transport (its loop)                       pump task (trio, this block's nursery)
    ────────────────────                       ──────────────────────────────────────
    async with open_stream(...) as stream:     with guard.scope:
        while batch := await stream.take():        backend.drive(model, requests, finish)
            write(batch)                               (on the model's loop: each response
        if stream.failure: tell the client              -> finish -> the handoff)
                                               on failure: handoff.end(error)

The nursery is opened by ``open_stream`` in the transport's task, so the model call is
owned by the request: when the transport leaves the block (client gone, RPC cancelled,
stream done) the nursery is cancelled, the model's generator is closed, and its
``finally`` has run before ``open_stream`` returns. The handoff's capacity is the
backpressure: a model runs at most ``buffer`` responses ahead of its client.

``finish`` is the transport's encoder, applied where the model runs: the transport takes
ready-to-write items, and a response that cannot be encoded fails the stream like any
other model failure, never the connection. A transport never looks at items to learn how
a stream ended: it reads ``stream.failure`` once the items are over.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Generic, TypeVar

import trio

from .._bridge import TRIO, Abandoned, Handoff, Side
from ..errors import ServerShuttingDown, StreamwiseError
from ..model import MLModel
from ..types import InferenceResponse
from .backends import Backend, Requests
from .calls import Guard, as_failure

__all__ = ["Stream", "open_stream"]

T = TypeVar("T")

BATCH_LIMIT = 256
"""Most items one ``take`` returns (one write)."""

LINGER_S = 0.002
LINGER_ITEMS = 64
LINGER_STEP_S = 0.0002
"""A consumer takes a batch that is still growing for at most ``LINGER_S`` or
``LINGER_ITEMS``: see :meth:`Stream.take`."""


class Stream(Generic[T]):
    """The items of one model stream, in batches, then how it ended."""

    __slots__ = ("_handoff", "_started", "_lingers", "_seen")

    def __init__(self, handoff: Handoff[T], seen: Callable[[int], None] | None = None) -> None:
        self._handoff = handoff
        self._started = False
        self._lingers = True
        self._seen = seen

    async def take(self, side: Side = TRIO) -> list[T]:
        """Every item waiting (waiting for one if none is), on the loop ``side`` names;
        ``[]`` once the stream has ended.

        A consumer woken by a fast producer's first item would take that item alone, and
        write once per item. So while the producer keeps adding,
        the consumer waits a little and takes those too, for at most :data:`LINGER_S` or
        :data:`LINGER_ITEMS`. On the producer's own loop it waits a turn of the loop, and
        ends the batch after two turns without an item (trio runs the tasks of a round in
        random order: the producer may not have had its turn yet); from the other loop it
        waits for that loop's next turn (or, where it cannot tell, sleeps
        :data:`LINGER_STEP_S`), and ends the batch after one wait without an item. A
        producer waiting for its model ends the batch. The first batch never waits: time
        to first token comes first. Nor does a slow stream: once a wait has found nothing,
        the consumer lingers again only when it finds more than one item waiting (a slow
        stream's events, one per wake-up, would each pay a wait for nothing).

        ``seen(len(batch))`` (metrics, tracing) is told of each batch as it is taken."""
        handoff = self._handoff
        batch = handoff.poll(BATCH_LIMIT)
        if batch is None:
            batch = await handoff.take(side.parker, BATCH_LIMIT)
        if not self._started:
            self._started = True
        elif batch and (self._lingers or len(batch) > 1):  # an ended stream's is []: no wait
            same_loop = handoff.producer_side == side.name
            other_turn = None if same_loop else handoff.producer_turn
            until = time.monotonic() + LINGER_S
            empty = 0
            while len(batch) < LINGER_ITEMS and time.monotonic() < until:
                if same_loop:
                    await side.pause()
                elif other_turn is not None:
                    await other_turn()  # the producer's loop had its turn
                else:
                    await side.sleep(LINGER_STEP_S)
                more = handoff.poll(BATCH_LIMIT - len(batch))
                if more:
                    batch += more
                    empty = 0
                    self._lingers = True
                elif more == [] or (empty := empty + 1) == (2 if same_loop else 1):
                    self._lingers = more == [] or len(batch) > 1
                    break  # ended, or the producer waits for its model
        if batch and self._seen is not None:
            self._seen(len(batch))
        return batch

    @property
    def ended(self) -> bool:
        """The model's stream is over (to its end, or failed): ``take`` has nothing more."""
        return self._handoff.ended

    @property
    def failure(self) -> StreamwiseError | None:
        """Why the stream ended early (the model failed, timed out, the server is shutting
        down), once ``take`` has returned ``[]``; None for a clean end."""
        failure = self._handoff.failure
        assert failure is None or isinstance(failure, StreamwiseError)
        return failure


async def _pump(
    backend: Backend,
    model: MLModel,
    requests: Requests,
    finish: Callable[[InferenceResponse], T],
    handoff: Handoff[T],
    guard: Guard | None,
) -> None:
    failure: StreamwiseError | None = ServerShuttingDown("the stream was cancelled")
    try:
        with guard.scope if guard is not None else trio.CancelScope():
            await backend.drive(model, requests, finish, handoff)
        failure = None
        if guard is not None and guard.scope.cancelled_caught:
            failure = guard.failure()  # timed out, or the server's grace ran out
    except Abandoned:
        failure = None  # the transport has gone; nobody is left to tell
    except Exception as exc:
        failure = as_failure(exc)
    finally:
        handoff.end(failure)


@asynccontextmanager
async def open_stream(
    backend: Backend,
    model: MLModel,
    requests: Requests,
    finish: Callable[[InferenceResponse], T],
    guard: Guard | None = None,
    *,
    buffer: int = 64,
    seen: Callable[[int], None] | None = None,
) -> AsyncIterator[Stream[T]]:
    """Start ``model.predict_stream`` on ``backend`` in a task owned by this block;
    ``seen``: see :meth:`Stream.take`.

    An exception raised in the block comes out as itself, not inside a group (the pump
    catches its own failures, so a group here holds the caller's exception alone).
    """
    handoff: Handoff[T] = Handoff(buffer)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                _pump, backend, model, requests, finish, handoff, guard, name=f"pump:{model.name}"
            )
            try:
                yield Stream(handoff, seen)
            finally:
                if not handoff.ended:
                    handoff.abandon()  # left early: the model's next response raises
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
