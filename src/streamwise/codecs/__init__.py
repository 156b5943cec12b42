"""Codecs: Python values <-> V2 tensors, MLServer's ``mlserver.codecs`` API.

Replacing ``mlserver`` by ``streamwise`` in ``from mlserver.codecs import ...`` works for the
names below. ``PandasCodec`` needs the optional ``pandas`` extra only when it is used (it
imports without pandas, and says ``pip install "streamwise[pandas]"`` when asked to work).
"""

# Registration order (string, base64, datetime, numpy, as MLServer's) is the order codecs
# are tried when found by payload or type hint, so these imports are not sorted.
from __future__ import annotations  # noqa: I001

from .base import (
    InputCodec,
    InputCodecLike,
    RequestCodec,
    RequestCodecLike,
    find_input_codec,
    find_input_codec_by_payload,
    find_input_codec_by_type_hint,
    find_request_codec,
    find_request_codec_by_payload,
    find_request_codec_by_type_hint,
    register_input_codec,
    register_request_codec,
)
from .errors import CodecError, CodecNotFound, InputsNotFound, OutputNotFound
from .utils import (
    DecodedParameterName,
    SingleInputRequestCodec,
    decode_inference_request,
    decode_request_input,
    encode_inference_response,
    encode_response_output,
    get_decoded,
    get_decoded_or_raw,
    has_decoded,
)
from .string import StringCodec, StringRequestCodec
from .base64 import Base64Codec
from .datetime import DatetimeCodec
from .numpy import NumpyCodec, NumpyRequestCodec
from .pandas import PandasCodec
from .decorator import decode_args

__all__ = [
    "CodecError",
    "CodecNotFound",
    "InputsNotFound",
    "OutputNotFound",
    "NumpyCodec",
    "NumpyRequestCodec",
    "PandasCodec",
    "StringCodec",
    "StringRequestCodec",
    "Base64Codec",
    "DatetimeCodec",
    "InputCodec",
    "InputCodecLike",
    "RequestCodec",
    "RequestCodecLike",
    "SingleInputRequestCodec",
    "DecodedParameterName",
    "register_input_codec",
    "register_request_codec",
    "find_input_codec",
    "find_input_codec_by_payload",
    "find_input_codec_by_type_hint",
    "find_request_codec",
    "find_request_codec_by_payload",
    "find_request_codec_by_type_hint",
    "has_decoded",
    "get_decoded",
    "get_decoded_or_raw",
    "encode_inference_response",
    "encode_response_output",
    "decode_request_input",
    "decode_inference_request",
    "decode_args",
]
