"""The 13 V2 datatypes with sample values at their edges, shared by REST and gRPC checks.
Every value is exact in its datatype, so a round trip compares equal."""

from __future__ import annotations

import sys
from typing import Any

SAMPLES: dict[str, list[Any]] = {
    "BOOL": [True, False, True],
    "UINT8": [0, 1, 2**8 - 1],
    "UINT16": [0, 1, 2**16 - 1],
    "UINT32": [0, 1, 2**32 - 1],
    "UINT64": [0, 1, 2**64 - 1],
    "INT8": [-(2**7), 0, 2**7 - 1],
    "INT16": [-(2**15), 0, 2**15 - 1],
    "INT32": [-(2**31), 0, 2**31 - 1],
    "INT64": [-(2**63), 0, 2**63 - 1],
    # largest, a fraction, and the smallest (subnormal for FP16) of each width
    "FP16": [-65504.0, 0.5, 65504.0, 2.0**-24],
    "FP32": [-3.4028234663852886e38, 1.5, 3.4028234663852886e38, 1.1754943508222875e-38],
    "FP64": [-sys.float_info.max, 0.1, sys.float_info.max, sys.float_info.min],
    "BYTES": ["", "hello", "wörld ✓"],  # JSON carries text; gRPC adds raw bytes
}
DATATYPES = tuple(SAMPLES)
