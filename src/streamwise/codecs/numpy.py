"""``np``: a NumPy array as a tensor of the matching V2 datatype (``mlserver.codecs.numpy``).

Encoding: ``shape`` is the array's shape, ``data`` the flattened values; BYTES elements are
``bytes`` (str elements UTF-8 encoded). Decoding gives an array of the datatype's dtype in
the tensor's shape; BYTES gives a ``dtype=object`` array of ``bytes``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import show
from ..types import Datatype, RequestInput, ResponseOutput
from .base import InputCodec, register_input_codec, register_request_codec
from .errors import CodecError
from .lists import flatten
from .utils import InputOrOutput, SingleInputRequestCodec, tensor_label

__all__ = ["NumpyCodec", "NumpyRequestCodec", "to_dtype", "to_datatype"]

_DatatypeToNumpy: dict[str, np.dtype[Any]] = {
    Datatype.BOOL.value: np.dtype(np.bool_),
    Datatype.UINT8.value: np.dtype(np.uint8),
    Datatype.UINT16.value: np.dtype(np.uint16),
    Datatype.UINT32.value: np.dtype(np.uint32),
    Datatype.UINT64.value: np.dtype(np.uint64),
    Datatype.INT8.value: np.dtype(np.int8),
    Datatype.INT16.value: np.dtype(np.int16),
    Datatype.INT32.value: np.dtype(np.int32),
    Datatype.INT64.value: np.dtype(np.int64),
    Datatype.FP16.value: np.dtype(np.float16),
    Datatype.FP32.value: np.dtype(np.float32),
    Datatype.FP64.value: np.dtype(np.float64),
    Datatype.BYTES.value: np.dtype(object),
    Datatype.BF16.value: np.dtype(np.float32),  # numpy has no bfloat16: decoded as float32
}
# By (kind, itemsize), so that byte order and aliases (np.byte, np.intc) do not matter.
_NumpyToDatatype: dict[tuple[str, int], Datatype] = {
    (dtype.kind, dtype.itemsize): Datatype(name)
    for name, dtype in _DatatypeToNumpy.items()
    if name not in (Datatype.BYTES.value, Datatype.BF16.value)
}
_BytesKinds = frozenset("OSU")


def to_dtype(datatype: Any, data: Any = None) -> np.dtype[Any]:
    """The dtype for a V2 datatype (or for a tensor's ``.datatype``); BYTES is ``object``.

    ``data`` is accepted for MLServer's signature; the dtype does not depend on it.
    """
    name = getattr(datatype, "datatype", datatype)
    try:
        return _DatatypeToNumpy[name]
    except (KeyError, TypeError):
        raise CodecError(f"unknown datatype {show(name)}") from None


def to_datatype(dtype: npt.DTypeLike) -> Datatype:
    """The V2 datatype for a dtype; object, bytes and str dtypes are BYTES."""
    dt = np.dtype(dtype)
    if dt.kind in _BytesKinds:
        return Datatype.BYTES
    try:
        return _NumpyToDatatype[(dt.kind, dt.itemsize)]
    except KeyError:
        raise CodecError(f"dtype {dt} has no V2 datatype") from None


def _encode_bytes(label: str, arr: npt.NDArray[Any]) -> list[bytes]:
    flat = arr.ravel().tolist()
    if arr.dtype.kind == "S":
        return flat
    if arr.dtype.kind == "U":
        return [elem.encode("utf-8") for elem in flat]
    out: list[bytes] = []
    for elem in flat:
        if isinstance(elem, bytes):
            out.append(elem)
        elif isinstance(elem, str):
            out.append(elem.encode("utf-8"))
        else:
            raise CodecError(f"{label}: BYTES elements must be bytes or str, not {type(elem)}")
    return out


def _encode_fields(name: str, payload: Any, label: str) -> dict[str, Any]:
    if not isinstance(payload, np.ndarray):
        raise CodecError(f"{label}: NumpyCodec encodes numpy arrays, not {type(payload)}")
    try:
        datatype = to_datatype(payload.dtype)
    except CodecError as exc:
        raise CodecError(f"{label}: {exc}") from None
    try:
        if datatype is Datatype.BYTES:
            data: list[Any] = _encode_bytes(label, payload)
        else:
            data = payload.ravel().tolist()
    except UnicodeEncodeError as exc:
        raise CodecError(f"{label}: cannot encode as UTF-8: {exc}") from None
    return {
        "name": name,
        "shape": list(payload.shape),
        "datatype": datatype.value,
        "parameters": {"content_type": NumpyCodec.ContentType},
        "data": data,
    }


def _bytes_array(label: str, data: Any) -> npt.NDArray[Any]:
    items = flatten(data)
    out = np.empty(len(items), dtype=object)
    try:
        out[:] = [elem if isinstance(elem, bytes) else elem.encode("utf-8") for elem in items]
    except (AttributeError, UnicodeEncodeError):
        for elem in items:
            if not isinstance(elem, bytes | str):
                raise CodecError(
                    f"{label}: BYTES elements must be str or bytes, not {type(elem).__name__}"
                ) from None
        raise CodecError(f"{label}: BYTES data holds text that is not valid UTF-8") from None
    return out


def _numeric_array(label: str, datatype: str, data: Any, dtype: np.dtype[Any]) -> Any:
    try:
        arr = np.asarray(data)
    except (ValueError, TypeError) as exc:
        raise CodecError(f"{label}: {datatype} data is not a regular array ({exc})") from None
    kind = arr.dtype.kind
    if kind in "SUVcmM" or (kind == "O" and any(isinstance(v, str | bytes) for v in arr.flat)):
        raise CodecError(f"{label}: {datatype} data holds non-numeric values")
    if arr.dtype == dtype:
        return arr
    if kind in "iu" and dtype.kind in "iu" and arr.size:
        info, lo, hi = np.iinfo(dtype), int(arr.min()), int(arr.max())
        if lo < info.min or hi > info.max:
            bad = lo if lo < info.min else hi
            raise CodecError(f"{label}: value {bad} is out of range for {datatype}")
    if kind in "biu" or (kind == "f" and dtype.kind not in "iu"):
        return arr.astype(dtype)
    # Floats into an integer tensor, or None / very large ints (object arrays): let numpy
    # convert the Python values one by one, which reports NaN and overflow.
    values = data if isinstance(data, list) else arr.tolist()
    return np.array(values, dtype=dtype)


def _to_ndarray(tensor: InputOrOutput) -> npt.NDArray[Any]:
    label = tensor_label(tensor)
    datatype = str(getattr(tensor.datatype, "value", tensor.datatype))
    dtype = to_dtype(datatype)
    data = tensor.data.root
    if dtype.kind == "O":
        arr = _bytes_array(label, data)
    else:
        try:
            with np.errstate(over="raise", invalid="raise"):
                arr = _numeric_array(label, datatype, data, dtype)
        except (ValueError, TypeError, OverflowError, FloatingPointError) as exc:
            raise CodecError(f"{label}: cannot convert data to {datatype} ({exc})") from None
    try:
        return arr.reshape(tensor.shape)
    except ValueError:
        raise CodecError(
            f"{label}: {arr.size} {datatype} values do not fit shape {tensor.shape}"
        ) from None


@register_input_codec
class NumpyCodec(InputCodec):
    """A tensor as a NumPy array."""

    ContentType = "np"
    TypeHint = np.ndarray

    @classmethod
    def can_encode(cls, payload: Any) -> bool:
        return isinstance(payload, np.ndarray)

    @classmethod
    def encode_output(cls, name: str, payload: Any, **kwargs: Any) -> ResponseOutput:
        return ResponseOutput.model_validate(_encode_fields(name, payload, f"output {name!r}"))

    @classmethod
    def decode_output(cls, response_output: ResponseOutput) -> npt.NDArray[Any]:
        return _to_ndarray(response_output)

    @classmethod
    def encode_input(cls, name: str, payload: Any, **kwargs: Any) -> RequestInput:
        return RequestInput.model_validate(_encode_fields(name, payload, f"input {name!r}"))

    @classmethod
    def decode_input(cls, request_input: RequestInput) -> npt.NDArray[Any]:
        return _to_ndarray(request_input)


@register_request_codec
class NumpyRequestCodec(SingleInputRequestCodec):
    """A request (response) whose single tensor is a NumPy array."""

    InputCodec = NumpyCodec
    ContentType = NumpyCodec.ContentType
    TypeHint = np.ndarray
