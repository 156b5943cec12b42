"""The streaming pipeline on its own: ownership, errors in the channel, exceptions that
leave the block, backpressure."""

from __future__ import annotations

import pytest
import trio

from streamwise import MLModel, ModelSettings
from streamwise.runtime.pipeline import StreamError, open_stream, receive_batch
from streamwise.types import InferenceResponse

SETTINGS = ModelSettings(name="m", implementation="x.M")


class Counter(MLModel):
    async_backend = "trio"
    produced = 0
    closed = False

    async def predict_stream(self, payloads):  # type: ignore[no-untyped-def, override]
        try:
            for i in range(1000):
                Counter.produced = i + 1
                yield InferenceResponse(model_name="m", outputs=[])
                if i == 2:
                    raise ValueError("three is enough")
        finally:
            Counter.closed = True


async def no_requests():  # type: ignore[no-untyped-def]
    return
    yield


async def test_model_error_travels_as_the_last_item() -> None:
    async with open_stream(Counter(SETTINGS), no_requests(), lambda r: r) as items:
        batches = []
        while batch := await receive_batch(items):
            batches.extend(batch)
    assert len(batches) == 4 and isinstance(batches[-1], StreamError)
    assert "three is enough" in str(batches[-1].error)


async def test_an_exception_leaving_the_block_is_raised_as_itself() -> None:
    """Regression: closing the channel inside the cancelled nursery used to replace the
    exception by a Cancelled that the nursery then absorbed: the error vanished."""
    with pytest.raises(KeyError):
        async with open_stream(Counter(SETTINGS), no_requests(), lambda r: r) as items:
            await items.receive()
            raise KeyError("transport failed")
    assert Counter.closed


async def test_outer_cancellation_is_not_swallowed_and_closes_the_model() -> None:
    Counter.closed = False
    with trio.move_on_after(0.05) as scope:
        async with open_stream(Counter(SETTINGS), no_requests(), lambda r: r, buffer=1):
            await trio.sleep_forever()
    assert scope.cancelled_caught and Counter.closed


async def test_backpressure_holds_the_model_at_the_buffer_size() -> None:
    class Endless(MLModel):
        async_backend = "trio"
        produced = 0

        async def predict_stream(self, payloads):  # type: ignore[no-untyped-def, override]
            while True:
                Endless.produced += 1
                yield InferenceResponse(model_name="m", outputs=[])

    async with open_stream(Endless(SETTINGS), no_requests(), lambda r: r, buffer=4):
        await trio.sleep(0.05)  # nobody reads
        assert Endless.produced <= 4 + 1  # the buffer, plus the one waiting to be sent
