"""V2 types <-> gRPC messages (betterproto2). No I/O.

Tensors travel either as typed ``contents`` (one repeated field per datatype family) or
as ``raw_input_contents`` / ``raw_output_contents``: one little-endian buffer per tensor,
BYTES elements each prefixed by a 4-byte little-endian length. A request uses one or the
other, never both. A response uses raw contents when its request did, and when an output
is FP16 or BF16 (which have no typed field; BF16 is the upper half of an IEEE float32,
as in the REST binary extension); otherwise typed contents, BYTES as ``bytes_contents``
whether the model gave str or bytes.

Messages from the wire are untrusted. betterproto2 parses without checking wire types: a
string field sent as a varint comes out an ``int``, a message field as ``bytes``, and
malformed bytes raise whatever its parsing hits (``EOFError``, ``UnicodeDecodeError``,
``KeyError``...). :func:`parse_message` (the server's codec) turns all of that into
:class:`InvalidRequest`, and :func:`check_types` (which :func:`request_from_proto` runs too,
for messages that did not come through the codec) refuses a message whose fields do not
hold their declared types.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any, TypeVar

import betterproto2
import numpy as np
import pydantic

from .._proto import inference as pb
from ..codecs.lists import flatten
from ..codecs.numpy import to_dtype
from ..errors import InvalidRequest
from ..protocol import binary
from ..protocol.validation import show
from ..types import InferenceRequest, InferenceResponse, Parameters

__all__ = [
    "CONTENTS_FIELD",
    "RAW_ONLY",
    "check_types",
    "data_to_raw",
    "parameter_value",
    "parse_message",
    "parameters_from_proto",
    "parameters_to_proto",
    "request_from_proto",
    "request_to_proto",
    "response_to_proto",
    "response_from_proto",
]

RAW_ONLY = frozenset({"FP16", "BF16"})
"""Datatypes with no typed contents field: they travel as raw contents only."""

CONTENTS_FIELD: dict[str, str] = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
_LENGTH = struct.Struct("<I")
M = TypeVar("M", bound=betterproto2.Message)


# -- untrusted messages -----------------------------------------------------------------
_INTS = frozenset(
    {
        betterproto2.TYPE_INT32,
        betterproto2.TYPE_INT64,
        betterproto2.TYPE_UINT32,
        betterproto2.TYPE_UINT64,
        betterproto2.TYPE_SINT32,
        betterproto2.TYPE_SINT64,
        betterproto2.TYPE_FIXED32,
        betterproto2.TYPE_FIXED64,
        betterproto2.TYPE_SFIXED32,
        betterproto2.TYPE_SFIXED64,
        betterproto2.TYPE_ENUM,
    }
)
_NUMBERS = frozenset({float, int})  # an int in a float field is still a number (and legal
# in messages built in Python, which betterproto2 writes as floats)
_SCALARS: dict[str, frozenset[type]] = {t: frozenset({int}) for t in _INTS} | {
    betterproto2.TYPE_BOOL: frozenset({bool}),
    betterproto2.TYPE_FLOAT: _NUMBERS,
    betterproto2.TYPE_DOUBLE: _NUMBERS,
    betterproto2.TYPE_STRING: frozenset({str}),
    betterproto2.TYPE_BYTES: frozenset({bytes}),
}


def _value_ok(
    value: Any, proto_type: str, message_type: type[betterproto2.Message] | None, where: str
) -> bool:
    if proto_type == betterproto2.TYPE_MESSAGE:
        if message_type is None or not isinstance(value, message_type):
            return False
        check_types(value, where)
        return True
    if proto_type == betterproto2.TYPE_ENUM:
        return isinstance(value, int) and not isinstance(value, bool)
    return type(value) in _SCALARS[proto_type]


def _malformed(where: str, value: Any, proto_type: str) -> InvalidRequest:
    return InvalidRequest(
        f"malformed message: {where} is {type(value).__name__}, the proto declares {proto_type}"
    )


def check_types(message: betterproto2.Message, where: str | None = None) -> None:
    """Raise :class:`InvalidRequest` unless every field of ``message`` (recursively) holds
    its declared type: what a wire type that does not match the field leaves behind."""
    meta = type(message)._betterproto  # type: ignore[arg-type]  # betterproto2 mistypes it
    where = where or type(message).__name__
    for name, field_meta in meta.meta_by_field_name.items():
        value = getattr(message, name)
        path = f"{where}.{name}"
        proto_type = field_meta.proto_type
        if proto_type == betterproto2.TYPE_MAP:
            if not isinstance(value, dict):
                raise _malformed(path, value, "map")
            key_meta, value_meta = field_meta.map_meta  # type: ignore[misc]
            value_type = meta.cls_by_field.get(f"{name}.value")
            for k, v in value.items():
                if not _value_ok(k, key_meta.proto_type, None, path):
                    raise _malformed(f"{path} key", k, key_meta.proto_type)
                if v is None and value_meta.proto_type == betterproto2.TYPE_MESSAGE:
                    continue  # an entry without its value: the default message
                entry = f"{path}[{show(k, 20)}]"
                if not _value_ok(v, value_meta.proto_type, value_type, entry):
                    raise _malformed(entry, v, value_meta.proto_type)
            continue
        if field_meta.unwrap is not None:
            continue  # wrapper types (google.protobuf.*Value): none in our protos
        message_type = meta.cls_by_field.get(name)
        if field_meta.repeated:
            if not isinstance(value, list):
                raise _malformed(path, value, f"repeated {proto_type}")
            if proto_type == betterproto2.TYPE_MESSAGE or proto_type == betterproto2.TYPE_ENUM:
                for i, item in enumerate(value):
                    if not _value_ok(item, proto_type, message_type, f"{path}[{i}]"):
                        raise _malformed(f"{path}[{i}]", item, proto_type)
            else:  # scalars, maybe a million of them: one pass in C
                odd = set(map(type, value)) - _SCALARS[proto_type]
                if odd:
                    bad = next(x for x in value if type(x) in odd)
                    raise _malformed(f"{path}[{value.index(bad)}]", bad, proto_type)
            continue
        if value is None and (field_meta.optional or proto_type == betterproto2.TYPE_MESSAGE):
            continue  # unset
        if not _value_ok(value, proto_type, message_type, path):
            raise _malformed(path, value, proto_type)


def parse_message(data: bytes, message_type: type[M]) -> M:
    """``data`` parsed as a ``message_type`` and type-checked (:func:`check_types`);
    :class:`InvalidRequest` when it is not one. For a transport's codec: bytes from the
    wire are untrusted, and a failure here is the client's."""
    try:
        message = message_type.parse(data)
    except Exception as exc:  # betterproto2 raises whatever its parsing runs into
        raise InvalidRequest(
            f"malformed {message_type.__name__}: {type(exc).__name__}: {str(exc)[:200]}"
        ) from None
    check_types(message)
    return message


