"""``pd``: a request (response) as a pandas DataFrame, one tensor per column
(``mlserver.codecs.pandas``).

pandas is the optional ``pandas`` extra: this module, and ``PandasCodec``, import without
it, so that ``from streamwise.codecs import PandasCodec`` works in a model that only uses
it when pandas is there; using it without pandas raises
:class:`~streamwise.errors.ExtraNotInstalled` (501), which says
``pip install "streamwise[pandas]"``.

Encoding, as MLServer's: each column is an output (input) of shape ``[N, 1]`` and its
dtype's datatype; NaN becomes null; a column of str / bytes is BYTES with content type
``str`` (str elements UTF-8 encoded unless ``use_bytes=False``), so that it travels in
gRPC's ``bytes_contents``; a column of other objects (dicts, lists) is BYTES of JSON
texts with content type ``pd_json``. Decoding reverses it: a BYTES column with content
type ``str`` gives str elements, ``pd_json`` the parsed values, any other the raw
elements; a numeric column gets its datatype's dtype.
"""

from __future__ import annotations

import importlib
import json
import math
import sys
from typing import Any

import numpy as np

from ..errors import ExtraNotInstalled
from ..types import (
    Datatype,
    InferenceRequest,
    InferenceResponse,
    Parameters,
    RequestInput,
    ResponseOutput,
)
from .base import RequestCodec, register_request_codec
from .errors import CodecError
from .lists import flatten
from .numpy import to_datatype, to_dtype
from .string import StringCodec, decode_str
from .utils import (
    InputOrOutput,
    get_decoded,
    has_decoded,
    inject_batch_dimension,
    tensor_label,
)

__all__ = ["PandasCodec"]


def _pandas() -> Any:
    """The pandas module, imported on first use: the core does not depend on it."""
    try:
        return importlib.import_module("pandas")
    except ImportError:
        raise ExtraNotInstalled("the 'pd' content type (PandasCodec)", "pandas", "pandas") from None


class _NoPandas:
    """The type hint while pandas is not imported: no type hint is this."""


class _PandasCodecType(type):
    # The type hint is pandas' DataFrame, but reading it must not import pandas (a second
    # of startup for every server): a hint that names pd.DataFrame comes from code that
    # imported pandas already, so pandas is in sys.modules when it matters.
    @property
    def TypeHint(cls) -> Any:  # noqa: N802 - MLServer's name
        pandas = sys.modules.get("pandas")
        return pandas.DataFrame if pandas is not None else _NoPandas


def _is_dataframe(payload: Any) -> bool:
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(payload, pandas.DataFrame)


def _to_json(elem: Any, use_bytes: bool) -> str | bytes:
    def default(obj: Any) -> Any:
        if isinstance(obj, np.ndarray):
            return obj.tolist()
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, bytes):
            return decode_str(obj)
        raise TypeError(f"{type(obj).__name__} is not JSON serialisable")

    try:
        text = json.dumps(elem, ensure_ascii=False, allow_nan=False, separators=(",", ":"),
                          default=default)  # fmt: skip
    except (TypeError, ValueError) as exc:
        raise CodecError(f"a DataFrame cell cannot be encoded as JSON: {exc}") from None
    return text.encode("utf-8") if use_bytes else text


