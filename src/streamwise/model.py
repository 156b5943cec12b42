"""``MLModel``: the base class of every model, a drop-in for ``mlserver.MLModel``.

A model written for MLServer works after replacing ``mlserver`` by ``streamwise`` in its
imports. Its coroutines run on asyncio (the native asyncio loop that ``serve()`` runs
inside its trio run), because MLServer runtimes are asyncio code.
A model written for trio or anyio says ``async_backend = "trio"`` and runs natively in
trio tasks, without the bridge.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, ClassVar, Literal

from .codecs.utils import (
    decode_inference_request,
    decode_request_input,
    encode_inference_response,
    encode_response_output,
    get_decoded,
    has_decoded,
)
from .errors import InferenceError, MethodNotImplemented
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
    """Where the model's coroutines run: ``"asyncio"`` (MLServer runtimes, the default:
    on the server's asyncio loop) or ``"trio"`` (trio or anyio code, in the server's trio
    tasks, no crossing at all)."""

    def __init__(self, settings: ModelSettings) -> None:
        self._settings = settings
        self._inputs_index = {m.name: m for m in settings.inputs}
        self._outputs_index = {m.name: m for m in settings.outputs}
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
        """The input decoded by its content type (input, metadata, then model default),
        else by ``default_codec``, else its raw data."""
        params = self._settings.parameters
        decoded = decode_request_input(
            request_input, self._inputs_index, params.content_type if params else None
        )
        if decoded is not None:
            return decoded
        if default_codec is not None:
            return default_codec.decode_input(request_input)
        return request_input.data

    def decode_request(self, inference_request: InferenceRequest, default_codec: Any = None) -> Any:
        """The request decoded by its content type (the request's, then the model's
        default), else by ``default_codec``, else the request itself: MLServer's order,
        which its runtimes rely on (``default_codec=NumpyRequestCodec``)."""
        decode_inference_request(inference_request, self._settings, self._inputs_index)
        if has_decoded(inference_request):
            return get_decoded(inference_request)
        if default_codec is not None:
            return default_codec.decode_request(inference_request)
        return inference_request

    def encode_response(self, payload: Any, default_codec: Any = None) -> InferenceResponse:
        response = encode_inference_response(payload, self._settings)
        if response is not None:
            return response
        if default_codec is not None:
            return default_codec.encode_response(self.name, payload, self.version)  # type: ignore[no-any-return]
        raise InferenceError(
            f"model {self.name!r} cannot encode a payload of type {type(payload).__name__}"
        )

    def encode(
        self, payload: Any, request_output: RequestOutput, default_codec: Any = None
    ) -> ResponseOutput:
        output = encode_response_output(payload, request_output, self._outputs_index)
        if output is not None:
            return output
        if default_codec is not None:
            return default_codec.encode_output(request_output.name, payload)  # type: ignore[no-any-return]
        raise InferenceError(
            f"model {self.name!r} cannot encode output {request_output.name!r} "
            f"of type {type(payload).__name__}"
        )
