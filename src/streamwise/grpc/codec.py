"""grpclib's protobuf codec with our message size limit and our errors; and
:func:`recv`, grpclib's ``Stream.recv_message`` with compressed messages taken."""

from __future__ import annotations

import struct
import time
from typing import Any

from grpclib.encoding.proto import ProtoCodec
from grpclib.server import Stream

from .._proto import inference as pb
from ..errors import InvalidRequest, PayloadTooLarge
from ..protocol import compression
from .convert import parse_message
from .decode import decode_request

__all__ = ["LimitedCodec", "recv"]

_PREFIX = struct.Struct(">?I")
"""A gRPC message's prefix: compressed or not, then its length."""


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
        if message_type is pb.ModelInferRequest:  # every inference call's: read directly
            return decode_request(data)
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


async def recv(stream: Stream[Any, Any]) -> Any:
    """The call's next request message (None once the client has sent them all):
    ``stream.recv_message()``, which refuses every compressed message (grpclib 0.4.9 raises
    ``NotImplementedError``: the client sees UNKNOWN), with a message compressed as its
    call's ``grpc-encoding`` says (gzip, deflate) decompressed first, within the message
    limit (``protocol/compression.py``). Uses grpclib's stream internals, as
    ``recv_message`` does, checked against grpclib 0.4.9 (``tests/test_compression.py``)."""
    h2_stream = stream._stream
    prefix = await h2_stream.recv_data(_PREFIX.size)
    if not prefix:
        return None
    compressed, length = _PREFIX.unpack(prefix)
    codec: LimitedCodec = stream._codec  # type: ignore[assignment]
    data = await h2_stream.recv_data(length)
    if compressed:
        coding = getattr(h2_stream, "grpc_encoding", "identity")  # grpc/http2._Handler
        if coding == "identity":
            raise InvalidRequest("a message marked compressed, and no grpc-encoding")
        data = compression.decode(data, coding, codec.limit, compression.MESSAGE)
    message = codec.decode(data, stream._recv_type)
    (message,) = await stream._dispatch.recv_message(message)
    stream._messages_received += 1
    connection = h2_stream.connection
    connection.messages_received += 1
    connection.last_message_received = time.monotonic()
    return message
