"""trio-native: unary inference that never answers (an hour), recording in ``probe`` when
it is stopped; ``predict_stream`` gives one token, then hangs likewise."""

import trio

from streamwise import MLModel
from streamwise.codecs import StringCodec
from streamwise.types import InferenceResponse
from tests.support import probe


class Hang(MLModel):
    async_backend = "trio"

    async def predict(self, payload):
        cancelled = False
        try:
            await trio.sleep(3600)
        except BaseException:
            cancelled = True
            raise
        finally:
            probe.record_finally(payload.id, cancelled)

    async def predict_stream(self, payloads):
        payload = [p async for p in payloads][0]
        cancelled = False
        try:
            yield InferenceResponse(
                model_name=self.name, outputs=[StringCodec.encode_output("out", ["t0"])]
            )
            await trio.sleep(3600)
        except BaseException:
            cancelled = True
            raise
        finally:
            probe.record_finally(payload.id, cancelled)
