"""Streams ``n`` tokens (``"token-0"``, ``"token-1"``, ...), ``delay_s`` seconds apart.

A trio-native model: the fast path for benchmarks and the conformance suite.
"""

from collections.abc import AsyncIterator

import trio

from streamwise import MLModel
from streamwise.codecs import StringCodec
from streamwise.types import InferenceRequest, InferenceResponse


class TokenStreamer(MLModel):
    async_backend = "trio"

    async def predict_stream(
        self, payloads: AsyncIterator[InferenceRequest]
    ) -> AsyncIterator[InferenceResponse]:
        async for payload in payloads:
            inputs = {inp.name: inp.data.root for inp in payload.inputs}
            n = int(inputs["n"][0])
            delay_s = float(inputs.get("delay_s", [0.0])[0])
            for i in range(n):
                if delay_s:
                    await trio.sleep(delay_s)
                yield InferenceResponse(
                    model_name=self.name,
                    outputs=[StringCodec.encode_output("token", [f"token-{i}"])],
                )
