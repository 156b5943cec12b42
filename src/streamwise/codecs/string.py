"""``str``: a list of Python strings as a BYTES tensor of shape ``[N, 1]``."""

from __future__ import annotations

from typing import Any

from ..types import RequestInput, ResponseOutput
from .base import InputCodec, register_input_codec, register_request_codec
from .errors import CodecError
from .lists import ListElement, as_items, flatten, is_list_of
from .utils import InputOrOutput, SingleInputRequestCodec, tensor_label

__all__ = ["StringCodec", "StringRequestCodec", "encode_str", "decode_str"]

_DefaultStrCodec = "utf-8"


def encode_str(elem: str) -> bytes:
    return elem.encode(_DefaultStrCodec)


def decode_str(encoded: ListElement, str_codec: str = _DefaultStrCodec) -> str:
    """A str as it is; bytes decoded (UTF-8 unless told); anything else is an error."""
    if isinstance(encoded, str):
        return encoded
    if isinstance(encoded, bytes | bytearray):
        try:
            return encoded.decode(str_codec)
        except UnicodeDecodeError as exc:
            raise CodecError(f"not valid {str_codec}: {exc}") from None
    raise CodecError(f"expected str or bytes elements, got {type(encoded).__name__}")


def _encode_elements(name: str, payload: list[Any], use_bytes: bool) -> list[Any]:
    try:
        if use_bytes:
            return [elem.encode(_DefaultStrCodec) for elem in payload]
        if all(type(elem) is str for elem in payload):
            return list(payload)
    except (AttributeError, UnicodeEncodeError):
        pass
    # Slow path: bytes elements pass through; anything else is reported.
    out: list[Any] = []
    for elem in payload:
        if isinstance(elem, bytes):
            try:
                out.append(elem if use_bytes else decode_str(elem))
            except CodecError as exc:
                raise CodecError(f"output {name!r}: {exc}") from None
        elif isinstance(elem, str):
            try:
                out.append(elem.encode(_DefaultStrCodec) if use_bytes else elem)
            except UnicodeEncodeError as exc:
                raise CodecError(f"output {name!r}: cannot encode as UTF-8: {exc}") from None
        else:
            raise CodecError(
                f"output {name!r}: StringCodec encodes str elements, got {type(elem).__name__}"
            )
    return out


def _fields(content_type: str, name: str, payload: Any, use_bytes: bool) -> dict[str, Any]:
    items = as_items(payload)
    return {
        "name": name,
        "shape": [len(items), 1],
        "datatype": "BYTES",
        "parameters": {"content_type": content_type},
        "data": _encode_elements(name, items, use_bytes),
    }


def _decode(tensor: InputOrOutput) -> list[str]:
    data = tensor.data.root
    items = flatten(data)
    if all(type(elem) is str for elem in items):
        return list(items)
    try:
        return [decode_str(elem) for elem in items]
    except CodecError as exc:
        raise CodecError(f"{tensor_label(tensor)}: {exc}") from None


@register_input_codec
class StringCodec(InputCodec):
    """Python strings as a BYTES tensor; decoding accepts str or bytes elements."""

    ContentType = "str"
    TypeHint = list[str]

    @classmethod
    def can_encode(cls, payload: Any) -> bool:
        return is_list_of(payload, str)

    @classmethod
    def encode_output(
        cls, name: str, payload: list[str], use_bytes: bool = True, **kwargs: Any
    ) -> ResponseOutput:
        # model_validate on a dict is the cheapest way to a fresh, validated output.
        return ResponseOutput.model_validate(_fields(cls.ContentType, name, payload, use_bytes))

    @classmethod
    def decode_output(cls, response_output: ResponseOutput) -> list[str]:
        return _decode(response_output)

    @classmethod
    def encode_input(
        cls, name: str, payload: list[str], use_bytes: bool = True, **kwargs: Any
    ) -> RequestInput:
        return RequestInput.model_validate(_fields(cls.ContentType, name, payload, use_bytes))

    @classmethod
    def decode_input(cls, request_input: RequestInput) -> list[str]:
        return _decode(request_input)


@register_request_codec
class StringRequestCodec(SingleInputRequestCodec):
    """A request (response) whose single tensor is a list of strings."""

    InputCodec = StringCodec
    ContentType = StringCodec.ContentType
    TypeHint = list[str]
