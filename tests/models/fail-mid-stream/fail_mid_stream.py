"""asyncio (MLServer-style): two tokens, then an exception; ``predict`` fails at once."""

import asyncio

from streamwise import MLModel
from streamwise.codecs import StringCodec
from streamwise.types import InferenceResponse


class FailMidStream(MLModel):
    async def predict(self, payload):
        raise RuntimeError("the model broke")

    async def predict_stream(self, payloads):
        async for _ in payloads:
            pass
        for i in range(2):
            await asyncio.sleep(0)
            yield InferenceResponse(
                model_name=self.name, outputs=[StringCodec.encode_output("out", [f"t{i}"])]
            )
        raise ValueError("boom after two tokens")
