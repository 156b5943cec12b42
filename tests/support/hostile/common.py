"""Shared by every section: the server's limits, the timeouts, the datatypes, the demo
models as the oracle sees them, and outcomes and the expectations they are checked against."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck

from .. import paths
from ..grpc_stubs import load_stubs
from ..v2_oracle import INT_RANGES, Declared

pb2, pb2_grpc = load_stubs()

DEMO = paths.DEMO

# Small limits make "too large" cheap to reach: the server under fuzz is started with them.
BODY_LIMIT = 256 * 1024
SERVER_OVERRIDES: dict[str, Any] = {
    "max_request_body_bytes": BODY_LIMIT,
    "grpc_max_message_length": BODY_LIMIT,
}

TIMEOUT = 10.0
"""Seconds a request may take: the demo models answer in milliseconds."""
FOLLOW_UP_TIMEOUT = 2.0
SLOW = 5.0
"""Seconds beyond which an answer is a problem: work that grows faster than the input."""

SUPPRESS = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]

DATATYPES = ["BOOL", *INT_RANGES, "FP16", "FP32", "FP64", "BYTES"]
BAD_DATATYPES = ["", "FOO", "fp32", "Fp32", "BF16", "STRING", "INT128", "FP32 ", "BYTES\x00"]


# -- the demo models, as the oracle sees them ---------------------------------------------
@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: str | None
    inputs: tuple[Declared, ...]
    outputs: tuple[Declared, ...]
    stream_only: bool


def _demo_models() -> dict[str, ModelInfo]:
    versions = {"identity": "1", "text-model": "v1.2.3"}
    out = {}
    for path in sorted(DEMO.glob("*/model-settings.json")):
        doc = json.loads(path.read_text())
        name = doc["name"]
        out[name] = ModelInfo(
            name=name,
            version=versions.get(name),
            inputs=tuple(Declared.from_json(m) for m in doc.get("inputs", ())),
            outputs=tuple(Declared.from_json(m) for m in doc.get("outputs", ())),
            stream_only=name != "identity",
        )
    return out


MODELS = _demo_models()
assert set(MODELS) == {"identity", "text-model", "token-streamer"}, sorted(MODELS)


# -- outcomes -----------------------------------------------------------------------------
_RUN = re.compile(r"(.{1,8}?)\1{7,}", re.S)


def squeeze(text: str) -> str:
    """``text`` with every run of 8+ repeats written ``[unit]*n``: readable reports."""
    return _RUN.sub(lambda m: f"[{m.group(1)}]*{len(m.group(0)) // len(m.group(1))}", text)


@dataclass
class Outcome:
    answer: str
    """What came back, for the counts: ``"200"``, ``"404"``, ``"OK"``, ``"NOT_FOUND"``,
    ``"closed"``..."""
    problem: str | None = None
    """Why this answer breaks the property; None when it holds."""


# Expectations, decided by the oracle before sending.
OK = "ok"  # must succeed
CLIENT_ERROR = "client error"  # must be a 4xx / client error status
UNIMPLEMENTED = "unimplemented"  # valid, unary, to a stream-only model: 501 / UNIMPLEMENTED
STARTS = "starts"  # valid stream to a model we do not wait for: must start (200)
ANY = "any"  # garbage, or what the protocol leaves open: anything but a server error
CLIENT_ERROR_OR_UNIMPLEMENTED = "client error or unimplemented"  # left open, unary, stream-only


def _cut(text: str, limit: int = 1500) -> str:
    return text if len(text) <= limit else text[:limit] + f"...({len(text) - limit} more)"
