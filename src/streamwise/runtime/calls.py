"""Model calls: the guard around each, unary calls, and turning whatever a model raised
into our errors."""

from __future__ import annotations

from dataclasses import dataclass

import trio

from .._bridge import open_loop
from ..errors import ModelFailed, RequestTimeout, StreamwiseError
from ..model import MLModel
from ..types import InferenceRequest, InferenceResponse
from .backends import Backend, check_response

asyncio_loop = open_loop
"""``async with asyncio_loop() as aio:`` runs asyncio models outside ``serve()`` (tests,
scripts), with ``Backends.on(aio)``."""


@dataclass(eq=False, slots=True)
class Guard:
    """The cancel scope around one model call, so that the data plane can end it: at its
    timeout (the scope's deadline) or when the server's grace period runs out (``end``).
    ``failure()`` says why it ended, for the client."""

    scope: trio.CancelScope
    timeout: float | None
    reason: StreamwiseError | None = None

    def end(self, reason: StreamwiseError) -> None:
        if self.reason is None:
            self.reason = reason
        self.scope.cancel()

    def failure(self) -> StreamwiseError:
        if self.reason is not None:
            return self.reason
        return RequestTimeout(f"request timed out after {self.timeout:g} s (request_timeout_s)")


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
