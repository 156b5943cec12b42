"""Protobuf bytes of the hot messages, written directly (sans-IO).

A streamed token is one ``ModelInferResponse``. betterproto2 builds a message object and
encodes it field by field (tens of microseconds for a tiny message); here the bytes are
written straight from our :class:`~streamwise.types.InferenceResponse`, with exactly the
meaning of :func:`~streamwise.grpc.convert.response_to_proto` (tests/test_grpc_convert.py
checks that both parse to the same message, for any response). proto3 rules: fields at
their default are left out, repeated scalars are packed, a map is repeated entries.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Any

from ..codecs.lists import flatten
from ..types import InferenceResponse, Parameters
from .convert import RAW_ONLY, data_to_raw, parameter_value

__all__ = [
    "encode_response",
    "frame",
    "triton_item",
    "triton_error",
    "TRITON_FINAL",
    "TRITON_NOT_FINAL",
]

_SMALL = [bytes([i]) for i in range(128)]
_U64 = 1 << 64


def _varint(value: int) -> bytes:
    if 0 <= value < 128:
        return _SMALL[value]
    if value < 0:
        value += _U64  # int32 and int64: two's complement, ten bytes
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _length(payload: bytes) -> bytes:
    n = len(payload)
    return _SMALL[n] if n < 128 else _varint(n)


# the key of field N with wire type length-delimited (2), varint (0), 64-bit (1)
_LD = [bytes([n << 3 | 2]) for n in range(16)]
_VAR = [bytes([n << 3]) for n in range(16)]
_F64 = [bytes([n << 3 | 1]) for n in range(16)]


def _delimited(field: int, payload: bytes) -> bytes:
    return _LD[field] + _length(payload) + payload


def _string(field: int, text: str) -> bytes:
    if not text:
        return b""
    data = text.encode()
    return _LD[field] + _length(data) + data


def _packed_varints(field: int, values: Iterable[int]) -> bytes:
    payload = b"".join(map(_varint, values))
    return _LD[field] + _length(payload) + payload if payload else b""


def _parameter(value: Any) -> bytes:
    choice, v = parameter_value(value)
    if choice == "bool_param":
        return b"\x08\x01" if v else b"\x08\x00"
    if choice == "int64_param":
        return _VAR[2] + _varint(v)
    if choice == "string_param":
        return _string(3, v) or b"\x1a\x00"  # set, even empty: a oneof has presence
    if choice == "double_param":
        return _F64[4] + struct.pack("<d", v)
    return _VAR[5] + _varint(v)  # uint64_param


def _parameters(field: int, params: Parameters | None) -> bytes:
    if params is None:
        return b""
    # its fields and extras as they are (what model_dump() gives, minus its cost)
    values = params.__dict__
    if params.__pydantic_extra__:
        values = {**values, **params.__pydantic_extra__}
    key = _LD[field]
    out = []
    for name, value in values.items():
        if value is None or name == "headers":  # headers travel as metadata
            continue
        entry = _string(1, name) + _delimited(2, _parameter(value))
        out.append(key + _length(entry) + entry)
    return b"".join(out)


def _contents(data: Any, datatype: str) -> bytes:
    """InferTensorContents of ``data`` (any nesting) for ``datatype``."""
    flat = flatten(data)
    if not flat:
        return b""
    if datatype == "BYTES":
        key = _LD[8]
        parts = []
        for item in flat:
            b = item.encode() if isinstance(item, str) else bytes(item)
            parts.append(key + _length(b) + b)
        return b"".join(parts)
    if datatype == "FP32":
        return _delimited(6, struct.pack(f"<{len(flat)}f", *flat))
    if datatype == "FP64":
        return _delimited(7, struct.pack(f"<{len(flat)}d", *flat))
    if datatype == "BOOL":
        return _delimited(1, bytes(1 if x else 0 for x in flat))
    return _packed_varints(_INT_FIELDS[datatype], (int(x) for x in flat))


_INT_FIELDS = {
    "INT8": 2, "INT16": 2, "INT32": 2,
    "INT64": 3,
    "UINT8": 4, "UINT16": 4, "UINT32": 4,
    "UINT64": 5,
}  # fmt: skip


def encode_response(response: InferenceResponse, raw: bool = False) -> bytes:
    """The ``ModelInferResponse`` for ``response``: raw output contents if ``raw`` (the
    request used raw inputs) or an output is FP16 or BF16, else typed contents."""
    outputs = response.outputs
    raw = raw or any(o.datatype in RAW_ONLY for o in outputs)
    parts = [
        _string(1, response.model_name),
        _string(2, response.model_version or ""),
        _string(3, response.id or ""),
        _parameters(4, response.parameters),
    ]
    key = _LD[5]
    for o in outputs:
        tensor = (
            _string(1, o.name)
            + _string(2, o.datatype)
            + _packed_varints(3, o.shape)
            + _parameters(4, o.parameters)
        )
        if not raw:
            tensor += _delimited(5, _contents(o.data.root, o.datatype))
        parts.append(key + _length(tensor) + tensor)
    if raw:
        for o in outputs:
            parts.append(_delimited(6, data_to_raw(o.data.root, o.datatype)))
    return b"".join(parts)


def _final_flag(final: bool) -> bytes:
    """A ``parameters`` map entry of ``ModelInferResponse``: ``triton_final_response``."""
    value = b"\x08\x01" if final else b"\x08\x00"  # InferParameter{bool_param}
    entry = _string(1, "triton_final_response") + _delimited(2, value)
    return _LD[4] + _length(entry) + entry


TRITON_FINAL = _final_flag(True)
TRITON_NOT_FINAL = _final_flag(False)
"""Appended to an encoded ``ModelInferResponse``: one more entry of its ``parameters``
map (a map is repeated entries, in any order), as Triton marks a stream's responses."""


def triton_item(infer_response: bytes) -> bytes:
    """Triton's ``ModelStreamInferResponse`` around an encoded ``ModelInferResponse``:
    one length-delimited field (2) around the bytes already written."""
    return _LD[2] + _length(infer_response) + infer_response


def triton_error(
    message: str, request_id: str, model: str = "", version: str = "", final: bool | None = None
) -> bytes:
    """Triton's ``ModelStreamInferResponse`` for a request that failed: the message, and a
    response holding only the request's id (model name and version, and the final flag
    when given: a failure of a request the model had started)."""
    response = _string(1, model) + _string(2, version) + _string(3, request_id)
    if final is not None:
        response += TRITON_FINAL if final else TRITON_NOT_FINAL
    return _string(1, message) + _LD[2] + _length(response) + response


def frame(messages: list[bytes]) -> bytes:
    """gRPC's length-prefixed message framing for a batch: one DATA payload."""
    return b"".join(b"\x00" + len(m).to_bytes(4, "big") + m for m in messages)
