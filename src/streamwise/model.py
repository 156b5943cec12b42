"""``MLModel``: the base class of every model, a drop-in for ``mlserver.MLModel``.

A model written for MLServer works after replacing ``mlserver`` by ``streamwise`` in its
imports. Its coroutines run on asyncio (through the trio-asyncio loop that ``serve()``
opens), because MLServer runtimes are asyncio code. A model written for trio or anyio says
``async_backend = "trio"`` and runs natively in trio tasks, without the bridge.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, ClassVar, Literal

from .errors import MethodNotImplemented
from .settings import ModelSettings
from .types import (
    InferenceRequest,
    InferenceResponse,
    MetadataModelResponse,
    MetadataTensor,
    Parameters,
    RequestInput,
    RequestOutput,
    ResponseOutput,
)

__all__ = ["MLModel"]


class MLModel:
    """Subclass it and override ``load``, ``predict`` and/or ``predict_stream``."""

    async_backend: ClassVar[Literal["asyncio", "trio"]] = "asyncio"
    """Where the model's coroutines run: ``"asyncio"`` (MLServer runtimes, the default)
    or ``"trio"`` (trio or anyio code, no bridge crossing per call)."""

    def __init__(self, settings: ModelSettings) -> None:
        self._settings = settings
        self._inputs_index = {m.name: m for m in settings.inputs}
        self.ready = False

    # -- identity and metadata --
    @property
    def name(self) -> str:
        return self._settings.name

    @property
    def version(self) -> str | None:
        return self._settings.version

    @property
    def settings(self) -> ModelSettings:
        return self._settings

    @property
    def inputs(self) -> list[MetadataTensor]:
        return list(self._settings.inputs)

    @property
    def outputs(self) -> list[MetadataTensor]:
        return list(self._settings.outputs)

    async def metadata(self) -> MetadataModelResponse:
        params = self._settings.parameters
        return MetadataModelResponse(
            name=self.name,
            versions=list(self._settings.versions),
            platform=self._settings.platform,
            inputs=self.inputs,
            outputs=self.outputs,
            parameters=(
                Parameters(content_type=params.content_type)
                if params and params.content_type
                else None
            ),
        )

    # -- lifecycle --
    async def load(self) -> bool:
        """Load weights and warm up. Return False (or raise) to fail the load."""
        return True

    async def unload(self) -> bool:
        return True

    # -- inference --
    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        raise MethodNotImplemented(
            f"model {self.name!r} does not implement predict(); "
            "if it streams, call generate_stream / infer_stream"
        )

    async def predict_stream(
        self, payloads: AsyncIterator[InferenceRequest]
    ) -> AsyncIterator[InferenceResponse]:
        """One response per request, through ``predict``, unless overridden."""
        async for payload in payloads:
            yield await self.predict(payload)

    # -- codec helpers, as MLServer's MLModel has them --
    def decode(self, request_input: RequestInput, default_codec: Any = None) -> Any:
        from .codecs.utils import decode_request_input

        return decode_request_input(
            request_input, self._inputs_index.get(request_input.name), default_codec
        )

    def decode_request(self, inference_request: InferenceRequest, default_codec: Any = None) -> Any:
        from .codecs.utils import decode_inference_request

        return decode_inference_request(inference_request, self._settings, default_codec)

    def encode_response(self, payload: Any, default_codec: Any = None) -> InferenceResponse:
        from .codecs.utils import encode_inference_response

        return encode_inference_response(payload, self._settings, default_codec)

    def encode(
        self, payload: Any, request_output: RequestOutput, default_codec: Any = None
    ) -> ResponseOutput:
        from .codecs.utils import encode_response_output

        return encode_response_output(payload, request_output, default_codec)
