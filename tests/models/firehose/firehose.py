"""trio-native: 64 KiB responses, as fast as it may, forever; counts what it yielded
(``probe.progress``) and records when it was stopped. For slow-reader checks."""

import trio

from streamwise import MLModel
from streamwise.types import InferenceResponse, ResponseOutput
from tests.support import probe

CHUNK = "x" * 65536


class Firehose(MLModel):
    async_backend = "trio"

    async def predict_stream(self, payloads):
        payload = [p async for p in payloads][0]
        probe.progress[payload.id] = 0
        cancelled = False
        try:
            while True:
                yield InferenceResponse(
                    model_name=self.name,
                    outputs=[ResponseOutput(name="o", datatype="BYTES", shape=[1], data=[CHUNK])],
                )
                probe.progress[payload.id] += 1
                await trio.lowlevel.checkpoint()
        except BaseException:
            cancelled = True
            raise
        finally:
            probe.record_finally(payload.id, cancelled)
