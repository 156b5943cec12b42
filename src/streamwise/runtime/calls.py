"""Calling a model on its own async backend, and turning its failures into our errors."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Any, TypeVar

import trio

from .. import _bridge
from ..errors import ModelFailed, StreamwiseError
from ..model import MLModel
from ..types import InferenceRequest, InferenceResponse

T = TypeVar("T")

asyncio_loop = _bridge.open_loop
"""``async with asyncio_loop():`` runs asyncio models outside ``serve()`` (tests, scripts)."""

CLOSE_TIMEOUT_S = 5.0
"""How long a cancelled model generator may take in its ``finally`` before we move on."""


async def call(model: MLModel, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """``await fn(*args)`` where ``fn`` is one of ``model``'s coroutine methods."""
    if model.async_backend == "trio":
        return await fn(*args)
    return await _bridge.run(fn, *args)


async def iterate(model: MLModel, agen: AsyncIterator[T]) -> AsyncGenerator[T, None]:
    """Iterate one of ``model``'s async generators and always close it.

    The caller must not yield across this generator from another task; the pipeline
    consumes it from the one task that owns it.
    """
    if model.async_backend == "trio":
        async with aclosing(agen):  # type: ignore[type-var]  # an async generator, in fact
            async for item in agen:
                yield item
        return
    try:
        while True:
            try:
                item = await _bridge.anext(agen)
            except StopAsyncIteration:
                return
            yield item
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT_S):
            await _bridge.aclose(agen)  # type: ignore[arg-type]


def as_failure(exc: Exception) -> StreamwiseError:
    """Our error for whatever a model raised: its own if it is one, else a model failure."""
    return exc if isinstance(exc, StreamwiseError) else ModelFailed.from_exception(exc)


def check_response(model: MLModel, response: Any) -> InferenceResponse:
    if not isinstance(response, InferenceResponse):
        raise ModelFailed(
            f"model {model.name!r} gave a {type(response).__name__}, not an InferenceResponse"
        )
    return response


async def infer(model: MLModel, request: InferenceRequest) -> InferenceResponse:
    """One unary call. The caller's task owns it: cancelling the caller cancels the model."""
    try:
        response = await call(model, model.predict, request)
    except Exception as exc:
        raise as_failure(exc) from exc
    return check_response(model, response)
