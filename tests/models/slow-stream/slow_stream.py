"""trio-native: two tokens at once, then one a minute. Records its finally in ``probe``."""

import trio

from streamwise import MLModel
from streamwise.codecs import StringCodec
from streamwise.types import InferenceResponse
from tests.support import probe


class SlowStream(MLModel):
    async_backend = "trio"

    async def predict_stream(self, payloads):
        payload = [p async for p in payloads][0]
        cancelled = False
        try:
            for i in range(1000):
                if i >= 2:
                    await trio.sleep(60)
                yield InferenceResponse(
                    model_name=self.name, outputs=[StringCodec.encode_output("out", [f"t{i}"])]
                )
        except BaseException:
            cancelled = True
            raise
        finally:
            probe.record_finally(payload.id, cancelled)
