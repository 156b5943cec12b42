"""Codec interfaces and the codec registry (``mlserver.codecs.base``)."""

from __future__ import annotations

import logging
import types
import typing
from collections.abc import Iterable
from typing import Any, ClassVar, TypeVar, Union

from ..types import InferenceRequest, InferenceResponse, RequestInput, ResponseOutput

__all__ = [
    "InputCodec",
    "RequestCodec",
    "InputCodecLike",
    "RequestCodecLike",
    "register_input_codec",
    "register_request_codec",
    "find_input_codec",
    "find_input_codec_by_payload",
    "find_input_codec_by_type_hint",
    "find_request_codec",
    "find_request_codec_by_payload",
    "find_request_codec_by_type_hint",
]

log = logging.getLogger(__name__)


class InputCodec:
    """Converts one tensor (a request input / response output) to and from a Python value."""

    ContentType: ClassVar[str] = ""
    TypeHint: ClassVar[Any] = type(None)

    @classmethod
    def can_encode(cls, payload: Any) -> bool:
        return False

    @classmethod
    def encode(cls, name: str, payload: Any) -> ResponseOutput:
        """Deprecated spelling of :meth:`encode_output`."""
        return cls.encode_output(name, payload)

    @classmethod
    def encode_output(cls, name: str, payload: Any, **kwargs: Any) -> ResponseOutput:
        raise NotImplementedError()

    @classmethod
    def decode_output(cls, response_output: ResponseOutput) -> Any:
        raise NotImplementedError()

    @classmethod
    def encode_input(cls, name: str, payload: Any, **kwargs: Any) -> RequestInput:
        raise NotImplementedError()

    @classmethod
    def decode(cls, request_input: RequestInput) -> Any:
        """Deprecated spelling of :meth:`decode_input`."""
        return cls.decode_input(request_input)

    @classmethod
    def decode_input(cls, request_input: RequestInput) -> Any:
        raise NotImplementedError()


class RequestCodec:
    """Converts a whole request / response (all its tensors) to and from a Python value."""

    ContentType: ClassVar[str] = ""
    TypeHint: ClassVar[Any] = type(None)

    @classmethod
    def can_encode(cls, payload: Any) -> bool:
        return False

    @classmethod
    def encode(
        cls, model_name: str, payload: Any, model_version: str | None = None
    ) -> InferenceResponse:
        """Deprecated spelling of :meth:`encode_response`."""
        return cls.encode_response(model_name, payload, model_version)

    @classmethod
    def encode_response(
        cls, model_name: str, payload: Any, model_version: str | None = None, **kwargs: Any
    ) -> InferenceResponse:
        raise NotImplementedError()

    @classmethod
    def decode_response(cls, response: InferenceResponse) -> Any:
        raise NotImplementedError()

    @classmethod
    def encode_request(cls, payload: Any, **kwargs: Any) -> InferenceRequest:
        raise NotImplementedError()

    @classmethod
    def decode(cls, request: InferenceRequest) -> Any:
        """Deprecated spelling of :meth:`decode_request`."""
        return cls.decode_request(request)

    @classmethod
    def decode_request(cls, request: InferenceRequest) -> Any:
        raise NotImplementedError()


InputCodecLike = type[InputCodec] | InputCodec
RequestCodecLike = type[RequestCodec] | RequestCodec
_C = TypeVar("_C", InputCodecLike, RequestCodecLike)


def _hint_key(hint: Any) -> Any:
    """A comparable form of a type hint: ``List[str]`` and ``list[str]`` are the same."""
    origin = typing.get_origin(hint)
    if origin is None:
        return hint
    args = tuple(_hint_key(arg) for arg in typing.get_args(hint))
    if origin is Union or origin is types.UnionType:
        return (Union, frozenset(args))
    return (origin, args)


