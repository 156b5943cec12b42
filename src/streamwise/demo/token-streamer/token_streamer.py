"""Streams ``n`` tokens (``"token-0"``, ``"token-1"``, ...), ``delay_s`` seconds apart.

A trio-native model: the fast path for benchmarks and the conformance suite. Inputs that
pass the server's validation but make no sense to this model (``n`` negative, a NaN
delay, a tensor of several values) are refused with :class:`InferenceError`, the
client's error, never a crash of the model.
"""

import math
from collections.abc import AsyncIterator

import trio

from streamwise import MLModel
from streamwise.codecs import NumpyCodec, StringCodec
from streamwise.errors import InferenceError
from streamwise.types import InferenceRequest, InferenceResponse


def _one_value(payload: InferenceRequest, name: str, default: float | None = None) -> float:
    """The single value of input ``name`` (sent as ``[v]``, ``[[v]]`` or a lone ``v``)."""
    tensor = next((inp for inp in payload.inputs if inp.name == name), None)
    if tensor is None:
        if default is None:
            raise InferenceError(f"input {name!r} is required")
        return default
    values = NumpyCodec.decode_input(tensor).reshape(-1)
    if values.size != 1:
        raise InferenceError(f"input {name!r} must hold one value, it holds {values.size}")
    return float(values[0])


class TokenStreamer(MLModel):
    async_backend = "trio"

    async def predict_stream(
        self, payloads: AsyncIterator[InferenceRequest]
    ) -> AsyncIterator[InferenceResponse]:
        async for payload in payloads:
            n = _one_value(payload, "n")
            delay_s = _one_value(payload, "delay_s", 0.0)
            if not 0 <= n < 2**63:
                raise InferenceError(f"input 'n' must be a count of tokens, got {n:g}")
            if not (math.isfinite(delay_s) and delay_s >= 0):
                raise InferenceError(f"input 'delay_s' must be seconds, got {delay_s:g}")
            for i in range(int(n)):
                if delay_s:
                    await trio.sleep(delay_s)
                yield InferenceResponse(
                    model_name=self.name,
                    outputs=[StringCodec.encode_output("token", [f"token-{i}"])],
                )
