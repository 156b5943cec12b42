"""Bidirectional: answers each request as soon as it is read, before reading the next,
with the request's inputs as outputs and the request's id."""

from typing import AsyncIterator

from streamwise import MLModel
from streamwise.types import InferenceRequest, InferenceResponse, ResponseOutput


class EchoStream(MLModel):
    async def predict_stream(
        self, payloads: AsyncIterator[InferenceRequest]
    ) -> AsyncIterator[InferenceResponse]:
        async for payload in payloads:
            yield InferenceResponse(
                model_name=self.name,
                id=payload.id,
                outputs=[
                    ResponseOutput(name=i.name, datatype=i.datatype, shape=i.shape, data=i.data)
                    for i in payload.inputs
                ],
            )
