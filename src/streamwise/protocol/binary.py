"""The binary tensor data extension of REST (Triton's, KServe's): sans-IO.

A request whose ``Inference-Header-Content-Length`` header is set is a JSON header of that
many bytes, then the raw data of its inputs that carry ``parameters.binary_data_size``,
concatenated in input order. Raw data is little-endian, row major; BOOL is one byte per
element; BYTES is, per element, a 4-byte little-endian length and the bytes; FP16 is
IEEE half (numpy's ``float16``); BF16 is the upper half of an IEEE float32.

Decoded inputs hold what a JSON request's inputs hold: a flat list of Python values (str
becomes bytes for BYTES: binary data need not be UTF-8). So validation
(``DataPlane.prepare``), the codecs and the models see one form whichever way a tensor
came, and the extension costs the plain JSON path nothing but a header look-up.

Outputs are sent as binary when the request asks: ``parameters.binary_data_output`` on the
request (all outputs), overridden per output by ``outputs[i].parameters.binary_data``. The
answer is then the JSON response, whose binary outputs have no ``data`` but a
``parameters.binary_data_size``, followed by their bytes in output order;
``Inference-Header-Content-Length`` gives the JSON's length.

The extension's own parameters (``binary_data_size`` on inputs, ``binary_data_output`` on
the request) are taken out before the model sees the request, as Triton does: they
describe the transport, not the inference.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ..codecs.lists import flatten
from ..errors import InvalidRequest, ModelFailed, show
from ..types import InferenceRequest, InferenceResponse, Parameters, ResponseOutput
from .validation import MAX_ELEMENTS, element_count

__all__ = [
    "HEADER",
    "EXTENSION",
    "OutputChoice",
    "decode_request",
    "output_choice",
    "encode_response",
    "tensor_from_bytes",
    "tensor_to_bytes",
]

EXTENSION = "binary_tensor_data"
"""Its name in the server metadata's ``extensions``."""
HEADER = b"inference-header-content-length"
"""The request and response header giving the JSON header's length (ASGI: lower case)."""
SIZE = "binary_data_size"

_LENGTH = struct.Struct("<I")
_DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BF16": np.dtype("<u2"),  # the upper 16 bits of a float32: numpy has no bfloat16
}


# -- tensors ---------------------------------------------------------------------------
def tensor_from_bytes(
    blob: bytes,
    datatype: str,
    shape: list[int],
    name: str,
    *,
    source: str = "binary data",
    size_name: str = SIZE,
) -> list[Any]:
    """The flat data of input ``name`` from its raw bytes; :class:`InvalidRequest` unless
    they hold exactly ``prod(shape)`` elements of ``datatype``. The errors call the bytes
    ``source`` and their length ``size_name`` (gRPC's raw contents: "raw contents",
    "raw_input_contents length")."""
    count = element_count(shape)
    needs = f"more than {MAX_ELEMENTS}" if count > MAX_ELEMENTS else str(count)
    if datatype == "BYTES":
        items: list[Any] = []
        offset, end = 0, len(blob)
        while offset < end:
            if len(items) >= count:
                raise InvalidRequest(
                    f"input {show(name)}: shape {show(shape)} needs {needs} BYTES elements, "
                    f"its {len(blob)} bytes of {source} hold more"
                )
            if offset + 4 > end:
                raise InvalidRequest(
                    f"input {show(name)}: BYTES element {len(items)}'s 4-byte length is cut "
                    f"short by the end of its {source} ({end - offset} bytes left)"
                )
            (size,) = _LENGTH.unpack_from(blob, offset)
            offset += 4
            if offset + size > end:
                raise InvalidRequest(
                    f"input {show(name)}: BYTES element {len(items)} of {size} bytes runs past "
                    f"the end of its {source} ({end - offset} bytes left)"
                )
            items.append(blob[offset : offset + size])
            offset += size
        if len(items) != count:
            raise InvalidRequest(
                f"input {show(name)}: shape {show(shape)} needs {needs} BYTES elements, "
                f"{source} has {len(items)}"
            )
        return items
    dtype = _DTYPES[datatype]
    if len(blob) % dtype.itemsize:
        raise InvalidRequest(
            f"input {show(name)}: {size_name} {len(blob)} is not a multiple of the {datatype} "
            f"element size ({dtype.itemsize} bytes)"
        )
    if len(blob) // dtype.itemsize != count:
        raise InvalidRequest(
            f"input {show(name)}: shape {show(shape)} needs {needs} {datatype} elements "
            f"({dtype.itemsize} bytes each), {source} has {len(blob) // dtype.itemsize}"
        )
    array = np.frombuffer(blob, dtype=dtype)
    if datatype == "BF16":
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return array.tolist()  # type: ignore[no-any-return]


