"""The streaming pipeline: a model's generator, driven by a task, into a bounded channel.

::

    transport task                         pump task (same nursery)
    ──────────────                         ─────────────────────────
    async with open_stream(...) as items:  async for r in model.predict_stream(requests):
        async for batch in batches(items):     await send(finish(r))   # blocks when full
            write(batch)                   on model error: send(StreamError(err)), stop

The nursery is opened by ``open_stream`` in the transport's task, so the model call is
owned by the request: when the transport leaves the block (client gone, RPC cancelled,
stream done) the nursery is cancelled and the model's generator is closed; its
``finally`` runs before ``open_stream`` returns. The channel's size is the backpressure:
a model runs at most ``buffer`` responses ahead of its client.

``finish`` is the transport's encoder, applied in the pump task: the transport receives
ready-to-write items, and a response that cannot be encoded becomes a ``StreamError``
like any other failure, never a broken connection.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

import trio

from ..errors import StreamwiseError
from ..model import MLModel
from ..types import InferenceRequest, InferenceResponse
from .calls import as_failure, check_response, iterate

if TYPE_CHECKING:
    from .dataplane import Guard

__all__ = ["StreamError", "open_stream", "single", "receive_batch"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class StreamError:
    """The last item of a stream that failed after it started."""

    error: StreamwiseError


@dataclass(frozen=True, slots=True)
class _Pump(Generic[T]):
    model: MLModel
    requests: AsyncIterator[InferenceRequest]
    finish: Callable[[InferenceResponse], T]
    send: trio.MemorySendChannel[T | StreamError]
    guard: Guard | None

    async def run(self) -> None:
        async with self.send:
            failure: StreamwiseError | None = None
            try:
                with self.guard.scope if self.guard else trio.CancelScope():
                    await self._drive()
                if self.guard is not None and self.guard.scope.cancelled_caught:
                    failure = self.guard.failure()  # timed out, or the server's grace ran out
            except trio.BrokenResourceError:
                return  # the transport has gone; nobody is left to tell
            except Exception as exc:
                failure = as_failure(exc)
            if failure is not None:
                try:
                    await self.send.send(StreamError(failure))
                except trio.BrokenResourceError:
                    return

    async def _drive(self) -> None:
        agen = self.model.predict_stream(self.requests)
        try:
            async with aclosing(iterate(self.model, agen)) as responses:
                async for response in responses:
                    item = self.finish(check_response(self.model, response))
                    try:  # no checkpoint while there is room: a fast model fills the
                        self.send.send_nowait(item)  # channel and the transport writes
                    except trio.WouldBlock:  # everything waiting at once
                        await self.send.send(item)
        finally:
            # A model stopped mid-iteration of its requests (cancelled, failed, or done
            # early) leaves the request generator suspended: close it now rather than
            # leave it to the garbage collector (a ResourceWarning under trio).
            requests = self.requests
            if inspect.isasyncgen(requests) and not requests.ag_running:
                await requests.aclose()


async def single(request: InferenceRequest) -> AsyncIterator[InferenceRequest]:
    """The request stream of a REST call: one request. Awaits nothing, so it runs on any loop."""
    yield request


@asynccontextmanager
async def open_stream(
    model: MLModel,
    requests: AsyncIterator[InferenceRequest],
    finish: Callable[[InferenceResponse], T],
    guard: Guard | None = None,
    *,
    buffer: int = 64,
) -> AsyncIterator[trio.MemoryReceiveChannel[T | StreamError]]:
    """Start ``model.predict_stream(requests)`` in a task owned by this block.

    An exception raised in the block comes out as itself, not inside a group (the pump
    catches its own failures, so a group here holds the caller's exception alone).
    """
    send, receive = trio.open_memory_channel[T | StreamError](buffer)
    # `receive` is closed outside the nursery: closing it checkpoints, and a checkpoint in
    # the cancelled nursery would raise a Cancelled that the nursery absorbs, silently
    # dropping the exception that left the block.
    async with receive:
        try:
            async with trio.open_nursery() as nursery:
                pump = _Pump(model, requests, finish, send, guard)
                nursery.start_soon(pump.run, name=f"pump:{model.name}")
                try:
                    yield receive
                finally:
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise


async def receive_batch(
    items: trio.MemoryReceiveChannel[T | StreamError], limit: int = 256
) -> list[T | StreamError]:
    """Wait for one item, then take every item already waiting (up to ``limit``), so that
    the transport writes them at once. An empty list means the stream has ended."""
    try:
        batch = [await items.receive()]
    except trio.EndOfChannel:
        return []
    while len(batch) < limit and not isinstance(batch[-1], StreamError):
        try:
            batch.append(items.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            break
    return batch
