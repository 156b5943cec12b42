"""``base64``: a list of bytes as a BYTES tensor of base64 text, shape ``[N, 1]``."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from ..types import RequestInput, ResponseOutput
from .base import InputCodec, register_input_codec
from .errors import CodecError
from .lists import ListElement, as_items, flatten, is_list_of
from .utils import InputOrOutput, tensor_label

__all__ = ["Base64Codec"]

_Base64StrCodec = "ascii"


def _ensure_bytes(elem: ListElement) -> bytes:
    if isinstance(elem, bytes):
        return elem
    if isinstance(elem, str):
        return elem.encode("utf-8")
    if isinstance(elem, bytearray | memoryview):
        return bytes(elem)
    raise CodecError(f"Base64Codec handles bytes or str elements, got {type(elem).__name__}")


def _encode_base64(elem: ListElement, use_bytes: bool) -> bytes | str:
    encoded = base64.b64encode(_ensure_bytes(elem))
    return encoded if use_bytes else encoded.decode(_Base64StrCodec)


def _decode_base64(elem: ListElement) -> bytes:
    """Valid base64 is decoded; anything else is taken as the raw bytes (as MLServer does)."""
    raw = _ensure_bytes(elem)
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        return raw


def _fields(name: str, payload: Any, use_bytes: bool) -> dict[str, Any]:
    items = as_items(payload)
    try:
        data = [_encode_base64(elem, use_bytes) for elem in items]
    except CodecError as exc:
        raise CodecError(f"output {name!r}: {exc}") from None
    return {
        "name": name,
        "shape": [len(items), 1],
        "datatype": "BYTES",
        "parameters": {"content_type": Base64Codec.ContentType},
        "data": data,
    }


def _decode(tensor: InputOrOutput) -> list[bytes]:
    try:
        return [_decode_base64(elem) for elem in flatten(tensor.data.root)]
    except CodecError as exc:
        raise CodecError(f"{tensor_label(tensor)}: {exc}") from None


@register_input_codec
class Base64Codec(InputCodec):
    """Bytes as base64 text (``use_bytes`` picks bytes or str elements on the wire)."""

    ContentType = "base64"
    TypeHint = list[bytes]

    @classmethod
    def can_encode(cls, payload: Any) -> bool:
        return is_list_of(payload, bytes)

    @classmethod
    def encode_output(
        cls, name: str, payload: list[bytes], use_bytes: bool = True, **kwargs: Any
    ) -> ResponseOutput:
        return ResponseOutput.model_validate(_fields(name, payload, use_bytes))

    @classmethod
    def decode_output(cls, response_output: ResponseOutput) -> list[bytes]:
        return _decode(response_output)

    @classmethod
    def encode_input(
        cls, name: str, payload: list[bytes], use_bytes: bool = True, **kwargs: Any
    ) -> RequestInput:
        return RequestInput.model_validate(_fields(name, payload, use_bytes))

    @classmethod
    def decode_input(cls, request_input: RequestInput) -> list[bytes]:
        return _decode(request_input)
