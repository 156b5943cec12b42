"""trio-native: ``tokens`` tokens ("t0", "t1", ...), the first after ``first_delay`` seconds,
each next one ``delay`` seconds after the previous one; all three are request parameters
(defaults 6, 0.5 and ``delay``). Records its finally in ``probe`` (scripts/soak.py)."""

import trio

from streamwise import MLModel
from streamwise.codecs import StringCodec
from streamwise.types import InferenceResponse
from tests.support import probe


class SoakStream(MLModel):
    async_backend = "trio"

    async def predict_stream(self, payloads):
        payload = [p async for p in payloads][0]
        tokens = int(getattr(payload.parameters, "tokens", 6))
        delay = float(getattr(payload.parameters, "delay", 0.5))
        first_delay = float(getattr(payload.parameters, "first_delay", delay))
        finished = False
        try:
            for i in range(tokens):
                await trio.sleep(first_delay if i == 0 else delay)
                yield InferenceResponse(
                    model_name=self.name, outputs=[StringCodec.encode_output("out", [f"t{i}"])]
                )
            finished = True
        finally:
            probe.record_finally(payload.id, not finished)
