"""The model of Triton's generate dialect (extension_generate.md): `text_input` in,
`text_output` out. Unary inference answers the whole text; a stream its words ("What",
" is", ...), so that reassembling the events gives back the text. Request parameters:
`delay_s` between words (default 0), and `fail_after`: the stream raises after that
many words (0: before the first)."""

import asyncio
from typing import Any, AsyncIterator

from mlserver import MLModel
from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput


def _text(payload: InferenceRequest) -> str:
    [value] = [i for i in payload.inputs if i.name == "text_input"]
    data: Any = value.data.root
    while isinstance(data, list):
        data = data[0]
    return data.decode() if isinstance(data, bytes) else str(data)


def _parameter(payload: InferenceRequest, name: str) -> Any:
    return getattr(payload.parameters, name, None) if payload.parameters else None


class TextGenerator(MLModel):
    def _answer(self, text: str) -> InferenceResponse:
        output = ResponseOutput(name="text_output", shape=[1], datatype="BYTES", data=[text])
        return InferenceResponse(model_name=self.name, outputs=[output])

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        return self._answer(_text(payload))

    async def predict_stream(
        self, payloads: AsyncIterator[InferenceRequest]
    ) -> AsyncIterator[InferenceResponse]:
        async for payload in payloads:
            delay_s = float(_parameter(payload, "delay_s") or 0)
            fail_after = _parameter(payload, "fail_after")
            words = _text(payload).split(" ")
            for i, word in enumerate(words if fail_after is None else words[: int(fail_after)]):
                if delay_s:
                    await asyncio.sleep(delay_s)
                yield self._answer(word if i == 0 else " " + word)
            if fail_after is not None:
                raise RuntimeError(f"text-generator: failing after {fail_after} words")
