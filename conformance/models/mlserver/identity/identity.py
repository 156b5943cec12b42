"""Answers every input as an output of the same name, datatype, shape, data and
parameters, and the request's parameters as the response's. Unary, and one response per
request when streamed."""

from typing import AsyncIterator

from mlserver import MLModel
from mlserver.types import InferenceRequest, InferenceResponse, Parameters, ResponseOutput


class Identity(MLModel):
    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        parameters = None
        if payload.parameters is not None:
            # servers may add their own fields (MLServer: the request headers)
            echoed = payload.parameters.model_dump(exclude={"headers"}, exclude_none=True)
            parameters = Parameters(**echoed)
        return InferenceResponse(
            model_name=self.name,
            parameters=parameters,
            outputs=[
                ResponseOutput(
                    name=i.name,
                    datatype=i.datatype,
                    shape=i.shape,
                    data=i.data,
                    parameters=i.parameters,
                )
                for i in payload.inputs
            ],
        )

    async def predict_stream(
        self, payloads: AsyncIterator[InferenceRequest]
    ) -> AsyncIterator[InferenceResponse]:
        async for payload in payloads:
            yield await self.predict(payload)
