"""JSON text with raw fragments: documents json.dumps cannot write, and the scalars, values
and names the request strategies draw from."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st


@dataclass(frozen=True)
class Raw:
    """JSON text put into a document verbatim: what json.dumps cannot write (NaN tokens
    are fine, but not 10,000 levels of nesting, lone surrogates or 1e999)."""

    text: str


def dumps(doc: Any) -> bytes:
    raws: list[str] = []

    def swap(value: Any) -> Any:
        if isinstance(value, Raw):
            raws.append(value.text)
            return f"@@raw{len(raws) - 1}@@"
        if isinstance(value, dict):
            return {k: swap(v) for k, v in value.items()}
        if isinstance(value, list):
            return [swap(v) for v in value]
        return value

    text = json.dumps(swap(doc), ensure_ascii=False)  # NaN, Infinity as JS tokens
    for i, raw in enumerate(raws):
        text = text.replace(f'"@@raw{i}@@"', raw, 1)
    return text.encode("utf-8", "surrogatepass")


RAW_FRAGMENTS = st.one_of(
    st.integers(1, 3000).map(lambda d: Raw("[" * d + "1" + "]" * d)),
    st.integers(1, 3000).map(lambda d: Raw('{"a":' * d + "1" + "}" * d)),
    st.sampled_from(
        [
            Raw("1e999"),
            Raw("-1e999"),
            Raw("-0"),
            Raw("0.0000000000000000000000000000000000000000000000001"),
            Raw("9" * 500),
            Raw("-" + "9" * 500),
            Raw("NaN"),
            Raw("Infinity"),
            Raw("-Infinity"),
            Raw('"\\ud800"'),
            Raw('"\\udc00\\ud800"'),
            Raw('"\\u0000"'),
            Raw('"\\uFFFF"'),
            Raw('"\\ud83d\\ude00"'),
            Raw('"\x7f\u2028\u2029"'),
            Raw("[1,]"),
            Raw("01"),
            Raw("'x'"),
            Raw("true false"),
        ]
    ),
)

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([0, -1, 2**31, 2**32, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30]),
    st.floats(),
    st.text(max_size=12),
    RAW_FRAGMENTS,
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)

LONG_TEXT = st.integers(1, 200_000).map(lambda n: "n" * n) | st.integers(1, 20_000).map(
    lambda n: "é" * n  # two bytes each, six when percent-encoded into a gRPC status message
)
NAMES = st.one_of(
    st.sampled_from(["x", "a", "prompt", "n", "delay_s", "token", "output", ""]),
    st.text(max_size=20),
    LONG_TEXT,
)
