"""The asyncio bridge: the only code in streamwise that runs asyncio.

MLServer runtimes are asyncio code and grpclib is an asyncio server; both run on one
native asyncio loop (uvloop when installed) in a thread of its own (``loop.py``). Streams
cross between that loop and trio in batches, through a :class:`Handoff` (``handoff.py``).
"""

from .handoff import (
    ASYNCIO,
    FAIR_EVERY,
    TRIO,
    Abandoned,
    AsyncioParker,
    Handoff,
    Parker,
    Side,
    TrioParker,
    fill,
)
from .loop import CLOSE_TIMEOUT_S, AsyncioLoop, LoopKind, LoopStopped, every, open_loop

__all__ = [
    "ASYNCIO",
    "FAIR_EVERY",
    "TRIO",
    "Abandoned",
    "AsyncioLoop",
    "AsyncioParker",
    "CLOSE_TIMEOUT_S",
    "Handoff",
    "LoopKind",
    "LoopStopped",
    "Parker",
    "Side",
    "TrioParker",
    "every",
    "fill",
    "open_loop",
]