def _first_match(codecs: list[_C], what: str) -> _C | None:
    if not codecs:
        log.warning("No codec was found for %s.", what)
        return None
    if len(codecs) > 1:
        log.warning(
            "Multiple codecs (%d) were found for %s. The first one found will be used (%s).",
            len(codecs),
            what,
            codecs[0].ContentType,
        )
    return codecs[0]


def _by_payload(payload: Any, codecs: Iterable[_C]) -> _C | None:
    found = [codec for codec in codecs if codec.can_encode(payload)]
    return _first_match(found, f"payload with type {type(payload)}")


def _by_type_hint(type_hint: Any, codecs: Iterable[_C]) -> _C | None:
    key = _hint_key(type_hint)
    found = [codec for codec in codecs if _hint_key(codec.TypeHint) == key]
    return _first_match(found, f"type hint {type_hint}")


class _CodecRegistry:
    """Codecs by content type, in registration order."""

    def __init__(self) -> None:
        self._input_codecs: dict[str, InputCodecLike] = {}
        self._request_codecs: dict[str, RequestCodecLike] = {}

    def register_input_codec(self, content_type: str, codec: InputCodecLike) -> None:
        self._input_codecs[content_type] = codec

    def register_request_codec(self, content_type: str, codec: RequestCodecLike) -> None:
        self._request_codecs[content_type] = codec

    def find_input_codec(
        self, content_type: str | None = None, payload: Any = None, type_hint: Any = None
    ) -> InputCodecLike | None:
        if content_type:
            return self._input_codecs.get(content_type)
        if payload is not None:
            return self.find_input_codec_by_payload(payload)
        if type_hint is not None:
            return self.find_input_codec_by_type_hint(type_hint)
        return None

    def find_input_codec_by_payload(self, payload: Any) -> InputCodecLike | None:
        return _by_payload(payload, self._input_codecs.values())

    def find_input_codec_by_type_hint(self, type_hint: Any) -> InputCodecLike | None:
        return _by_type_hint(type_hint, self._input_codecs.values())

    def find_request_codec(
        self, content_type: str | None = None, payload: Any = None, type_hint: Any = None
    ) -> RequestCodecLike | None:
        if content_type:
            return self._request_codecs.get(content_type)
        if payload is not None:
            return self.find_request_codec_by_payload(payload)
        if type_hint is not None:
            return self.find_request_codec_by_type_hint(type_hint)
        return None

    def find_request_codec_by_payload(self, payload: Any) -> RequestCodecLike | None:
        return _by_payload(payload, self._request_codecs.values())

    def find_request_codec_by_type_hint(self, type_hint: Any) -> RequestCodecLike | None:
        return _by_type_hint(type_hint, self._request_codecs.values())


_codec_registry = _CodecRegistry()

find_input_codec = _codec_registry.find_input_codec
find_input_codec_by_payload = _codec_registry.find_input_codec_by_payload
find_input_codec_by_type_hint = _codec_registry.find_input_codec_by_type_hint
find_request_codec = _codec_registry.find_request_codec
find_request_codec_by_payload = _codec_registry.find_request_codec_by_payload
find_request_codec_by_type_hint = _codec_registry.find_request_codec_by_type_hint

_I = TypeVar("_I", bound=InputCodecLike)
_R = TypeVar("_R", bound=RequestCodecLike)


def register_input_codec(CodecKlass: _I) -> _I:  # noqa: N803 - MLServer's spelling
    """Class decorator: make an input codec findable by its ``ContentType``."""
    if CodecKlass.ContentType:
        _codec_registry.register_input_codec(CodecKlass.ContentType, CodecKlass)
    return CodecKlass


def register_request_codec(CodecKlass: _R) -> _R:  # noqa: N803 - MLServer's spelling
    """Class decorator: make a request codec findable by its ``ContentType``."""
    if CodecKlass.ContentType:
        _codec_registry.register_request_codec(CodecKlass.ContentType, CodecKlass)
    return CodecKlass
