"""Compressed request bodies: ``Content-Encoding: gzip`` or ``deflate``.

Triton's HTTP client sends them (``request_compression_algorithm="gzip"`` or
``"deflate"``, the binary tensor extension's body included: its
``Inference-Header-Content-Length`` counts the JSON header before compression), and
MLServer decompresses gzip bodies. A body is decompressed once, before it is parsed, and
what it decompresses to is bounded by ``max_request_body_bytes`` as a plain body is (413),
so a small body cannot become a large one in memory. Unknown codings get 415 and name the
ones taken; a body that is not what its header says gets 400. A request without the
header pays one header look-up.

(``gzip_enabled`` is the other direction: responses, ``rest/gzip.py``.)
"""

from __future__ import annotations

import zlib

from ..errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType

__all__ = ["CODINGS", "decode"]

_GZIP = 16 + zlib.MAX_WBITS
_ZLIB = zlib.MAX_WBITS
_RAW = -zlib.MAX_WBITS

CODINGS = {"gzip": _GZIP, "x-gzip": _GZIP, "deflate": _ZLIB}
"""The content codings taken, and zlib's window bits for each (``identity`` too: nothing
to do). ``deflate`` is the zlib format (RFC 9110 8.4.1.2); a raw deflate stream, which some
clients send under that name, is taken too."""


def decode(body: bytes, content_encoding: str, limit: int) -> bytes:
    """``body`` as it was before the codings ``content_encoding`` lists (applied in that
    order, so undone in the reverse), at most ``limit`` bytes."""
    codings = [c.strip().lower() for c in content_encoding.split(",")]
    for coding in reversed(codings):
        if coding in ("identity", ""):
            continue
        wbits = CODINGS.get(coding)
        if wbits is None:
            taken = ", ".join([*CODINGS, "identity"])
            raise UnsupportedMediaType(
                f"Content-Encoding {coding!r} is not supported (taken: {taken})"
            )
        try:
            body = _inflate(body, wbits, limit)
        except zlib.error as exc:
            if wbits != _ZLIB:
                raise InvalidRequest(f"request body is not valid {coding} data: {exc}") from None
            try:
                body = _inflate(body, _RAW, limit)
            except zlib.error:
                raise InvalidRequest(f"request body is not valid {coding} data: {exc}") from None
    return body


def _inflate(data: bytes, wbits: int, limit: int) -> bytes:
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
                f"request body too large once decompressed (over {limit} bytes: "
                "max_request_body_bytes)"
            )
        if not inflater.eof:
            raise zlib.error("the compressed data end early")
        parts.append(part)
        data = inflater.unused_data
        if not data or wbits != _GZIP:
            if data:
                raise zlib.error("data after the compressed stream's end")
            return b"".join(parts)
