"""The asyncio bridge: the only code in streamwise that runs asyncio.

MLServer runtimes are asyncio code and grpclib is an asyncio server; both run on one
native asyncio loop that a trio task runs in turns, inside the trio run (``loop.py``).
Streams go between the two loops in batches, through a :class:`Handoff` (``handoff.py``).
"""

from .handoff import (
    ASYNCIO,
    FAIR_EVERY,
    FIRST_WINDOW,
    TRIO,
    Abandoned,
    AsyncioParker,
    Handoff,
    Parker,
    Side,
    TrioParker,
    fill,
)
from .loop import CLOSE_TIMEOUT_S, TURN_S, AsyncioLoop, LoopStopped, open_loop

__all__ = [
    "ASYNCIO",
    "FAIR_EVERY",
    "FIRST_WINDOW",
    "TRIO",
    "TURN_S",
    "Abandoned",
    "AsyncioLoop",
    "AsyncioParker",
    "CLOSE_TIMEOUT_S",
    "Handoff",
    "LoopStopped",
    "Parker",
    "Side",
    "TrioParker",
    "fill",
    "open_loop",
]
