"""Streams `n` tokens ("token-0", "token-1", ...), `delay_s` seconds apart (default 0)."""

import asyncio
from typing import AsyncIterator

from streamwise import MLModel
from streamwise.codecs import StringCodec
from streamwise.types import InferenceRequest, InferenceResponse


def scalar(inputs, name, default):
    """The first element of input `name` (its data may be flat or nested), or `default`."""
    if name not in inputs:
        return default
    value = inputs[name].data.root
    while isinstance(value, list):
        value = value[0]
    return value


class TokenStreamer(MLModel):
    async def predict_stream(
        self, payloads: AsyncIterator[InferenceRequest]
    ) -> AsyncIterator[InferenceResponse]:
        async for payload in payloads:
            inputs = {i.name: i for i in payload.inputs}
            n = int(scalar(inputs, "n", 10))
            delay_s = float(scalar(inputs, "delay_s", 0.0))
            for i in range(n):
                if delay_s:
                    await asyncio.sleep(delay_s)
                yield InferenceResponse(
                    model_name=self.name,
                    outputs=[StringCodec.encode_output("token", [f"token-{i}"], use_bytes=True)],
                )