# -- parameters ------------------------------------------------------------------------
def parameters_from_proto(params: Mapping[str, pb.InferParameter]) -> dict[str, Any]:
    out = {}
    for key, param in params.items():
        if param is None:  # a map entry without its value: the default, no choice set
            out[key] = None
            continue
        try:
            _, value = betterproto2.which_one_of(param, "parameter_choice")
        except RuntimeError as exc:  # two choices of the oneof set on the wire
            raise InvalidRequest(f"parameter {show(key)}: {exc}") from None
        out[key] = value
    return out


_ANY = pydantic.TypeAdapter(Any)


def parameter_value(value: Any) -> tuple[str, Any]:
    """Which ``InferParameter`` choice holds ``value``, and as what: anything that is not
    a bool, a number or text travels as its JSON."""
    if isinstance(value, bool):
        return "bool_param", value
    if isinstance(value, int):
        return ("uint64_param" if value >= 2**63 else "int64_param"), value
    if isinstance(value, float):
        return "double_param", value
    if isinstance(value, bytes):
        return "string_param", value.decode("utf-8", "replace")
    if isinstance(value, str):
        return "string_param", value
    return "string_param", _ANY.dump_json(value).decode()


def _param(value: Any) -> pb.InferParameter:
    choice, v = parameter_value(value)
    return pb.InferParameter(**{choice: v})


def parameters_to_proto(params: Parameters | None) -> dict[str, pb.InferParameter]:
    if params is None:
        return {}
    values = params.model_dump()
    values.pop("headers", None)  # headers travel as gRPC metadata, not parameters
    return {k: _param(v) for k, v in values.items() if v is not None}


# -- tensors ---------------------------------------------------------------------------
def data_to_raw(data: Any, datatype: str) -> bytes:
    flat = flatten(data)
    if datatype == "BYTES":
        parts = []
        for item in flat:
            b = item.encode() if isinstance(item, str) else bytes(item)
            parts.append(_LENGTH.pack(len(b)))
            parts.append(b)
        return b"".join(parts)
    if datatype == "BF16":
        return binary.bf16_bits(np.asarray(flat, dtype=np.float32)).tobytes()
    return np.asarray(flat, dtype=to_dtype(datatype).newbyteorder("<")).tobytes()


def _typed_data(contents: pb.InferTensorContents | None, datatype: str, name: str) -> list[Any]:
    if contents is None:
        return []
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise InvalidRequest(f"input {show(name)}: {datatype} data must be sent as raw contents")
    return list(getattr(contents, field))


def _typed_contents(data: Any, datatype: str) -> pb.InferTensorContents:
    flat = flatten(data)
    if datatype == "BYTES":
        flat = [x.encode() if isinstance(x, str) else x for x in flat]
    return pb.InferTensorContents(**{CONTENTS_FIELD[datatype]: flat})


