"""The asyncio bridge: the loop thread, both crossings (results, errors, cancellation
either way), and the handoff between the two loops' threads."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import pytest
import trio
import trio.lowlevel
from hypothesis import given
from hypothesis import strategies as st

from streamwise._bridge import (
    ASYNCIO,
    TRIO,
    Abandoned,
    AsyncioLoop,
    Handoff,
    fill,
    open_loop,
)


@pytest.fixture(params=["uvloop", "asyncio"])
async def aio(request: pytest.FixtureRequest) -> AsyncIterator[AsyncioLoop]:
    async with open_loop(request.param) as loop:
        assert loop.kind == request.param
        yield loop


async def test_run_returns_the_result_from_the_loops_thread(aio: AsyncioLoop) -> None:
    async def where(x: int) -> tuple[int, int]:
        await asyncio.sleep(0)
        return x + 1, threading.get_ident()

    value, thread = await aio.run(where, 41)
    assert value == 42 and thread == aio.thread.ident != threading.get_ident()


async def test_run_raises_the_tasks_own_exception(aio: AsyncioLoop) -> None:
    async def fails() -> None:
        raise KeyError("on asyncio")

    with pytest.raises(KeyError, match="on asyncio"):
        await aio.run(fails)


async def test_cancelling_run_cancels_the_task_and_waits_for_its_finally(aio: AsyncioLoop) -> None:
    events: list[str] = []

    async def slow() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            events.append("cancelled")
            raise
        finally:
            await asyncio.sleep(0.01)  # a finally that awaits still completes
            events.append("finally")

    with trio.move_on_after(0.05) as scope:
        await aio.run(slow)
    assert scope.cancelled_caught
    assert events == ["cancelled", "finally"]  # before run() returned


async def test_to_trio_from_asyncio_and_back(aio: AsyncioLoop) -> None:
    trio_thread = threading.get_ident()

    async def on_trio(x: int) -> tuple[int, int]:
        await trio.lowlevel.checkpoint()
        return x * 2, threading.get_ident()

    async def on_asyncio() -> tuple[int, int]:
        return await aio.to_trio(on_trio, 21)

    assert await aio.run(on_asyncio) == (42, trio_thread)

    async def fails() -> None:
        raise ValueError("on trio")

    async def calls_fails() -> None:
        await aio.to_trio(fails)

    with pytest.raises(ValueError, match="on trio"):
        await aio.run(calls_fails)


async def test_cancelling_the_asyncio_caller_cancels_the_trio_task(aio: AsyncioLoop) -> None:
    events: list[str] = []

    async def on_trio() -> None:
        try:
            await trio.sleep_forever()
        finally:
            events.append("trio finally")

    async def caller() -> None:
        task = asyncio.ensure_future(aio.to_trio(on_trio))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        events.append("caller saw the cancel")

    await aio.run(caller)
    assert events == ["trio finally", "caller saw the cancel"]


async def test_leaving_the_block_stops_the_thread() -> None:
    async with open_loop() as aio:
        thread = aio.thread
        assert thread.is_alive()
    assert not thread.is_alive()


# -- the handoff --
async def produce_on_asyncio(aio: AsyncioLoop, handoff: Handoff[int], n: int) -> None:
    async def numbers() -> AsyncIterator[int]:
        for i in range(n):
            if i % 7 == 0:
                await asyncio.sleep(0)
            yield i

    async def produce() -> None:
        try:
            await fill(handoff, numbers(), lambda x: x, ASYNCIO)
        finally:
            handoff.end()

    await aio.run(produce)


async def test_items_cross_threads_in_order_and_in_batches(aio: AsyncioLoop) -> None:
    handoff: Handoff[int] = Handoff(64)
    got: list[int] = []
    batches = 0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(produce_on_asyncio, aio, handoff, 20_000)
        while batch := await handoff.take(TRIO.parker):
            got.extend(batch)
            batches += 1
    assert got == list(range(20_000))
    assert batches < 20_000  # a consumer that wakes takes everything waiting


async def test_backpressure_across_threads(aio: AsyncioLoop) -> None:
    handoff: Handoff[int] = Handoff(3)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(produce_on_asyncio, aio, handoff, 100)
        await trio.sleep(0.05)  # nobody takes
        assert handoff.poll() == [0, 1, 2]  # the producer waits for room, no further
        got = [0, 1, 2]
        while batch := await handoff.take(TRIO.parker):
            got.extend(batch)
    assert got == list(range(100))


async def test_abandoning_wakes_a_waiting_producer_with_abandoned(aio: AsyncioLoop) -> None:
    handoff: Handoff[int] = Handoff(1)

    async def endless() -> AsyncIterator[int]:
        while True:
            yield 1

    async def produce() -> str:
        try:
            await fill(handoff, endless(), lambda x: x, ASYNCIO)
        except Abandoned:
            return "abandoned"
        return "ended"

    async with trio.open_nursery() as nursery:

        async def run() -> None:
            result.append(await aio.run(produce))

        result: list[str] = []
        nursery.start_soon(run)
        await trio.sleep(0.05)  # the producer is parked, waiting for room
        handoff.abandon()
    assert result == ["abandoned"]


async def test_end_wakes_a_waiting_consumer_with_the_failure() -> None:
    handoff: Handoff[int] = Handoff(4)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(handoff.take, TRIO.parker)
        await trio.sleep(0.01)
        handoff.end(RuntimeError("the model failed"))
    assert handoff.failure is not None and handoff.poll() == []


@given(
    items=st.lists(st.integers(), max_size=300),
    capacity=st.integers(1, 40),
    limit=st.integers(1, 50),
)
async def test_every_item_arrives_once_in_order(
    items: list[int], capacity: int, limit: int
) -> None:
    """Same loop, any capacity and batch limit: nothing lost, nothing duplicated, the
    order kept, no batch over the limit, never more than ``capacity`` waiting."""
    handoff: Handoff[int] = Handoff(capacity)

    async def source() -> AsyncIterator[int]:
        for x in items:
            yield x

    async def produce() -> None:
        await fill(handoff, source(), lambda x: x, TRIO)
        handoff.end()

    got: list[int] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(produce)
        while batch := await handoff.take(TRIO.parker, limit):
            assert 0 < len(batch) <= min(limit, capacity)
            got.extend(batch)
    assert got == items
