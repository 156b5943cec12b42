"""Running a server until a signal: the first SIGINT or SIGTERM drains it, a second stops
it at once. The command's one process and each worker process run their server here
(``cli.py``, ``workers.py``)."""

from __future__ import annotations

import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import trio

__all__ = ["Running", "until_signalled"]


class Running(Protocol):
    """What a server started by :func:`until_signalled` returns: a one-process server's
    ``ServerInfo``, or the supervisor's ``SupervisorInfo``."""

    @property
    def shutting_down(self) -> bool: ...

    def shutdown(self) -> None: ...


R = TypeVar("R", bound=Running)


async def until_signalled(
    run: Callable[..., Awaitable[None]],
    grace: float,
    started: Callable[[R], Awaitable[None]] | None = None,
) -> None:
    """``nursery.start(run)``, then ``started(info)`` beside it; the first SIGINT/SIGTERM
    drains (``info.shutdown()``), a second stops at once. Returns once ``run`` has."""
    log = logging.getLogger("streamwise")
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def run_server(*, task_status: trio.TaskStatus[R]) -> None:
                await run(task_status=task_status)
                nursery.cancel_scope.cancel()  # drained: stop listening for signals

            info: R = await nursery.start(run_server)
            if started is not None:
                nursery.start_soon(started, info)
            async for signum in signals:
                name = signal.Signals(signum).name
                if info.shutting_down:
                    log.warning("%s again: stopping now", name)
                    info.shutdown()  # workers: passed on, each stops at once
                    nursery.cancel_scope.cancel()
                    break
                log.info(
                    "%s: shutting down (up to %g s for calls in flight; again to stop now)",
                    name,
                    grace,
                )
                info.shutdown()