def bf16_bits(values: npt.NDArray[np.float32]) -> npt.NDArray[np.uint16]:
    """float32 -> bfloat16 bits, rounding to nearest even (as ``ml_dtypes`` does); a NaN
    keeps its sign and upper payload, made quiet (rounding could make it infinite)."""
    bits = values.view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return np.where(np.isnan(values), (bits >> 16) | 0x40, rounded).astype("<u2")


def tensor_to_bytes(output: ResponseOutput) -> bytes:
    """The raw bytes of an output's data; :class:`ModelFailed` (a 500: the model's
    answer, not the client's request) if the data does not fit its datatype and shape."""
    datatype = str(output.datatype)
    data = output.data.root
    label = f"output {show(output.name)}"
    count = element_count(output.shape)
    if datatype == "BYTES":
        flat = flatten(data)
        parts = []
        for item in flat:
            if isinstance(item, str):
                try:
                    b = item.encode()
                except UnicodeEncodeError as exc:
                    raise ModelFailed(f"model failed: {label}: not UTF-8 ({exc})") from None
            elif isinstance(item, bytes | bytearray | memoryview):
                b = bytes(item)
            else:
                raise ModelFailed(
                    f"model failed: {label}: BYTES data cannot be sent: "
                    f"{type(item).__name__} element {show(item, 30)}"
                )
            parts.append(_LENGTH.pack(len(b)))
            parts.append(b)
        got = len(flat)
        blob = b"".join(parts)
    else:
        try:
            with np.errstate(over="raise", invalid="raise"):
                if datatype == "BF16":
                    array = np.asarray(data, dtype=np.float32).ravel()
                    blob = bf16_bits(array).tobytes()
                else:
                    array = np.asarray(data, dtype=_DTYPES[datatype]).ravel()
                    blob = array.tobytes()
        except (TypeError, ValueError, OverflowError, FloatingPointError) as exc:
            raise ModelFailed(
                f"model failed: {label}: data cannot be sent as {datatype} ({exc})"
            ) from None
        got = array.size
    if got != count:
        raise ModelFailed(
            f"model failed: {label}: shape {show(output.shape)} needs {count} elements, "
            f"data has {got}"
        )
    return blob


# -- requests --------------------------------------------------------------------------
def _header_length(value: str, body_size: int) -> int:
    if not value.strip().isdigit():
        raise InvalidRequest(
            f"Inference-Header-Content-Length must be a byte count, got {show(value, 30)}"
        )
    length = int(value)
    if length > body_size:
        raise InvalidRequest(
            f"Inference-Header-Content-Length {length} is larger than the body ({body_size} bytes)"
        )
    return length


def _size_of(params: Mapping[str, Any], name: Any) -> int:
    size = params[SIZE]
    if type(size) is not int or size < 0:
        raise InvalidRequest(
            f"input {show(name)}: {SIZE} must be a non-negative integer, got {show(size, 30)}"
        )
    return size


