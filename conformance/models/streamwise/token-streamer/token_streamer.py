"""Streams `n` tokens ("token-0", "token-1", ...), `delay_s` seconds apart (default 0)."""

import asyncio
from typing import AsyncIterator

from streamwise import MLModel
from streamwise.codecs import StringCodec
from streamwise.types import InferenceRequest, InferenceResponse


class TokenStreamer(MLModel):
    async def predict_stream(
        self, payloads: AsyncIterator[InferenceRequest]
    ) -> AsyncIterator[InferenceResponse]:
        async for payload in payloads:
            inputs = {i.name: i for i in payload.inputs}
            n = int(inputs["n"].data.root[0]) if "n" in inputs else 10
            delay_s = float(inputs["delay_s"].data.root[0]) if "delay_s" in inputs else 0.0
            for i in range(n):
                if delay_s:
                    await asyncio.sleep(delay_s)
                yield InferenceResponse(
                    model_name=self.name,
                    outputs=[StringCodec.encode_output("token", [f"token-{i}"], use_bytes=True)],
                )
