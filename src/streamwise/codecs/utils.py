"""Decoding requests / encoding responses with content types (``mlserver.codecs.utils``).

Which codec decodes a request input, first match wins:

1. ``input.parameters.content_type``;
2. the model metadata's input of that name, its ``parameters.content_type``;
3. the model default, ``model_settings.parameters.content_type`` (if it names an input codec).

The whole request: ``request.parameters.content_type``, then the model default.
``model_settings`` is duck-typed: ``.inputs`` (metadata tensors), ``.parameters``
(``None`` or an object with ``.content_type`` and ``.version``) and ``.name``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from ..errors import show
from ..types import (
    InferenceRequest,
    InferenceResponse,
    MetadataTensor,
    Parameters,
    RequestInput,
    RequestOutput,
    ResponseOutput,
)
from .base import (
    InputCodecLike,
    RequestCodec,
    RequestCodecLike,
    find_input_codec,
    find_input_codec_by_payload,
    find_request_codec,
    find_request_codec_by_payload,
)
from .errors import CodecError
from .lists import is_list_of

__all__ = [
    "DecodedParameterName",
    "DefaultInputPrefix",
    "DefaultOutputPrefix",
    "InputOrOutput",
    "Codec",
    "Parametrised",
    "SingleInputRequestCodec",
    "decode_inference_request",
    "decode_request_input",
    "encode_inference_response",
    "encode_response_output",
    "get_decoded",
    "get_decoded_or_raw",
    "has_decoded",
    "inject_batch_dimension",
    "is_list_of",
    "tensor_label",
]

DefaultOutputPrefix = "output-"
DefaultInputPrefix = "input-"
DecodedParameterName = "_decoded_payload"

InputOrOutput = RequestInput | ResponseOutput
Codec = InputCodecLike | RequestCodecLike
Parametrised = InferenceRequest | RequestInput | RequestOutput | ResponseOutput | InferenceResponse


def inject_batch_dimension(shape: list[int]) -> list[int]:
    """``[N]`` becomes ``[N, 1]``; longer shapes are returned as they are."""
    return shape if len(shape) > 1 else [*shape, 1]


def tensor_label(tensor: Any) -> str:
    """``input 'x'`` or ``output 'y'``, for error messages."""
    kind = "input" if isinstance(tensor, RequestInput) else "output"
    return f"{kind} {show(getattr(tensor, 'name', '?'))}"


def _content_type_of(tagged: Any) -> str | None:
    params = getattr(tagged, "parameters", None) if tagged is not None else None
    content_type = getattr(params, "content_type", None) if params is not None else None
    return content_type or None


def _metadata_index(model_settings: Any) -> dict[str, MetadataTensor]:
    inputs = getattr(model_settings, "inputs", None) or ()
    return {tensor.name: tensor for tensor in inputs}


def _save_decoded(parametrised: Parametrised, decoded_payload: Any) -> None:
    if parametrised.parameters is None:
        parametrised.parameters = Parameters()
    setattr(parametrised.parameters, DecodedParameterName, decoded_payload)


def has_decoded(parametrised_obj: Parametrised) -> bool:
    params = parametrised_obj.parameters
    return params is not None and hasattr(params, DecodedParameterName)


def get_decoded(parametrised_obj: Parametrised) -> Any:
    if has_decoded(parametrised_obj):
        return getattr(parametrised_obj.parameters, DecodedParameterName)
    return None


def get_decoded_or_raw(parametrised_obj: Parametrised) -> Any:
    """The decoded payload; else a tensor's ``data``; else the object itself."""
    if has_decoded(parametrised_obj):
        return get_decoded(parametrised_obj)
    if isinstance(parametrised_obj, RequestInput | ResponseOutput):
        return parametrised_obj.data
    return parametrised_obj


def decode_request_input(
    request_input: RequestInput,
    metadata_inputs: Mapping[str, MetadataTensor] = {},  # noqa: B006 - MLServer's signature
    default_content_type: str | None = None,
) -> Any | None:
    """Decode one input with its content type (see the module doc); ``None`` if none applies."""
    content_type = (
        _content_type_of(request_input)
        or _content_type_of(metadata_inputs.get(request_input.name))
        or default_content_type
    )
    if content_type is None:
        return None
    codec = find_input_codec(content_type)
    if codec is None:
        return None
    decoded = codec.decode_input(request_input)
    _save_decoded(request_input, decoded)
    return decoded


