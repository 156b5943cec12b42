"""Compressed requests: a REST body's ``Content-Encoding``, a gRPC message's
``grpc-encoding``; gzip and deflate (and identity) either way.

Triton's HTTP client sends compressed bodies (``request_compression_algorithm="gzip"`` or
``"deflate"``, the binary tensor extension's body included: its
``Inference-Header-Content-Length`` counts the JSON header before compression), MLServer
decompresses gzip bodies, and grpcio compresses messages when a channel or call says
``compression=`` (Triton's gRPC client: ``compression_algorithm``). A body or message is
decompressed once, before it is parsed, and what it decompresses to is bounded as a plain
one is (``max_request_body_bytes``: 413; ``grpc_max_message_length``:
RESOURCE_EXHAUSTED), so a few kilobytes cannot become gigabytes in memory. Unknown codings
get 415 (gRPC: UNIMPLEMENTED, as gRPC's compression document asks) and name the ones
taken; data that is not what its header says gets 400 (INVALID_ARGUMENT). A request
without compression pays one header look-up (REST) or nothing (gRPC: its message's flag).

(``gzip_enabled`` is the other direction: responses, ``rest/gzip.py``.)
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from ..errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType

__all__ = ["CODINGS", "BODY", "MESSAGE", "Compressed", "decode"]

_GZIP = 16 + zlib.MAX_WBITS
_ZLIB = zlib.MAX_WBITS
_RAW = -zlib.MAX_WBITS

CODINGS = {"gzip": _GZIP, "x-gzip": _GZIP, "deflate": _ZLIB}
"""The content codings taken, and zlib's window bits for each (``identity`` too: nothing
to do). ``deflate`` is the zlib format (RFC 9110 8.4.1.2); a raw deflate stream, which some
clients send under that name, is taken too."""


@dataclass(frozen=True, slots=True)
class Compressed:
    """What is decompressed, as its errors name it."""

    header: str
    what: str
    setting: str


BODY = Compressed("Content-Encoding", "request body", "max_request_body_bytes")
MESSAGE = Compressed("grpc-encoding", "request message", "grpc_max_message_length")


def decode(body: bytes, codings: str, limit: int, kind: Compressed = BODY) -> bytes:
    """``body`` as it was before the ``codings`` (its header's value, applied in that
    order, so undone in the reverse), at most ``limit`` bytes (``kind.setting``)."""
    for coding in reversed([c.strip().lower() for c in codings.split(",")]):
        if coding in ("identity", ""):
            continue
        wbits = CODINGS.get(coding)
        if wbits is None:
            taken = ", ".join([*CODINGS, "identity"])
            raise UnsupportedMediaType(
                f"{kind.header} {coding!r} is not supported (taken: {taken})"
            )
        try:
            body = _inflate(body, wbits, limit, kind)
            continue
        except zlib.error as exc:
            error = exc
        if wbits == _ZLIB:  # "deflate" sent as a raw stream, as some clients do
            try:
                body = _inflate(body, _RAW, limit, kind)
                continue
            except zlib.error:
                pass
        raise InvalidRequest(f"{kind.what} is not valid {coding} data: {error}") from None
    return body


def _inflate(data: bytes, wbits: int, limit: int, kind: Compressed) -> bytes:
    """One coding undone; a gzip body of several members (RFC 1952 2.2) is their
    concatenation."""
    parts: list[bytes] = []
    size = 0
    while True:
        inflater = zlib.decompressobj(wbits)
        part = inflater.decompress(data, limit - size + 1)
        size += len(part)
        if size > limit:
            raise PayloadTooLarge(
                f"{kind.what} too large once decompressed (over {limit} bytes: {kind.setting})"
            )
        if not inflater.eof:
            raise zlib.error("the compressed data end early")
        parts.append(part)
        data = inflater.unused_data
        if not data or wbits != _GZIP:
            if data:
                raise zlib.error("data after the compressed stream's end")
            return b"".join(parts)
