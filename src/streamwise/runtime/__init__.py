"""Nursery-owned pipelines between transports and models, shared by REST and gRPC.

Transports call the :class:`~streamwise.runtime.dataplane.DataPlane`; they never touch a
model directly, nor ask on which loop it runs (``backends.py`` decides).
"""

from .backends import Backend, Backends, Requests
from .calls import asyncio_loop, infer
from .pipeline import Stream, open_stream

__all__ = ["Backend", "Backends", "Requests", "Stream", "asyncio_loop", "infer", "open_stream"]