def decode_inference_request(
    inference_request: InferenceRequest,
    model_settings: Any = None,
    metadata_inputs: Mapping[str, MetadataTensor] = {},  # noqa: B006 - MLServer's signature
) -> Any | None:
    """Decode each input, then the request; the request itself if no request codec applies."""
    model_default = _content_type_of(model_settings)
    index = metadata_inputs or _metadata_index(model_settings)
    for request_input in inference_request.inputs:
        decode_request_input(request_input, index, model_default)

    content_type = _content_type_of(inference_request) or model_default
    if content_type is not None:
        codec = find_request_codec(content_type)
        if codec is not None:
            decoded = codec.decode_request(inference_request)
            _save_decoded(inference_request, decoded)
            return decoded
    return inference_request


def encode_response_output(
    payload: Any,
    request_output: RequestOutput,
    metadata_outputs: Mapping[str, MetadataTensor] = {},  # noqa: B006 - MLServer's signature
) -> ResponseOutput | None:
    """Encode a payload as the requested output: its content type, else by payload type."""
    content_type = _content_type_of(request_output) or _content_type_of(
        metadata_outputs.get(request_output.name)
    )
    codec = find_input_codec(content_type) if content_type else find_input_codec_by_payload(payload)
    if codec is None:
        return None
    return codec.encode_output(name=request_output.name, payload=payload)


def encode_inference_response(payload: Any, model_settings: Any) -> InferenceResponse | None:
    """Encode a whole payload with the request codec that can encode it, if any."""
    codec = find_request_codec_by_payload(payload)
    if codec is None:
        return None
    params = getattr(model_settings, "parameters", None)
    model_version = getattr(params, "version", None) if params is not None else None
    return codec.encode_response(model_settings.name, payload, model_version)


class SingleInputRequestCodec(RequestCodec):
    """A request codec that is its single tensor, decoded with ``InputCodec``."""

    InputCodec: ClassVar[InputCodecLike | None] = None

    @classmethod
    def _input_codec(cls) -> InputCodecLike:
        if cls.InputCodec is None:
            raise NotImplementedError(f"No input codec found for {cls.__name__} request codec")
        return cls.InputCodec

    @classmethod
    def can_encode(cls, payload: Any) -> bool:
        return cls.InputCodec is not None and cls.InputCodec.can_encode(payload)

    @classmethod
    def encode_response(
        cls, model_name: str, payload: Any, model_version: str | None = None, **kwargs: Any
    ) -> InferenceResponse:
        output = cls._input_codec().encode_output(f"{DefaultOutputPrefix}1", payload, **kwargs)
        return InferenceResponse(
            model_name=model_name, model_version=model_version, outputs=[output]
        )

    @classmethod
    def decode_response(cls, response: InferenceResponse) -> Any:
        if len(response.outputs) != 1:
            raise CodecError(
                f"The '{cls.ContentType}' codec only supports a single output tensor "
                f"({len(response.outputs)} were received)"
            )
        first = response.outputs[0]
        if not has_decoded(first) and cls.InputCodec is not None:
            _save_decoded(first, cls.InputCodec.decode_output(first))
        return get_decoded_or_raw(first)

    @classmethod
    def encode_request(cls, payload: Any, **kwargs: Any) -> InferenceRequest:
        inp = cls._input_codec().encode_input(f"{DefaultInputPrefix}1", payload, **kwargs)
        return InferenceRequest(inputs=[inp])

    @classmethod
    def decode_request(cls, request: InferenceRequest) -> Any:
        if len(request.inputs) != 1:
            raise CodecError(
                f"The '{cls.ContentType}' codec only supports a single input tensor "
                f"({len(request.inputs)} were received)"
            )
        first = request.inputs[0]
        if not has_decoded(first) and cls.InputCodec is not None:
            _save_decoded(first, cls.InputCodec.decode_input(first))
        return get_decoded_or_raw(first)
