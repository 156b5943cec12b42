"""The SSE response body: a Quart ``ResponseBody`` that owns the model's stream.

Quart sends a response as ``async with body: async for chunk in body: send(chunk)``, all
in the request's task, so ``__aenter__`` opens the pipeline's nursery and ``__aexit__``
closes it: the model's generator is owned by the request and cannot outlive it. A client
disconnect cancels quart-trio's request nursery; the cancellation lands in the ``send``
or in our ``__anext__``, then ``__aexit__`` cancels the pump and the model's ``finally``
runs before the request is done.

Events already waiting in the channel go out as one chunk (one write), not one each.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from types import TracebackType

from quart.wrappers.response import ResponseBody

from ..errors import StreamwiseError
from ..protocol import sse
from ..runtime import Stream
from ..runtime.dataplane import Call, DataPlane
from ..types import InferenceResponse


def _encode(response: InferenceResponse) -> bytes:
    return sse.data_event(response.model_dump_json())


class SSEBody(ResponseBody):
    HEADERS = sse.STREAM_HEADERS

    def __init__(self, dataplane: DataPlane, call: Call) -> None:
        self._dataplane = dataplane
        self._call = call
        self._stack = AsyncExitStack()
        self._stream: Stream[bytes] | None = None
        self._done = False
        self._failed: bytes | None = None

    async def __aenter__(self) -> SSEBody:
        try:
            self._stream = await self._stack.enter_async_context(
                self._dataplane.stream(self._call, _encode)
            )
        except StreamwiseError as exc:  # e.g. unloaded since the request was checked
            self._failed = sse.error_event(str(exc))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.__aexit__(exc_type, exc, tb)

    def __aiter__(self) -> SSEBody:
        return self

    async def __anext__(self) -> bytes:
        if self._failed is not None:
            self._done, failed, self._failed = True, self._failed, None
            return failed
        if self._done or self._stream is None:
            raise StopAsyncIteration
        batch = await self._stream.take()
        if batch:
            return b"".join(batch)
        self._done = True
        failure = self._stream.failure
        if failure is None:
            raise StopAsyncIteration
        return sse.error_event(str(failure))
