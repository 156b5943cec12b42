"""grpclib's protobuf codec with our message size limit and our errors."""

from __future__ import annotations

from typing import Any

from grpclib.encoding.proto import ProtoCodec

from ..errors import PayloadTooLarge
from .convert import parse_message

__all__ = ["LimitedCodec"]


class LimitedCodec(ProtoCodec):
    """grpclib has no message size limit of its own: ours, both ways.

    Decoding raises our errors (:class:`PayloadTooLarge`, :class:`InvalidRequest`), not
    ``GRPCError``: on a bidi stream a later message is decoded inside the model's request
    iterator, and only our errors come out of the pipeline as themselves (anything else
    is the model failing, INTERNAL). ``_grpc_errors`` maps them in either place.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def _over(self, size: int, what: str) -> str | None:
        if size <= self.limit:
            return None
        return (
            f"{what} of {size} bytes is over the limit of {self.limit} bytes "
            "(grpc_max_message_length)"
        )

    def decode(self, data: bytes, message_type: Any) -> Any:
        if (problem := self._over(len(data), "request message")) is not None:
            raise PayloadTooLarge(problem)
        return parse_message(data, message_type)

    def encode(self, message: Any, message_type: Any) -> bytes:
        """A message, or its bytes already encoded (``grpc/encode.py``)."""
        data = message if isinstance(message, bytes) else super().encode(message, message_type)
        return self.checked_response(data)

    def checked_response(self, data: bytes) -> bytes:
        """``data``, unless it is over the limit: :class:`PayloadTooLarge`
        (RESOURCE_EXHAUSTED). For responses encoded without the codec (streams)."""
        if (problem := self._over(len(data), "response message")) is not None:
            raise PayloadTooLarge(problem)
        return data
