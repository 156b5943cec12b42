"""The 13 V2 datatypes with sample values at their edges, shared by REST and gRPC checks."""

from __future__ import annotations

from typing import Any

SAMPLES: dict[str, list[Any]] = {
    "BOOL": [True, False, True],
    "UINT8": [0, 1, 255],
    "UINT16": [0, 1, 65535],
    "UINT32": [0, 1, 4294967295],
    "UINT64": [0, 1, 18446744073709551615],
    "INT8": [-128, 0, 127],
    "INT16": [-32768, 0, 32767],
    "INT32": [-2147483648, 0, 2147483647],
    "INT64": [-9223372036854775808, 0, 9223372036854775807],
    # exactly representable at each width, so that a round trip compares equal
    "FP16": [-2.0, 0.5, 65504.0],
    "FP32": [-0.25, 1.5, 3.4028234663852886e38],
    "FP64": [-2.5, 1e-300, 1.7976931348623157e308],
    "BYTES": ["hello", "wörld ✓", ""],
}
DATATYPES = tuple(SAMPLES)
