"""Where a model's code runs: the one place that reads ``MLModel.async_backend``.

A trio model runs in trio tasks; an asyncio model (MLServer's runtimes, the default) on
the bridge's asyncio loop, its generators driven there, so that a stream crosses between
the loops once per batch and a unary call once each way. Transports never ask: the data
plane hands them items already encoded, in batches, whatever the model's backend.

The requests of a stream come from a transport on its own loop (:class:`Requests`); the
backend reads them from the loop the model runs on.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from .._bridge import ASYNCIO, TRIO, AsyncioLoop, Handoff, Side, fill
from ..errors import ModelFailed
from ..model import MLModel
from ..types import InferenceRequest, InferenceResponse

__all__ = ["Backend", "Backends", "Requests", "check_response"]

T = TypeVar("T")

Fetch = Callable[[], Awaitable[InferenceRequest | None]]


@dataclass(frozen=True, slots=True)
class Requests:
    """The requests a stream's model reads: ``first``, then (bidirectional streams)
    whatever ``more()`` returns, until it returns None. ``more`` runs on the loop
    ``on`` names (``"trio"`` or ``"asyncio"``)."""

    first: InferenceRequest
    more: Fetch | None = None
    on: str = "trio"


def check_response(model: MLModel, response: Any) -> InferenceResponse:
    if not isinstance(response, InferenceResponse):
        raise ModelFailed(
            f"model {model.name!r} gave a {type(response).__name__}, not an InferenceResponse"
        )
    return response


async def _read(first: InferenceRequest, more: Fetch | None) -> AsyncIterator[InferenceRequest]:
    """The request iterator a model gets. Awaits only ``more``, so it runs on any loop."""
    yield first
    if more is None:
        return
    while (request := await more()) is not None:
        yield request


async def _drive(
    model: MLModel,
    requests: AsyncIterator[InferenceRequest],
    finish: Callable[[InferenceResponse], T],
    handoff: Handoff[T],
    side: Side,
) -> None:
    """Model stream -> ``finish`` -> handoff, on the loop ``side`` names; the model's
    generator, then its request iterator, are always closed (on that loop)."""
    responses = model.predict_stream(requests)
    try:
        await fill(handoff, responses, lambda r: finish(check_response(model, r)), side)
    finally:
        try:
            aclose = getattr(responses, "aclose", None)  # an async generator, in practice
            if aclose is not None:
                await aclose()
        finally:
            # A model that stops reading its requests mid-way (done, failed, cancelled)
            # leaves the iterator suspended: close it here, not in the garbage collector.
            if inspect.isasyncgen(requests) and not requests.ag_running:
                await requests.aclose()


class Backend:
    """Runs a model's coroutines on the loop it was written for."""

    side: Side

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``await fn(*args)``, ``fn`` being one of the model's coroutine methods."""
        raise NotImplementedError

    def _from_other_loop(self, more: Fetch) -> Fetch:
        raise NotImplementedError

    @property
    def next_turn(self) -> Callable[[], Awaitable[object]] | None:
        """From the other loop: until this one has run another turn (None: a consumer
        on the other loop cannot tell, and waits a moment instead)."""
        return None

    async def drive(
        self,
        model: MLModel,
        requests: Requests,
        finish: Callable[[InferenceResponse], T],
        handoff: Handoff[T],
    ) -> None:
        """Run ``model.predict_stream`` into ``handoff`` until it ends; cancelling the
        caller cancels the model, and its ``finally`` has run when this returns."""
        more = requests.more
        if more is not None and requests.on != self.side.name:
            more = self._from_other_loop(more)
        handoff.producer_side = self.side.name
        handoff.producer_turn = self.next_turn

        async def here() -> None:
            await _drive(model, _read(requests.first, more), finish, handoff, self.side)

        await self.call(here)


class TrioBackend(Backend):
    side = TRIO

    def __init__(self, aio: AsyncioLoop | None) -> None:
        self._aio = aio

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        return await fn(*args)

    def _from_other_loop(self, more: Fetch) -> Fetch:
        return _across(self._aio, "run", more)


class AsyncioBackend(Backend):
    side = ASYNCIO

    def __init__(self, aio: AsyncioLoop) -> None:
        self.aio = aio

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        return await self.aio.run(fn, *args)

    def _from_other_loop(self, more: Fetch) -> Fetch:
        return _across(self.aio, "to_trio", more)

    @property
    def next_turn(self) -> Callable[[], Awaitable[object]] | None:
        return self.aio.next_turn


def _across(aio: AsyncioLoop | None, way: str, more: Fetch) -> Fetch:
    if aio is None:
        raise RuntimeError("requests from the asyncio loop, and no asyncio loop is running")
    cross = getattr(aio, way)

    async def fetch() -> InferenceRequest | None:
        return await cross(more)  # type: ignore[no-any-return]

    return fetch


@dataclass(frozen=True)
class Backends:
    """The backends of one server: trio's, and the asyncio loop's when it runs."""

    trio: TrioBackend
    asyncio: AsyncioBackend | None

    @classmethod
    def on(cls, aio: AsyncioLoop | None) -> Backends:
        return cls(TrioBackend(aio), AsyncioBackend(aio) if aio is not None else None)

    def of(self, model: MLModel) -> Backend:
        if model.async_backend == "trio":
            return self.trio
        if self.asyncio is None:
            raise RuntimeError(
                f"model {model.name!r} runs on asyncio (async_backend = 'asyncio') and no "
                "asyncio loop is running: serve() starts one; elsewhere, "
                "`async with streamwise.runtime.asyncio_loop() as aio` and Backends.on(aio)"
            )
        return self.asyncio
