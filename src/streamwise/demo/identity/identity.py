"""Identity: every input comes back as an output of the same name, datatype and shape.

A trio-native model (``async_backend = "trio"``): no asyncio bridge on its path.
"""

from collections.abc import AsyncIterator

from streamwise import MLModel
from streamwise.types import InferenceRequest, InferenceResponse, ResponseOutput


class Identity(MLModel):
    async_backend = "trio"

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            parameters=payload.parameters,
            outputs=[
                ResponseOutput(
                    name=inp.name,
                    shape=inp.shape,
                    datatype=inp.datatype,
                    parameters=inp.parameters,
                    data=inp.data,
                )
                for inp in payload.inputs
            ],
        )

    async def predict_stream(
        self, payloads: AsyncIterator[InferenceRequest]
    ) -> AsyncIterator[InferenceResponse]:
        async for payload in payloads:
            yield await self.predict(payload)
