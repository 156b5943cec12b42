"""Nursery-owned pipelines between transports and models, shared by REST and gRPC.

Transports call :func:`infer` for unary calls and :func:`open_stream` for streams; they
never touch a model directly. Nothing here imports a transport or asyncio.
"""

from .calls import asyncio_loop, call, infer, iterate
from .pipeline import StreamError, open_stream, receive_batch, single

__all__ = [
    "asyncio_loop",
    "call",
    "infer",
    "iterate",
    "open_stream",
    "receive_batch",
    "single",
    "StreamError",
]
