"""``decode_args``: a ``predict`` written with typed arguments (``mlserver.codecs.decorator``).

Each argument is decoded with the codec its type hint names (``list[str]`` -> StringCodec,
``np.ndarray`` -> NumpyCodec, ...); the returned value(s) are encoded with the codecs
of the return hint, as outputs ``output-0``, ``output-1``, ...
"""

from __future__ import annotations

import types
import typing
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, Union

from ..types import InferenceRequest, InferenceResponse, RequestInput, ResponseOutput
from .base import InputCodec, RequestCodec, find_input_codec, find_request_codec
from .errors import CodecNotFound, InputsNotFound, OutputNotFound
from .utils import Codec

__all__ = ["SignatureCodec", "decode_args"]

PredictFunc = Callable[[Any, InferenceRequest], Awaitable[InferenceResponse]]


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, tuple) else [value]


def _is_codec_type(codec: Any, kind: type) -> bool:
    return isinstance(codec, kind) or (isinstance(codec, type) and issubclass(codec, kind))


def _unwrap_optional(hint: Any) -> Any:
    """``Optional[X]`` (or ``X | None``) is ``X`` here."""
    if typing.get_origin(hint) in (Union, types.UnionType):
        args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def _output_hints(hint: Any) -> list[Any]:
    if typing.get_origin(hint) is tuple:
        return list(typing.get_args(hint))
    return _as_list(hint)


class SignatureCodec(RequestCodec):
    """Maps a ``predict`` function's type hints to codecs."""

    def __init__(self, predict: Callable[..., Any]) -> None:
        self._predict = predict
        hints = {k: _unwrap_optional(v) for k, v in typing.get_type_hints(predict).items()}
        self._output_hints = _output_hints(hints.pop("return", None))
        self._input_hints = hints
        self._input_codecs: dict[str, Codec] = {
            name: self._find_codec(name, hint, is_input=True) for name, hint in hints.items()
        }
        self._output_codecs: list[Codec] = [
            self._find_codec(None, hint, is_input=False) for hint in self._output_hints
        ]

    @staticmethod
    def _find_codec(name: str | None, type_hint: Any, is_input: bool) -> Codec:
        codec: Codec | None = find_input_codec(type_hint=type_hint)
        if codec is None:
            codec = find_request_codec(type_hint=type_hint)
        if codec is None:
            raise CodecNotFound(name=name, payload_type=str(type_hint), is_input=is_input)
        return codec

    def decode_request(self, request: InferenceRequest) -> dict[str, Any]:  # type: ignore[override]
        inputs: dict[str, Any] = {}
        extra: list[RequestInput] = []
        for request_input in request.inputs:
            codec = self._input_codecs.get(request_input.name)
            if codec is None:
                extra.append(request_input)  # maybe for a request codec (e.g. a dataframe)
                continue
            if not _is_codec_type(codec, InputCodec):
                raise CodecNotFound(name=request_input.name, is_input=True)
            inputs[request_input.name] = codec.decode_input(request_input)  # type: ignore[union-attr]

        if extra:
            found = self._request_codec()
            if found is None:
                raise InputsNotFound(extra, self._input_codecs)
            name, request_codec = found
            inputs[name] = request_codec.decode_request(InferenceRequest(inputs=extra))
        return inputs

    def _request_codec(self) -> tuple[str, Any] | None:
        for name, codec in self._input_codecs.items():
            if _is_codec_type(codec, RequestCodec):
                return name, codec
        return None

    def encode_response(  # type: ignore[override]
        self, model_name: str, payload: Any, model_version: str | None = None, **kwargs: Any
    ) -> InferenceResponse:
        outputs: list[ResponseOutput] = []
        for idx, value in enumerate(_as_list(payload)):
            outputs += self._encode_outputs(idx, value)
        return InferenceResponse(
            model_name=model_name, model_version=model_version, outputs=outputs
        )

    def _encode_outputs(self, idx: int, payload: Any) -> list[ResponseOutput]:
        if idx >= len(self._output_codecs):
            raise OutputNotFound(idx, type(payload), self._output_hints)
        codec: Any = self._output_codecs[idx]
        if not codec.can_encode(payload):
            raise OutputNotFound(idx, type(payload), self._output_hints)
        if _is_codec_type(codec, InputCodec):
            return [codec.encode_output(name=f"output-{idx}", payload=payload)]
        if _is_codec_type(codec, RequestCodec):
            return list(codec.encode_response(model_name="", payload=payload).outputs)
        return []


def decode_args(predict: Callable[..., Awaitable[Any]]) -> PredictFunc:
    """Decorate ``async def predict(self, a: list[str], ...) -> np.ndarray`` for the V2 API."""
    codec = SignatureCodec(predict)

    @wraps(predict)
    async def _predict(self: Any, request: InferenceRequest) -> InferenceResponse:
        inputs = codec.decode_request(request)
        outputs = await predict(self, **inputs)
        return codec.encode_response(
            model_name=self.name, payload=outputs, model_version=getattr(self, "version", None)
        )

    return _predict
