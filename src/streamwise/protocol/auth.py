"""Bearer-token authentication, shared by both transports (sans-IO).

With ``auth_token`` set, every endpoint but health needs ``Authorization: Bearer <token>``
(REST) or ``authorization: Bearer <token>`` metadata (gRPC). Tokens are compared in
constant time (``hmac.compare_digest``: the time taken does not depend on where the first
wrong character is).
"""

from __future__ import annotations

import hmac

import pydantic

__all__ = ["bearer_ok", "OPEN_REST_PATHS", "OPEN_GRPC_METHODS", "MESSAGE"]

OPEN_REST_PATHS = frozenset({"/v2/health/live", "/v2/health/ready"})
OPEN_GRPC_METHODS = frozenset({"ServerLive", "ServerReady"})
MESSAGE = "missing or wrong bearer token"


def bearer_ok(header: str | None, token: pydantic.SecretStr) -> bool:
    """Whether an ``Authorization`` value carries ``token``."""
    expected = b"Bearer " + token.get_secret_value().encode()
    given = (header or "").encode("utf-8", "surrogateescape")
    return hmac.compare_digest(given, expected)
