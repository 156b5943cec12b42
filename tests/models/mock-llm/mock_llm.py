"""Triton's ``mock_llm`` (qa/python_models/generate_models/mock_llm) as an MLServer-style
model, for tests/test_triton_generate.py: the same inputs (``PROMPT`` BYTES [1, 1],
``STREAM`` BOOL [1, 1], optional ``input_ids`` INT32 [1, -1]), the same output (``TEXT``)
and the same request parameters, read the way mock_llm reads them.

Triton runs mock_llm decoupled, one ``execute`` for every endpoint; an MLModel has a
unary ``predict`` (what ``generate`` calls) and a ``predict_stream`` (``generate_stream``):

- ``predict_stream`` is mock_llm's decoupled path: with ``STREAM`` true, ``REPETITION``
  (default 1) copies of the prompt as ``TEXT``, ``DELAY`` seconds before each, then, with
  ``FAIL_LAST``, a failure "An Error Occurred"; with ``STREAM`` false, one response.
  ``OUTPUT_0_DIM`` makes ``TEXT`` an empty tensor (shape [0]).
- ``predict`` is its non-decoupled path: ``TEXT`` is the prompt repeated ``REPETITION``
  times along axis 1 (shape [1, REPETITION]: 0 gives an empty tensor); ``OUTPUT_0_DIM``
  empties it too. (Non-decoupled mock_llm refuses ``STREAM`` true; the decoupled one,
  which Triton's tests use, answers it on ``generate`` with one response: so does this.)
"""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from streamwise import MLModel
from streamwise.types import InferenceRequest, InferenceResponse, ResponseOutput


def _flat(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    out: list[Any] = []
    for item in data:
        out.extend(_flat(item))
    return out


class MockLLM(MLModel):
    def _read(self, payload: InferenceRequest) -> tuple[list[Any], bool, dict[str, Any]]:
        tensors = {i.name: _flat(i.data.root) for i in payload.inputs}
        params = payload.parameters.model_dump() if payload.parameters is not None else {}
        return tensors["PROMPT"], bool(tensors["STREAM"][0]), params

    def _text(self, values: list[Any]) -> InferenceResponse:
        return InferenceResponse(
            model_name=self.name,
            outputs=[
                ResponseOutput(
                    name="TEXT",
                    shape=[1, len(values)] if values else [0],
                    datatype="BYTES",
                    data=values,
                )
            ],
        )

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        prompt, _, params = self._read(payload)
        repetition = params.get("REPETITION", 1)
        if params.get("OUTPUT_0_DIM", False):
            return self._text([])
        return self._text([p for p in prompt for _ in range(repetition)])

    async def predict_stream(
        self, payloads: AsyncIterator[InferenceRequest]
    ) -> AsyncIterator[InferenceResponse]:
        async for payload in payloads:
            prompt, stream, params = self._read(payload)
            response = self._text([] if params.get("OUTPUT_0_DIM", False) else prompt)
            if not stream:
                yield response
                continue
            delay = params.get("DELAY")
            for _ in range(params.get("REPETITION", 1)):
                if delay is not None:
                    await asyncio.sleep(delay)
                yield response
            if params.get("FAIL_LAST", False):
                raise RuntimeError("An Error Occurred")
