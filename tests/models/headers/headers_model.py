"""Unary: what the model saw of the request's headers (gRPC metadata), recorded in
``probe`` and answered as a response header of its own making, ``x-seen``."""

from streamwise import MLModel
from streamwise.types import InferenceResponse, Parameters, ResponseOutput
from tests.support import probe


class Headers(MLModel):
    async def predict(self, payload):
        headers = dict((payload.parameters.headers if payload.parameters else None) or {})
        probe.headers_seen[payload.id or "?"] = headers
        seen = ",".join(f"{k}={v}" for k, v in sorted(headers.items()) if k.startswith("x-"))
        return InferenceResponse(
            model_name=self.name,
            parameters=Parameters(headers={"x-seen": seen}),
            outputs=[ResponseOutput(name="n", shape=[1], datatype="INT32", data=[len(headers)])],
        )
