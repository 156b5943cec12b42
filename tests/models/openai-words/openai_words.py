"""trio-native: streams its prompt's words back at once (the first as it is, the others
with a leading space, as the document's text model), one response each. Records the
request's parameters, the prompt it got and its ``finally`` in ``probe``, per request id.
The OpenAI-compatible API finds its input and output from its declared ones (``text``,
``word``) and takes its chat template from its settings."""

from streamwise import MLModel
from streamwise.codecs import StringCodec
from streamwise.types import InferenceResponse
from tests.support import probe


class OpenAIWords(MLModel):
    async_backend = "trio"

    async def predict_stream(self, payloads):
        payload = [p async for p in payloads][0]
        prompt = StringCodec.decode_input(payload.inputs[0])[0]
        probe.prompts[payload.id] = prompt
        params = payload.parameters
        probe.parameters_seen[payload.id] = params.model_dump(exclude_none=True) if params else {}
        cancelled = False
        try:
            for i, word in enumerate(prompt.split(" ")):
                yield InferenceResponse(
                    model_name=self.name,
                    outputs=[StringCodec.encode_output("word", [word if i == 0 else " " + word])],
                )
        except BaseException:
            cancelled = True
            raise
        finally:
            probe.record_finally(payload.id, cancelled)
