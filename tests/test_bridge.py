"""The asyncio bridge: the asyncio loop a trio task runs (timers, sockets, other threads
all wake it), both crossings (results, errors, cancellation either way), and the handoff
between the two loops."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from functools import partial

import pytest
import sniffio
import trio
import trio.lowlevel
from hypothesis import given
from hypothesis import strategies as st

from streamwise._bridge import (
    ASYNCIO,
    FIRST_WINDOW,
    TRIO,
    Abandoned,
    AsyncioLoop,
    Handoff,
    fill,
    open_loop,
)


@pytest.fixture
async def aio() -> AsyncIterator[AsyncioLoop]:
    async with open_loop() as loop:
        yield loop


async def test_run_runs_the_coroutine_as_an_asyncio_task(aio: AsyncioLoop) -> None:
    async def where(x: int) -> tuple[int, object, str]:
        await asyncio.sleep(0)
        return x + 1, asyncio.get_running_loop(), sniffio.current_async_library()

    assert await aio.run(where, 41) == (42, aio.loop, "asyncio")
    assert sniffio.current_async_library() == "trio"  # and trio's again outside


def test_the_asyncio_internals_the_loop_is_run_by_are_there() -> None:
    """``loop.py`` reads these (CPython 3.11-3.13); a Python that changes them fails here."""
    loop = asyncio.SelectorEventLoop()
    try:
        assert hasattr(loop._ready, "popleft") and isinstance(loop._scheduled, list)
        assert isinstance(loop._selector.fileno(), int)
    finally:
        loop.close()


async def test_timers_sockets_and_other_threads_wake_the_loop(aio: AsyncioLoop) -> None:
    served = trio.Event()

    async def echo_once(stream: trio.SocketStream) -> None:
        await stream.send_all(await stream.receive_some())
        served.set()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, echo_once, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]

        async def on_asyncio() -> tuple[bytes, int]:
            await asyncio.sleep(0.02)  # a timer, with nothing else to do meanwhile
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"ping")
            answer = await reader.read(4)  # the selector: data from the trio side
            writer.close()
            other = await asyncio.to_thread(threading.get_ident)  # call_soon_threadsafe
            return answer, other

        with trio.fail_after(5):
            answer, other = await aio.run(on_asyncio)
        assert answer == b"ping" and other != threading.get_ident() and served.is_set()
        nursery.cancel_scope.cancel()


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
    async def on_trio(x: int) -> tuple[int, str]:
        await trio.lowlevel.checkpoint()
        return x * 2, sniffio.current_async_library()

    async def on_asyncio() -> tuple[int, str]:
        return await aio.to_trio(on_trio, 21)

    assert await aio.run(on_asyncio) == (42, "trio")

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


async def test_leaving_the_block_ends_what_still_runs_and_closes_the_loop() -> None:
    events: list[str] = []

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            events.append("finally")

    async def start() -> None:
        asyncio.get_running_loop().create_task(forever())
        await asyncio.sleep(0)

    async with open_loop() as aio:
        await aio.run(start)
    assert events == ["finally"] and aio.loop.is_closed()


# -- the handoff --
async def fill_with_numbers(handoff: Handoff[int], n: int, pause_every: int = 7) -> None:
    """On an asyncio loop: 0..n-1 into ``handoff`` (a pause every ``pause_every``), then its end."""

    async def numbers() -> AsyncIterator[int]:
        for i in range(n):
            if i % pause_every == 0:
                await asyncio.sleep(0)
            yield i

    try:
        await fill(handoff, numbers(), lambda x: x, ASYNCIO)
    finally:
        handoff.end()


async def produce_on_asyncio(aio: AsyncioLoop, handoff: Handoff[int], n: int) -> None:
    await aio.run(fill_with_numbers, handoff, n)


async def test_items_cross_loops_in_order_and_in_batches(aio: AsyncioLoop) -> None:
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


async def parked(handoff: Handoff[int], side: str) -> None:
    """Until the handoff's producer (or consumer) is parked: waiting, it can do no more."""
    with trio.fail_after(10):
        while getattr(handoff, f"_{side}") is None:  # noqa: ASYNC110 - no event for this
            await trio.sleep(0.001)


async def filled(handoff: Handoff[int], n: int) -> None:
    """Until the producer is parked, held by a full window: then exactly ``n`` wait."""
    await parked(handoff, "producer")
    assert len(handoff) == n


async def test_backpressure_across_loops_with_a_slow_start(aio: AsyncioLoop) -> None:
    """Before its consumer has taken anything, a producer may run FIRST_WINDOW items
    ahead; the room doubles with each batch taken, up to the capacity, never beyond."""
    handoff: Handoff[int] = Handoff(5)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(produce_on_asyncio, aio, handoff, 100)
        await filled(handoff, FIRST_WINDOW)  # nobody takes
        assert handoff.poll() == list(range(FIRST_WINDOW)) == [0, 1]
        await filled(handoff, 4)
        assert handoff.poll() == [2, 3, 4, 5]  # doubled
        await filled(handoff, 5)
        assert handoff.poll() == [6, 7, 8, 9, 10]  # the capacity
        await filled(handoff, 5)
        got = list(range(11)) + handoff.poll()  # type: ignore[operator]
        assert got == list(range(16))
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
        await parked(handoff, "producer")  # waiting for room
        handoff.abandon()
    assert result == ["abandoned"]


async def test_end_wakes_a_waiting_consumer_with_the_failure() -> None:
    handoff: Handoff[int] = Handoff(4)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(handoff.take, TRIO.parker)
        await parked(handoff, "consumer")
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


async def test_the_loop_wakes_for_its_timers_after_asyncio_rebuilds_the_timer_heap(
    aio: AsyncioLoop,
) -> None:
    """asyncio replaces its timer heap when cancelled timers pile up (every stream's write
    timeout is one): the loop once read the stale heap, whose head was a cancelled hour,
    and slept through a 1 ms timer for ~200 ms per stall (seen in the 100-stream bench)."""

    async def on_asyncio() -> None:
        loop = asyncio.get_running_loop()
        for handle in [loop.call_later(3600, print) for _ in range(300)]:
            handle.cancel()
        await asyncio.sleep(0)  # an iteration: asyncio drops the cancelled ones, new heap
        await asyncio.sleep(0.001)  # then only this timer is left to wake the loop

    with trio.fail_after(5):
        await aio.run(on_asyncio)


async def test_a_producer_in_another_thread_hands_over_in_order_with_backpressure() -> None:
    """The handoff is thread-safe (a lock around its deque; a parker woken from another
    thread goes through its loop's thread-safe entry): an asyncio loop in a thread of its
    own produces, trio consumes."""
    handoff: Handoff[int] = Handoff(8)
    produce = fill_with_numbers(handoff, 5000, pause_every=100)
    thread = threading.Thread(target=asyncio.run, args=(produce,))
    thread.start()
    got: list[int] = []
    try:
        with trio.fail_after(20):
            await filled(handoff, 2)  # nobody takes: the producer waits at the first window
            assert handoff.poll() == [0, 1]
            got += [0, 1]
            while batch := await handoff.take(TRIO.parker):
                assert len(batch) <= 8
                got.extend(batch)
    finally:
        await trio.to_thread.run_sync(thread.join)
    assert got == list(range(5000))