def decode_request(body: bytes, header_length: str) -> InferenceRequest:
    """The request of a body using the extension (``header_length``: the value of its
    ``Inference-Header-Content-Length``); :class:`InvalidRequest` for anything malformed,
    with a message that says what (``pydantic.ValidationError`` for a JSON header that is
    not a request: the caller words it as it words a JSON request's)."""
    length = _header_length(header_length, len(body))
    try:
        header = json.loads(body[:length])
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"invalid request: the JSON header is not valid JSON: {exc}") from None
    inputs = header.get("inputs") if isinstance(header, dict) else None
    # where each binary input's data is: (index, start, end)
    slices: list[tuple[int, int, int]] = []
    offset = length
    if isinstance(inputs, list):
        for i, inp in enumerate(inputs):
            params = inp.get("parameters") if isinstance(inp, dict) else None
            if not isinstance(params, dict) or SIZE not in params:
                continue
            name = inp.get("name")
            size = _size_of(params, name)
            if "data" in inp:
                raise InvalidRequest(
                    f"input {show(name)}: has both data and {SIZE}: one or the other"
                )
            if offset + size > len(body):
                raise InvalidRequest(
                    f"input {show(name)}: {SIZE} {size} runs past the end of the body "
                    f"({len(body) - offset} bytes of binary data left)"
                )
            slices.append((i, offset, offset + size))
            offset += size
            params = {k: v for k, v in params.items() if k != SIZE}
            if params:
                inp["parameters"] = params
            else:
                del inp["parameters"]
            inp["data"] = []  # filled once the header has been validated
    if offset != len(body):
        raise InvalidRequest(
            f"the body has {len(body) - offset} bytes after the JSON header and the "
            f"binary inputs' {SIZE}s ({offset - length} bytes)"
        )
    request = InferenceRequest.model_validate(header)  # the caller words its errors
    for i, start, end in slices:
        inp = request.inputs[i]
        if not all(0 <= d <= MAX_ELEMENTS for d in inp.shape):
            continue  # validation says what is wrong with the shape
        inp.data.root = tensor_from_bytes(body[start:end], str(inp.datatype), inp.shape, inp.name)
    return request


# -- responses -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class OutputChoice:
    """Which outputs a request wants as binary data."""

    default: bool
    """``binary_data_output``: for outputs the request does not name (or names without
    ``binary_data``)."""
    named: Mapping[str, bool]
    """Per output, ``outputs[i].parameters.binary_data``."""

    def binary(self, name: str) -> bool:
        return self.named.get(name, self.default)


def _flag(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidRequest(f"{what} must be true or false, got {show(value, 30)}")
    return value


def output_choice(request: InferenceRequest) -> OutputChoice | None:
    """Which outputs ``request`` wants as binary data, None if none can be (the common
    case: two attribute reads). Takes ``binary_data_output`` out of the request's
    parameters: the model does not see it."""
    params = request.parameters
    outputs = request.outputs
    if params is None and not outputs:
        return None
    default = False
    extra = params.__pydantic_extra__ if params is not None else None
    if extra and "binary_data_output" in extra:
        default = _flag(extra.pop("binary_data_output"), "parameters.binary_data_output")
        if not extra and params is not None and params.model_fields_set == {"binary_data_output"}:
            request.parameters = None  # as if the client had sent none
    named: dict[str, bool] = {}
    for out in outputs or ():
        out_extra = out.parameters.__pydantic_extra__ if out.parameters is not None else None
        if out_extra and "binary_data" in out_extra:
            named[out.name] = _flag(
                out_extra["binary_data"], f"output {show(out.name)}: parameters.binary_data"
            )
    if not default and not any(named.values()):
        return None
    return OutputChoice(default, named)


def encode_response(response: InferenceResponse, choice: OutputChoice) -> tuple[bytes, int] | None:
    """The body of a response with the outputs ``choice`` names as binary data, and the
    length of its JSON header; None when no output is to be binary (a JSON answer)."""
    blobs: list[bytes] = []
    without_data: dict[int, set[str]] = {}
    for i, out in enumerate(response.outputs):
        if not choice.binary(out.name):
            continue
        blob = tensor_to_bytes(out)
        fields = out.parameters.model_dump() if out.parameters is not None else {}
        fields[SIZE] = len(blob)
        out.parameters = Parameters(**fields)
        without_data[i] = {"data"}
        blobs.append(blob)
    if not blobs:
        return None
    head = response.model_dump_json(exclude={"outputs": without_data}).encode()
    return head + b"".join(blobs), len(head)
