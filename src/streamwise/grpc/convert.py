"""V2 types <-> gRPC messages (betterproto2). No I/O.

Tensors travel either as typed ``contents`` (one repeated field per datatype family) or
as ``raw_input_contents`` / ``raw_output_contents``: one little-endian buffer per tensor,
BYTES elements each prefixed by a 4-byte little-endian length. A request uses one or the
other, never both. A response uses raw contents when its request did, and when an output
is FP16 (which has no typed field); otherwise typed contents, BYTES as ``bytes_contents``
whether the model gave str or bytes.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from typing import Any

import betterproto2
import numpy as np
import pydantic

from .._proto import inference as pb
from ..codecs.lists import flatten
from ..codecs.numpy import to_dtype
from ..errors import InvalidRequest
from ..types import InferenceRequest, InferenceResponse, Parameters

__all__ = [
    "CONTENTS_FIELD",
    "parameters_from_proto",
    "parameters_to_proto",
    "request_from_proto",
    "request_to_proto",
    "response_to_proto",
    "response_from_proto",
]

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


# -- parameters ------------------------------------------------------------------------
def parameters_from_proto(params: Mapping[str, pb.InferParameter]) -> dict[str, Any]:
    out = {}
    for key, param in params.items():
        try:
            _, value = betterproto2.which_one_of(param, "parameter_choice")
        except RuntimeError as exc:  # two choices of the oneof set on the wire
            raise InvalidRequest(f"parameter {key!r}: {exc}") from None
        out[key] = value
    return out


def _param(key: str, value: Any) -> pb.InferParameter:
    if isinstance(value, bool):
        return pb.InferParameter(bool_param=value)
    if isinstance(value, int):
        if value >= 2**63:
            return pb.InferParameter(uint64_param=value)
        return pb.InferParameter(int64_param=value)
    if isinstance(value, float):
        return pb.InferParameter(double_param=value)
    if isinstance(value, bytes):
        return pb.InferParameter(string_param=value.decode("utf-8", "replace"))
    if isinstance(value, str):
        return pb.InferParameter(string_param=value)
    return pb.InferParameter(string_param=pydantic.TypeAdapter(Any).dump_json(value).decode())


def parameters_to_proto(params: Parameters | None) -> dict[str, pb.InferParameter]:
    if params is None:
        return {}
    values = params.model_dump()
    values.pop("headers", None)  # headers travel as gRPC metadata, not parameters
    return {k: _param(k, v) for k, v in values.items() if v is not None}


# -- tensors ---------------------------------------------------------------------------
def _raw_to_data(raw: bytes, datatype: str, shape: list[int], name: str) -> list[Any]:
    count = math.prod(shape)
    if datatype == "BYTES":
        items, offset = [], 0
        while offset < len(raw):
            if offset + 4 > len(raw):
                raise InvalidRequest(f"input {name!r}: truncated BYTES element length")
            (size,) = _LENGTH.unpack_from(raw, offset)
            offset += 4
            if offset + size > len(raw):
                raise InvalidRequest(f"input {name!r}: BYTES element runs past its buffer")
            items.append(raw[offset : offset + size])
            offset += size
        if len(items) != count:
            raise InvalidRequest(
                f"input {name!r}: shape {shape} needs {count} elements, raw data has {len(items)}"
            )
        return items
    dtype = to_dtype(datatype).newbyteorder("<")
    if len(raw) != count * dtype.itemsize:
        raise InvalidRequest(
            f"input {name!r}: shape {shape} of {datatype} needs {count * dtype.itemsize} "
            f"bytes, raw data has {len(raw)}"
        )
    return np.frombuffer(raw, dtype=dtype).tolist()  # type: ignore[no-any-return]


def _data_to_raw(data: Any, datatype: str) -> bytes:
    flat = flatten(data)
    if datatype == "BYTES":
        parts = []
        for item in flat:
            b = item.encode() if isinstance(item, str) else bytes(item)
            parts.append(_LENGTH.pack(len(b)))
            parts.append(b)
        return b"".join(parts)
    return np.asarray(flat, dtype=to_dtype(datatype).newbyteorder("<")).tobytes()


def _typed_data(contents: pb.InferTensorContents | None, datatype: str, name: str) -> list[Any]:
    if contents is None:
        return []
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise InvalidRequest(f"input {name!r}: {datatype} data must be sent as raw contents")
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
        data = _raw_to_data(raw, tensor.datatype, shape, tensor.name)
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
def request_from_proto(msg: pb.ModelInferRequest) -> tuple[InferenceRequest, bool]:
    """The request, and whether it used raw contents (its response will too)."""
    raw = msg.raw_input_contents
    if raw and len(raw) != len(msg.inputs):
        raise InvalidRequest(
            f"{len(raw)} raw_input_contents for {len(msg.inputs)} inputs: one each is needed"
        )
    inputs = []
    for i, tensor in enumerate(msg.inputs):
        if raw and tensor.contents is not None:
            raise InvalidRequest(f"input {tensor.name!r}: both raw and typed contents are set")
        if tensor.datatype not in CONTENTS_FIELD and tensor.datatype != "FP16":
            raise InvalidRequest(f"input {tensor.name!r}: unknown datatype {tensor.datatype!r}")
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
    raw = raw or any(i.datatype == "FP16" for i in request.inputs)
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
            [_data_to_raw(i.data.root, i.datatype) for i in request.inputs] if raw else []
        ),
    )


# -- responses -------------------------------------------------------------------------
def response_to_proto(response: InferenceResponse, raw: bool = False) -> pb.ModelInferResponse:
    raw = raw or any(o.datatype == "FP16" for o in response.outputs)
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
            [_data_to_raw(o.data.root, o.datatype) for o in response.outputs] if raw else []
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
