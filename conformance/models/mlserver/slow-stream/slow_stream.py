"""Streams `n` tokens (default 100) `delay_s` apart (default 0.1 s) and keeps count of
its streams: how many started, ended (their `finally` ran), completed, or were stopped
early. Unary inference answers the counts, so that a client can see whether dropping a
stream stopped the model."""

import asyncio
from typing import AsyncIterator

from mlserver import MLModel
from mlserver.codecs import StringCodec
from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput


class SlowStream(MLModel):
    async def load(self) -> bool:
        self.counts = {"started": 0, "ended": 0, "completed": 0, "stopped": 0}
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        return InferenceResponse(
            model_name=self.name,
            outputs=[
                ResponseOutput(name=name, datatype="INT64", shape=[1], data=[count])
                for name, count in self.counts.items()
            ],
        )

    async def predict_stream(
        self, payloads: AsyncIterator[InferenceRequest]
    ) -> AsyncIterator[InferenceResponse]:
        payload = [_ async for _ in payloads][0]
        inputs = {i.name: i for i in payload.inputs}
        n = int(inputs["n"].data.root[0]) if "n" in inputs else 100
        delay_s = float(inputs["delay_s"].data.root[0]) if "delay_s" in inputs else 0.1
        self.counts["started"] += 1
        completed = False
        try:
            for i in range(n):
                await asyncio.sleep(delay_s)
                yield InferenceResponse(
                    model_name=self.name,
                    outputs=[StringCodec.encode_output("token", [f"token-{i}"], use_bytes=True)],
                )
            completed = True
        finally:
            self.counts["ended"] += 1
            self.counts["completed" if completed else "stopped"] += 1
