"""Hostile input for streamwise: hypothesis strategies, one blocking sender per target, and
the property every answer must hold. Shared by tests/test_fuzz_slice.py (the fast slice:
``python -m pytest tests/test_fuzz_slice.py``) and scripts/soak_fuzz.py (10,000+ cases).

The property, for every target:

- no 5xx (REST) and no UNKNOWN / INTERNAL / DATA_LOSS / ... (gRPC) for a client's mistake;
  the one 5xx a client may cause is 501 / UNIMPLEMENTED, a valid unary request to a
  stream-only model (docs/architecture.md, "Decisions");
- every REST error the app sends is exactly ``{"error": "<str>"}``;
- a valid request succeeds (identity echoes each input: its name, datatype, shape and
  elements), an invalid one is a 4xx / a client error status, and one the protocol leaves
  open may be either. Validity is decided without the server, and without its code, by
  tests/support/v2_oracle.py (rules written from the protocol); requests built valid by
  construction must pass that oracle too;
- raw HTTP/1.1: a complete, well-formed request gets an answer (a silent close only for
  broken framing), two Content-Lengths that differ get 400;
- the server stays live: the callers check health and the models' readiness afterwards.

Senders block (httpx.Client, grpcio, sockets): they run in a worker thread while the server
runs in trio (``trio.to_thread.run_sync``).

One module per part: ``common`` (limits, the demo models as the oracle sees them, outcomes
and expectations), ``json_text`` (JSON text json.dumps cannot write), ``rest`` (REST
bodies), ``rest_paths`` (paths, methods, headers), ``raw_http`` (raw HTTP/1.1),
``grpc_messages`` (valid protobuf, hostile contents), ``grpc_garbage`` (garbage bytes as the
message), ``targets`` (a strategy and a sender per target, and the run of one case). What
the callers use is here.
"""

from .common import DEMO, SERVER_OVERRIDES, SUPPRESS, Outcome, pb2, squeeze
from .targets import (
    TARGETS,
    Clients,
    Target,
    close_clients,
    liveness_problems,
    open_clients,
    rss_kib,
    run_case,
)

__all__ = [
    "DEMO",
    "SERVER_OVERRIDES",
    "SUPPRESS",
    "TARGETS",
    "Clients",
    "Outcome",
    "Target",
    "close_clients",
    "liveness_problems",
    "open_clients",
    "pb2",
    "rss_kib",
    "run_case",
    "squeeze",
]
