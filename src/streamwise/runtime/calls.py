"""Unary model calls, and turning whatever a model raised into our errors."""

from __future__ import annotations

from .._bridge import open_loop
from ..errors import ModelFailed, StreamwiseError
from ..model import MLModel
from ..types import InferenceRequest, InferenceResponse
from .backends import Backend, check_response

asyncio_loop = open_loop
"""``async with asyncio_loop() as aio:`` runs asyncio models outside ``serve()`` (tests,
scripts), with ``Backends.on(aio)``."""


def as_failure(exc: Exception) -> StreamwiseError:
    """Our error for whatever a model raised: its own if it is one, else a model failure."""
    return exc if isinstance(exc, StreamwiseError) else ModelFailed.from_exception(exc)


async def infer(backend: Backend, model: MLModel, request: InferenceRequest) -> InferenceResponse:
    """One unary call. The caller's task owns it: cancelling the caller cancels the model."""
    try:
        response = await backend.call(model.predict, request)
    except Exception as exc:
        raise as_failure(exc) from exc
    return check_response(model, response)
