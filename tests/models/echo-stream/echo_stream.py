"""asyncio (MLServer-style) bidi echo: one response per request, as each arrives."""

from streamwise import MLModel
from streamwise.types import InferenceResponse, ResponseOutput


class EchoStream(MLModel):
    async def predict_stream(self, payloads):
        async for payload in payloads:
            yield InferenceResponse(
                model_name=self.name,
                outputs=[
                    ResponseOutput(name=i.name, shape=i.shape, datatype=i.datatype, data=i.data)
                    for i in payload.inputs
                ],
            )
