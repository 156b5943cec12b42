"""The streaming pipeline on its own, on both backends: ownership, errors after the items,
exceptions that leave the block, backpressure, fairness."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import sniffio
import trio
import trio.lowlevel

from streamwise import MLModel, ModelSettings
from streamwise._bridge import FIRST_WINDOW, open_loop
from streamwise.errors import ModelFailed
from streamwise.runtime import Backend, Backends, Requests, open_stream
from streamwise.types import InferenceRequest, InferenceResponse

SETTINGS = ModelSettings(name="m", implementation="x.M")
REQUEST = Requests(InferenceRequest(inputs=[]))


def response() -> InferenceResponse:
    return InferenceResponse(model_name="m", outputs=[])


class Counter(MLModel):
    """Three responses, then a failure; records where it ran and that it was closed."""

    async_backend = "trio"

    def __init__(self, settings: ModelSettings) -> None:
        super().__init__(settings)
        self.produced = 0
        self.closed = False
        self.ran_on: str | None = None

    async def predict_stream(self, payloads):  # type: ignore[no-untyped-def, override]
        self.ran_on = sniffio.current_async_library()
        try:
            for i in range(1000):
                self.produced = i + 1
                yield response()
                if i == 2:
                    raise ValueError("three is enough")
        finally:
            self.closed = True


class AioCounter(Counter):
    async_backend = "asyncio"


@pytest.fixture(params=["trio", "asyncio"])
async def backend_and_model(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[Backend, Counter]]:
    async with open_loop() as aio:
        backends = Backends.on(aio)
        model = Counter(SETTINGS) if request.param == "trio" else AioCounter(SETTINGS)
        yield backends.of(model), model


async def test_items_then_the_failure(backend_and_model: tuple[Backend, Counter]) -> None:
    backend, model = backend_and_model
    async with open_stream(backend, model, REQUEST, lambda r: r) as stream:
        items = []
        while batch := await stream.take():
            items.extend(batch)
        assert len(items) == 3 and all(isinstance(i, InferenceResponse) for i in items)
        assert isinstance(stream.failure, ModelFailed)
        assert "three is enough" in str(stream.failure)
    assert model.closed and model.ran_on == model.async_backend


class Waiting(MLModel):
    """One response, then waits for ever: only a cancellation ends it."""

    async_backend = "trio"

    def __init__(self, settings: ModelSettings) -> None:
        super().__init__(settings)
        self.cancelled = False

    async def predict_stream(self, payloads):  # type: ignore[no-untyped-def, override]
        yield response()
        try:
            if self.async_backend == "trio":
                await trio.sleep_forever()
            else:
                await asyncio.Event().wait()
        except BaseException:
            self.cancelled = True
            raise


class AioWaiting(Waiting):
    async_backend = "asyncio"


@pytest.mark.parametrize("cls", [Waiting, AioWaiting])
async def test_an_exception_leaving_the_block_is_raised_as_itself(cls: type[Waiting]) -> None:
    """Regression: closing the channel inside the cancelled nursery used to replace the
    exception by a Cancelled that the nursery then absorbed: the error vanished. The model
    only ends when cancelled: leaving the block must cancel it."""
    async with open_loop() as aio:
        model = cls(SETTINGS)
        with pytest.raises(KeyError):
            async with open_stream(
                Backends.on(aio).of(model), model, REQUEST, lambda r: r
            ) as stream:
                assert await stream.take()
                raise KeyError("transport failed")
        assert model.cancelled


async def test_outer_cancellation_is_not_swallowed_and_closes_the_model(
    backend_and_model: tuple[Backend, Counter],
) -> None:
    backend, model = backend_and_model
    with trio.move_on_after(0.05) as scope:
        async with open_stream(backend, model, REQUEST, lambda r: r, buffer=1):
            await trio.sleep_forever()
    assert scope.cancelled_caught and model.closed


class Endless(MLModel):
    """Never awaits anything between responses."""

    async_backend = "trio"
    produced = 0

    async def predict_stream(self, payloads):  # type: ignore[no-untyped-def, override]
        while True:
            type(self).produced += 1
            yield response()


class AioEndless(Endless):
    async_backend = "asyncio"


@pytest.mark.parametrize("cls", [Endless, AioEndless])
async def test_backpressure_holds_the_model_at_the_buffer_size(cls: type[Endless]) -> None:
    cls.produced = 0
    async with open_loop() as aio:
        model = cls(SETTINGS)
        backend = Backends.on(aio).of(model)
        async with open_stream(backend, model, REQUEST, lambda r: r, buffer=4) as stream:
            handoff = stream._handoff
            with trio.fail_after(10):  # the model runs until its producer parks: nobody reads
                while handoff._producer is None:  # noqa: ASYNC110 - no event for this
                    await trio.sleep(0.001)
            # held: the first window waits, one more is being put, and no more are made
            assert len(handoff) == FIRST_WINDOW and cls.produced == FIRST_WINDOW + 1


@pytest.mark.parametrize("cls", [Endless, AioEndless])
async def test_a_model_that_never_awaits_does_not_hold_its_loop(cls: type[Endless]) -> None:
    """Two endless streams side by side on one loop: both make progress, in batches."""
    async with open_loop() as aio:
        backends = Backends.on(aio)
        counts = [0, 0]

        async def read(i: int) -> None:
            model = cls(SETTINGS)
            async with open_stream(backends.of(model), model, REQUEST, lambda r: r) as stream:
                while True:
                    counts[i] += len(await stream.take())

        with trio.move_on_after(0.3):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(read, 0)
                nursery.start_soon(read, 1)
        assert min(counts) > 100, counts


class Echo(MLModel):
    """Bidirectional: one response per request, as each arrives."""

    async_backend = "trio"

    async def predict_stream(self, payloads):  # type: ignore[no-untyped-def, override]
        async for payload in payloads:
            yield InferenceResponse(model_name="m", id=payload.id, outputs=[])


class AioEcho(Echo):
    async_backend = "asyncio"


@pytest.mark.parametrize("cls", [Echo, AioEcho])
@pytest.mark.parametrize("on", ["trio", "asyncio"])
async def test_requests_reach_the_model_from_either_loop(cls: type[Echo], on: str) -> None:
    """A transport reads requests on its own loop; the model on its own."""
    async with open_loop() as aio:
        model = cls(SETTINGS)
        ids = iter(["b", "c"])

        async def more() -> InferenceRequest | None:
            if on == "asyncio":
                await asyncio.sleep(0)
            else:
                await trio.lowlevel.checkpoint()
            rid = next(ids, None)
            return None if rid is None else InferenceRequest(id=rid, inputs=[])

        requests = Requests(InferenceRequest(id="a", inputs=[]), more, on=on)
        async with open_stream(Backends.on(aio).of(model), model, requests, lambda r: r.id) as s:
            got = []
            while batch := await s.take():
                got.extend(batch)
        assert got == ["a", "b", "c"] and s.failure is None
