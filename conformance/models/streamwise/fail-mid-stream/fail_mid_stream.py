"""Streams `n` tokens (default 2), then raises. Unary inference raises at once."""

from typing import AsyncIterator

from streamwise import MLModel
from streamwise.codecs import StringCodec
from streamwise.types import InferenceRequest, InferenceResponse


class FailMidStream(MLModel):
    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        raise RuntimeError("fail-mid-stream: this model always fails")

    async def predict_stream(
        self, payloads: AsyncIterator[InferenceRequest]
    ) -> AsyncIterator[InferenceResponse]:
        async for payload in payloads:
            inputs = {i.name: i for i in payload.inputs}
            n = int(inputs["n"].data.root[0]) if "n" in inputs else 2
            for i in range(n):
                yield InferenceResponse(
                    model_name=self.name,
                    outputs=[StringCodec.encode_output("token", [f"token-{i}"], use_bytes=True)],
                )
            raise RuntimeError(f"fail-mid-stream: failing after {n} responses")
