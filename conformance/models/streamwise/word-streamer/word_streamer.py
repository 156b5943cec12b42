"""Streams the words of `text` like the document's model ("What", " is", ...), with no
pause unless `delay_s` asks for one: reassembling the events gives back the text."""

import asyncio
from typing import AsyncIterator

from streamwise import MLModel
from streamwise.codecs import StringCodec
from streamwise.types import InferenceRequest, InferenceResponse


class WordStreamer(MLModel):
    async def predict_stream(
        self, payloads: AsyncIterator[InferenceRequest]
    ) -> AsyncIterator[InferenceResponse]:
        async for payload in payloads:
            inputs = {i.name: i for i in payload.inputs}
            text = StringCodec.decode_input(inputs["text"])[0]
            delay_s = float(inputs["delay_s"].data.root[0]) if "delay_s" in inputs else 0.0
            for i, word in enumerate(text.split(" ")):
                if delay_s:
                    await asyncio.sleep(delay_s)
                yield InferenceResponse(
                    model_name=self.name,
                    outputs=[
                        StringCodec.encode_output(
                            "output", [word if i == 0 else " " + word], use_bytes=True
                        )
                    ],
                )