def _null_for_nan(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


def _datatype_of(series: Any) -> Datatype:
    dtype = series.dtype
    if isinstance(dtype, np.dtype):
        try:
            return to_datatype(dtype)
        except CodecError as exc:
            raise CodecError(f"column {series.name!r}: {exc}") from None
    # pandas' own dtypes: str (pandas >= 3), nullable ints and floats, categories...
    numpy_dtype = getattr(dtype, "numpy_dtype", None)
    if getattr(dtype, "kind", None) in ("O", "U", "S") or numpy_dtype is None:
        return Datatype.BYTES
    return to_datatype(numpy_dtype)


def _column(series: Any, use_bytes: bool) -> dict[str, Any]:
    datatype = _datatype_of(series)
    data = [_null_for_nan(v) for v in series.tolist()]
    content_type: str | None = None
    if datatype is Datatype.BYTES:
        if all(isinstance(v, str | bytes) for v in data):
            content_type = StringCodec.ContentType
            if use_bytes:
                data = [v.encode("utf-8") if isinstance(v, str) else v for v in data]
        else:
            content_type = PandasCodec.JsonContentType
            data = [_to_json(v, use_bytes) for v in data]
    return {
        "name": str(series.name),
        "shape": inject_batch_dimension(list(series.shape)),
        "datatype": datatype.value,
        "parameters": {"content_type": content_type} if content_type else None,
        "data": data,
    }


def _to_series(pd: Any, tensor: InputOrOutput) -> Any:
    label = tensor_label(tensor)
    shape = list(tensor.shape)
    if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
        raise CodecError(f"{label}: a DataFrame column has shape [N] or [N, 1], not {shape}")
    content_type = tensor.parameters.content_type if tensor.parameters else None
    datatype = str(getattr(tensor.datatype, "value", tensor.datatype))
    if has_decoded(tensor):
        payload = get_decoded(tensor)
    elif content_type == PandasCodec.JsonContentType:
        try:
            payload = [json.loads(v) for v in flatten(tensor.data.root)]
        except (TypeError, ValueError) as exc:
            raise CodecError(f"{label}: not a JSON text ({exc})") from None
    elif content_type == StringCodec.ContentType:
        payload = StringCodec.decode_input(tensor)  # type: ignore[arg-type]
    else:
        raw = tensor.data.root
        payload = flatten(raw) if isinstance(raw, list) else [raw]
    if isinstance(payload, np.ndarray):
        payload = payload.reshape(-1)
    if datatype == Datatype.BYTES.value or content_type == PandasCodec.JsonContentType:
        # the elements as they are (str, bytes, JSON's values): pandas infers the dtype
        return pd.Series(list(payload), name=tensor.name)
    try:
        return pd.Series(payload, name=tensor.name, dtype=to_dtype(datatype))
    except (TypeError, ValueError) as exc:
        raise CodecError(f"{label}: cannot make a {datatype} column ({exc})") from None


def _frame(tensors: list[RequestInput] | list[ResponseOutput]) -> Any:
    pd = _pandas()
    columns = [_to_series(pd, tensor) for tensor in tensors]
    lengths = {len(c) for c in columns}
    if len(lengths) > 1:
        raise CodecError(
            "the columns of a DataFrame have one length; got "
            + ", ".join(f"{c.name!r}: {len(c)}" for c in columns)
        )
    return pd.DataFrame({c.name: c for c in columns})


@register_request_codec
class PandasCodec(RequestCodec, metaclass=_PandasCodecType):
    """A request (response) as a DataFrame: each input (output) a column."""

    ContentType = "pd"
    JsonContentType = "pd_json"

    @classmethod
    def can_encode(cls, payload: Any) -> bool:
        return _is_dataframe(payload)

    @classmethod
    def encode_outputs(cls, payload: Any, use_bytes: bool = True) -> list[ResponseOutput]:
        """The DataFrame's columns as outputs (MLServer's runtimes encode a DataFrame
        returned by the model this way)."""
        pd = _pandas()
        if not isinstance(payload, pd.DataFrame):
            raise CodecError(f"PandasCodec encodes DataFrames, not {type(payload).__name__}")
        return [ResponseOutput.model_validate(_column(payload[col], use_bytes)) for col in payload]

    @classmethod
    def encode_response(
        cls,
        model_name: str,
        payload: Any,
        model_version: str | None = None,
        use_bytes: bool = True,
        **kwargs: Any,
    ) -> InferenceResponse:
        return InferenceResponse(
            model_name=model_name,
            model_version=model_version,
            parameters=Parameters(content_type=cls.ContentType),
            outputs=cls.encode_outputs(payload, use_bytes=use_bytes),
        )

    @classmethod
    def decode_response(cls, response: InferenceResponse) -> Any:
        return _frame(response.outputs)

    @classmethod
    def encode_request(
        cls, payload: Any, use_bytes: bool = True, **kwargs: Any
    ) -> InferenceRequest:
        pd = _pandas()
        if not isinstance(payload, pd.DataFrame):
            raise CodecError(f"PandasCodec encodes DataFrames, not {type(payload).__name__}")
        return InferenceRequest(
            parameters=Parameters(content_type=cls.ContentType),
            inputs=[
                RequestInput.model_validate(_column(payload[col], use_bytes)) for col in payload
            ],
        )

    @classmethod
    def decode_request(cls, request: InferenceRequest) -> Any:
        return _frame(request.inputs)