def _tensor_from_proto(tensor: Any, raw: bytes | None) -> dict[str, Any]:
    """An input or output tensor message as V2 fields; ``raw`` is its raw buffer, if any."""
    shape = list(tensor.shape)
    if raw is not None:
        data = binary.tensor_from_bytes(
            raw,
            tensor.datatype,
            shape,
            tensor.name,
            source="raw contents",
            size_name="raw_input_contents length",
        )
    else:
        data = _typed_data(tensor.contents, tensor.datatype, tensor.name)
    return {
        "name": tensor.name,
        "datatype": tensor.datatype,
        "shape": shape,
        "parameters": parameters_from_proto(tensor.parameters) or None,
        "data": data,
    }


# -- requests --------------------------------------------------------------------------
def request_from_proto(
    msg: pb.ModelInferRequest, *, checked: bool = False
) -> tuple[InferenceRequest, bool]:
    """The request, and whether it used raw contents (its response will too).

    ``checked``: ``msg`` came from :func:`parse_message` (the server's codec), whose type
    check need not run twice."""
    if not checked:
        check_types(msg)
    raw = msg.raw_input_contents
    if raw and len(raw) != len(msg.inputs):
        raise InvalidRequest(
            f"{len(raw)} raw_input_contents for {len(msg.inputs)} inputs: one each is needed"
        )
    inputs = []
    for i, tensor in enumerate(msg.inputs):
        if raw and tensor.contents is not None:
            raise InvalidRequest(f"input {show(tensor.name)}: both raw and typed contents are set")
        if tensor.datatype not in CONTENTS_FIELD and tensor.datatype not in RAW_ONLY:
            raise InvalidRequest(
                f"input {show(tensor.name)}: unknown datatype {show(tensor.datatype, 20)}"
            )
        inputs.append(_tensor_from_proto(tensor, raw[i] if raw else None))
    body = {
        "id": msg.id or None,
        "parameters": parameters_from_proto(msg.parameters) or None,
        "inputs": inputs,
        "outputs": [
            {"name": o.name, "parameters": parameters_from_proto(o.parameters) or None}
            for o in msg.outputs
        ]
        or None,
    }
    try:
        return InferenceRequest.model_validate(body), bool(raw)
    except pydantic.ValidationError as exc:
        raise InvalidRequest(
            f"invalid request: {exc.errors(include_url=False)[0]['msg']}"
        ) from None


def request_to_proto(
    request: InferenceRequest, model_name: str, model_version: str | None = None, raw: bool = False
) -> pb.ModelInferRequest:
    """For clients and tests: the gRPC form of a V2 request (raw if asked, or if FP16)."""
    raw = raw or any(i.datatype in RAW_ONLY for i in request.inputs)
    tensors = []
    for inp in request.inputs:
        tensors.append(
            pb.ModelInferRequestInferInputTensor(
                name=inp.name,
                datatype=inp.datatype,
                shape=inp.shape,
                parameters=parameters_to_proto(inp.parameters),
                contents=None if raw else _typed_contents(inp.data.root, inp.datatype),
            )
        )
    return pb.ModelInferRequest(
        model_name=model_name,
        model_version=model_version or "",
        id=request.id or "",
        parameters=parameters_to_proto(request.parameters),
        inputs=tensors,
        outputs=[
            pb.ModelInferRequestInferRequestedOutputTensor(
                name=o.name, parameters=parameters_to_proto(o.parameters)
            )
            for o in request.outputs or ()
        ],
        raw_input_contents=(
            [data_to_raw(i.data.root, i.datatype) for i in request.inputs] if raw else []
        ),
    )


# -- responses -------------------------------------------------------------------------
def response_to_proto(response: InferenceResponse, raw: bool = False) -> pb.ModelInferResponse:
    """The gRPC form of a V2 response: the meaning that ``grpc/encode.py`` writes as bytes
    on the server's hot path (a property test holds them together); for clients and tests."""
    raw = raw or any(o.datatype in RAW_ONLY for o in response.outputs)
    outputs = [
        pb.ModelInferResponseInferOutputTensor(
            name=o.name,
            datatype=o.datatype,
            shape=o.shape,
            parameters=parameters_to_proto(o.parameters),
            contents=None if raw else _typed_contents(o.data.root, o.datatype),
        )
        for o in response.outputs
    ]
    return pb.ModelInferResponse(
        model_name=response.model_name,
        model_version=response.model_version or "",
        id=response.id or "",
        parameters=parameters_to_proto(response.parameters),
        outputs=outputs,
        raw_output_contents=(
            [data_to_raw(o.data.root, o.datatype) for o in response.outputs] if raw else []
        ),
    )


def response_from_proto(msg: pb.ModelInferResponse) -> InferenceResponse:
    """For clients and tests: the V2 form of a gRPC response."""
    raw = msg.raw_output_contents
    outputs = []
    for i, tensor in enumerate(msg.outputs):
        outputs.append(_tensor_from_proto(tensor, raw[i] if raw else None))
    return InferenceResponse.model_validate(
        {
            "model_name": msg.model_name,
            "model_version": msg.model_version or None,
            "id": msg.id or None,
            "parameters": parameters_from_proto(msg.parameters) or None,
            "outputs": outputs,
        }
    )
