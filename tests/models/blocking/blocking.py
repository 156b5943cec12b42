"""A model doing what a model must not: blocking the event loop (time.sleep in predict)
for as long as its input `seconds` says. The watchdog's test subject."""

import time

from streamwise import MLModel
from streamwise.types import InferenceResponse


class Blocking(MLModel):
    async_backend = "trio"

    async def predict(self, payload):
        time.sleep(float(payload.inputs[0].data.root[0]))  # noqa: ASYNC251 (on purpose)
        return InferenceResponse(model_name=self.name, outputs=[])
