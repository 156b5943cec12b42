"""``datetime``: a list of datetimes as a BYTES tensor of ISO 8601 text, shape ``[N, 1]``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ..errors import show
from ..types import RequestInput, ResponseOutput
from .base import InputCodec, register_input_codec
from .errors import CodecError
from .lists import ListElement, as_items, flatten, is_list_of
from .utils import InputOrOutput, tensor_label

__all__ = ["DatetimeCodec"]

_Datetime = str | datetime
_DatetimeStrCodec = "ascii"


def _encode_datetime(elem: _Datetime, use_bytes: bool) -> bytes | str:
    if isinstance(elem, datetime):
        iso = elem.isoformat()
    elif isinstance(elem, str):
        iso = elem  # already ISO-encoded upstream
    else:
        raise CodecError(f"DatetimeCodec encodes datetime elements, got {type(elem).__name__}")
    return iso.encode(_DatetimeStrCodec) if use_bytes else iso


def _decode_datetime(elem: ListElement) -> datetime:
    try:
        text = elem.decode(_DatetimeStrCodec) if isinstance(elem, bytes) else elem
        return datetime.fromisoformat(text)
    except (UnicodeDecodeError, TypeError, ValueError) as exc:
        raise CodecError(f"not an ISO 8601 datetime: {show(elem)} ({exc})") from None


def _fields(name: str, payload: Any, use_bytes: bool) -> dict[str, Any]:
    items = as_items(payload)
    try:
        data = [_encode_datetime(elem, use_bytes) for elem in items]
    except (CodecError, UnicodeEncodeError) as exc:
        raise CodecError(f"output {name!r}: {exc}") from None
    return {
        "name": name,
        "shape": [len(items), 1],
        "datatype": "BYTES",
        "parameters": {"content_type": DatetimeCodec.ContentType},
        "data": data,
    }


def _decode(tensor: InputOrOutput) -> list[datetime]:
    try:
        return [_decode_datetime(elem) for elem in flatten(tensor.data.root)]
    except CodecError as exc:
        raise CodecError(f"{tensor_label(tensor)}: {exc}") from None


@register_input_codec
class DatetimeCodec(InputCodec):
    """Datetimes (or ISO strings) as ISO 8601 text."""

    ContentType = "datetime"
    TypeHint = list[_Datetime]

    @classmethod
    def can_encode(cls, payload: Any) -> bool:
        return is_list_of(payload, datetime)

    @classmethod
    def encode_output(
        cls, name: str, payload: Sequence[_Datetime], use_bytes: bool = True, **kwargs: Any
    ) -> ResponseOutput:
        return ResponseOutput.model_validate(_fields(name, payload, use_bytes))

    @classmethod
    def decode_output(cls, response_output: ResponseOutput) -> list[datetime]:
        return _decode(response_output)

    @classmethod
    def encode_input(
        cls, name: str, payload: Sequence[_Datetime], use_bytes: bool = True, **kwargs: Any
    ) -> RequestInput:
        return RequestInput.model_validate(_fields(name, payload, use_bytes))

    @classmethod
    def decode_input(cls, request_input: RequestInput) -> list[datetime]:
        return _decode(request_input)
