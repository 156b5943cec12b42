"""What a valid V2 (Open Inference Protocol) inference request is, decided without the
server: the fuzz's oracle (tests/support/hostile). Written from the protocol (the REST and
gRPC documents of the Open Inference Protocol) and this project's documented decisions
(docs/reliability.md), not from streamwise's code: it imports nothing of streamwise, so a
validation bug is not shared by the server and its checker.

A request is, for a model with the declared inputs and outputs:

- JSON (REST): an object; ``inputs`` an array of tensors; ``id`` a string; ``parameters``
  an object; ``outputs`` an array of objects with a string ``name``; keys the protocol does
  not name are ignored. A tensor: a string ``name``, a ``shape`` of integers in
  [0, 2**63 - 1], a ``datatype`` of the thirteen, ``data``, optional ``parameters``.
- gRPC: a ModelInferRequest as protobuf parses it; a tensor's values in the ``contents``
  field of its datatype (no other), or every tensor's in ``raw_input_contents`` (one
  buffer per input, no ``contents`` at all): little-endian, BYTES as 4-byte lengths each
  followed by its bytes, FP16 only there.
- Data: ``prod(shape)`` elements, flat or nested to any depth (MLServer's reading, the
  project's decision), or one lone value for a one-element shape; booleans for BOOL,
  integers in the type's range for the integer types (not 1.0, not true), numbers for
  FP16/32/64 (NaN and infinities included: the project accepts the JSON tokens), strings
  for BYTES (any bytes over gRPC).
- Input names are unique, requested output names too; with declared inputs, each input is
  declared with its datatype and every input not marked optional is there; with declared
  outputs, each requested output is one.

The verdict is VALID, INVALID, or EITHER where the protocol and a reasonable server may
part: JSON the RFC leaves to the parser (lone surrogates) or nested near the server's
documented depth limit (beyond it, ~250 levels, is INVALID); integers written as ``"3"``, ``3.0`` or ``true``, and ``null`` for
an optional field (pydantic's lax reading, as MLServer's); parameter values that are not
a string, number or boolean, a ``content_type`` that is not a string, any ``headers``
(MLServer's object where the protocol has scalars); a gRPC parameter with no value; BOOL
bytes other than 0 and 1; gRPC values in a contents field not of the datatype beside the
right ones in its own (the server reads its own field only) or an empty ``contents``
beside raw buffers. EITHER allows any answer but a server error.
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

VALID, INVALID, EITHER = "valid", "invalid", "either"

INT_RANGES: dict[str, tuple[int, int]] = {
    "UINT8": (0, 2**8 - 1),
    "UINT16": (0, 2**16 - 1),
    "UINT32": (0, 2**32 - 1),
    "UINT64": (0, 2**64 - 1),
    "INT8": (-(2**7), 2**7 - 1),
    "INT16": (-(2**15), 2**15 - 1),
    "INT32": (-(2**31), 2**31 - 1),
    "INT64": (-(2**63), 2**63 - 1),
}
FLOATS = ("FP16", "FP32", "FP64")
DATATYPES = ("BOOL", *INT_RANGES, *FLOATS, "BYTES")
MAX_DIM = 2**63 - 1
"""The largest dimension, and the most elements a shape may hold: shapes are int64."""
OPEN_DEPTH, MAX_DEPTH = 200, 300
"""JSON nesting the server refuses (docs/reliability.md: its parser's limit, ~250 levels,
a 400): beyond ``MAX_DEPTH`` surely, beyond ``OPEN_DEPTH`` maybe."""

CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
"""The InferTensorContents field of each datatype (FP16 has none: raw only)."""
RAW_FORMAT = {"BOOL": "?", "UINT8": "B", "UINT16": "H", "UINT32": "I", "UINT64": "Q"}
RAW_FORMAT |= {"INT8": "b", "INT16": "h", "INT32": "i", "INT64": "q"}
RAW_FORMAT |= {"FP16": "e", "FP32": "f", "FP64": "d"}


@dataclass(frozen=True)
class Declared:
    """A model's declared input or output (model-settings.json)."""

    name: str
    datatype: str
    optional: bool = False

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Declared:
        optional = (doc.get("parameters") or {}).get("optional") is True
        return cls(doc["name"], doc["datatype"], optional)


@dataclass
class Verdict:
    """Collects what is wrong (INVALID) and what the protocol leaves open (EITHER)."""

    invalid: list[str] = field(default_factory=list)
    either: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return INVALID if self.invalid else EITHER if self.either else VALID

    @property
    def reason(self) -> str:
        return "; ".join(self.invalid or self.either)


# -- elements ---------------------------------------------------------------------------
def element_count(shape: Sequence[int]) -> int:
    """``prod(shape)``; ``MAX_DIM + 1`` as soon as it is larger (linear in the rank)."""
    if 0 in shape:
        return 0
    n = 1
    for d in shape:
        n *= d
        if n > MAX_DIM:
            return MAX_DIM + 1
    return n


def leaves(data: Any, limit: int) -> list[Any]:
    """The elements of JSON ``data``: the leaves of nested arrays (at most ``limit + 1``),
    or the one lone value."""
    if not isinstance(data, list):
        return [data]
    out: list[Any] = []
    stack = [iter(data)]
    while stack and len(out) <= limit:
        item = next(stack[-1], stack)
        if item is stack:
            stack.pop()
        elif isinstance(item, list):
            stack.append(iter(item))
        else:
            out.append(item)
    return out


def element_fits(datatype: str, x: Any) -> bool:
    if datatype == "BOOL":
        return type(x) is bool
    if datatype == "BYTES":
        return type(x) is str
    if datatype in FLOATS:
        return type(x) in (int, float)
    lo, hi = INT_RANGES[datatype]
    return type(x) is int and lo <= x <= hi


def same_elements(a: Iterable[Any], b: Iterable[Any]) -> bool:
    """Equal element by element, NaN equal to NaN, a boolean never equal to a number."""
    a, b = list(a), list(b)

    def same(x: Any, y: Any) -> bool:
        if isinstance(x, bool) or isinstance(y, bool):
            return type(x) is type(y) and x == y
        if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
            return True
        return bool(x == y)

    return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))


def raw_elements(datatype: str, raw: bytes) -> list[Any] | None:
    """The elements of a raw buffer; None when it is not whole elements."""
    if datatype == "BYTES":
        out, i = [], 0
        while i < len(raw):
            if i + 4 > len(raw):
                return None
            (n,) = struct.unpack_from("<I", raw, i)
            if i + 4 + n > len(raw):
                return None
            out.append(raw[i + 4 : i + 4 + n])
            i += 4 + n
        return out
    fmt = RAW_FORMAT[datatype]
    size = struct.calcsize(fmt)
    if len(raw) % size:
        return None
    if datatype == "BOOL":
        return [b != 0 for b in raw]
    return list(struct.unpack(f"<{len(raw) // size}{fmt}", raw))


# -- REST -------------------------------------------------------------------------------
_INTEGRAL_TEXT = re.compile(r"\s*[+-]?\d[\d_]*\s*")


def _depth(doc: Any) -> int:
    deepest, stack = 0, [(doc, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, list | dict):
            deepest = max(deepest, level)
            items = value.values() if isinstance(value, dict) else value
            stack.extend((v, level + 1) for v in items)
    return deepest


def _strings(doc: Any) -> Iterable[str]:
    stack = [doc]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            yield value
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())


def _has_surrogate(text: str) -> bool:
    return any("\ud800" <= c <= "\udfff" for c in text)


def _parameters(v: Verdict, where: str, value: Any) -> None:
    if value is None:
        v.either.append(f"{where}: null")
    elif not isinstance(value, dict):
        v.invalid.append(f"{where}: not an object")
    else:
        for key, item in value.items():
            if key == "headers":
                v.either.append(f"{where}: headers (an object for MLServer, scalars here)")
            elif key == "content_type" and not isinstance(item, str):
                v.either.append(f"{where}: content_type not a string")
            elif item is None or isinstance(item, list | dict):
                v.either.append(f"{where}: {key!r} is not a string, number or boolean")


def _dimension(v: Verdict, where: str, d: Any) -> int | None:
    """A shape dimension as the integer it is; None when it is none."""
    if type(d) is int:
        return d
    if type(d) is bool:
        v.either.append(f"{where}: a dimension written {d!r}")
        return int(d)
    if type(d) is float and math.isfinite(d) and d == int(d):
        v.either.append(f"{where}: a dimension written {d!r}")
        return int(d)
    if isinstance(d, str) and _INTEGRAL_TEXT.fullmatch(d):
        v.either.append(f"{where}: a dimension written {d[:20]!r}")
        return int(d.replace("_", ""))
    return None


def _rest_tensor(v: Verdict, i: int, tensor: Any) -> tuple[str, str] | None:
    """Check one input; its (name, datatype) when both are usable."""
    where = f"input {i}"
    if not isinstance(tensor, dict):
        v.invalid.append(f"{where}: not an object")
        return None
    name, datatype = tensor.get("name"), tensor.get("datatype")
    if not isinstance(name, str):
        v.invalid.append(f"{where}: name not a string")
    if datatype not in DATATYPES:
        v.invalid.append(f"{where}: datatype {str(datatype)[:20]!r} not a V2 datatype")
    if "parameters" in tensor:
        _parameters(v, f"{where} parameters", tensor["parameters"])
    shape = tensor.get("shape")
    dims = [_dimension(v, where, d) for d in shape] if isinstance(shape, list) else [None]
    if "data" not in tensor:
        v.invalid.append(f"{where}: no data")
    if None in dims or not all(0 <= d <= MAX_DIM for d in dims if d is not None):
        v.invalid.append(f"{where}: shape is not integers in [0, 2**63 - 1]")
    elif datatype in DATATYPES and "data" in tensor:
        count = element_count([d for d in dims if d is not None])
        elements = leaves(tensor["data"], min(count, 10**7))
        if len(elements) != count:
            v.invalid.append(f"{where}: {len(elements)} elements for {count}")
        elif not all(element_fits(datatype, x) for x in elements):
            v.invalid.append(f"{where}: an element that is not {datatype}")
    if isinstance(name, str) and datatype in DATATYPES:
        return name, datatype
    return None


def _against_model(
    v: Verdict,
    given: list[tuple[str, str]],
    requested: list[str],
    inputs: Sequence[Declared],
    outputs: Sequence[Declared],
) -> None:
    names = [name for name, _ in given]
    if len(set(names)) != len(names):
        v.invalid.append("an input name twice")
    if len(set(requested)) != len(requested):
        v.invalid.append("an output name twice")
    if inputs:
        declared = {d.name: d for d in inputs}
        for name, datatype in given:
            if name not in declared:
                v.invalid.append(f"input {name[:20]!r} not declared")
            elif declared[name].datatype != datatype:
                v.invalid.append(f"input {name[:20]!r} is {datatype}, declared otherwise")
        missing = [d.name for d in inputs if not d.optional and d.name not in names]
        if missing:
            v.invalid.append(f"missing inputs {missing}")
    if outputs:
        unknown = [name for name in requested if name not in {d.name for d in outputs}]
        if unknown:
            v.invalid.append("an output the model does not give")


def rest_verdict(
    body: bytes, inputs: Sequence[Declared] = (), outputs: Sequence[Declared] = ()
) -> Verdict:
    """The verdict on a REST inference request body for a model declaring these."""
    v = Verdict()
    try:
        doc = json.loads(body.decode("utf-8"))  # NaN, Infinity: numbers, as the server
    except RecursionError:  # ~1000 levels
        v.invalid.append("JSON nested past the server's depth limit")
        return v
    except ValueError as exc:  # not UTF-8, not JSON; an integer of over 4,300 digits
        if "integer string conversion" in str(exc):
            v.either.append("an integer too long for Python's parser")
        else:
            v.invalid.append(f"not JSON: {exc}"[:200])
        return v
    depth = _depth(doc)
    if depth > MAX_DEPTH:
        v.invalid.append("JSON nested past the server's depth limit")
    elif depth > OPEN_DEPTH:
        v.either.append("JSON nested near the server's depth limit")
    if any(_has_surrogate(s) for s in _strings(doc)):
        v.either.append("a lone surrogate in a JSON string")
    if not isinstance(doc, dict):
        v.invalid.append("not an object")
        return v
    for key in ("id", "parameters", "outputs"):
        if key in doc and doc[key] is None:
            v.either.append(f"{key}: null")
    if doc.get("id") is not None and not isinstance(doc["id"], str):
        v.invalid.append("id not a string")
    if doc.get("parameters") is not None:
        _parameters(v, "parameters", doc["parameters"])
    requested: list[str] = []
    if doc.get("outputs") is not None:
        if not isinstance(doc["outputs"], list):
            v.invalid.append("outputs not an array")
        else:
            for out in doc["outputs"]:
                if not isinstance(out, dict) or not isinstance(out.get("name"), str):
                    v.invalid.append("an output without a string name")
                    continue
                requested.append(out["name"])
                if "parameters" in out:
                    _parameters(v, "output parameters", out["parameters"])
    if not isinstance(doc.get("inputs"), list):
        v.invalid.append("inputs not an array")
        return v
    given = [_rest_tensor(v, i, t) for i, t in enumerate(doc["inputs"])]
    _against_model(v, [g for g in given if g], requested, inputs, outputs)
    return v


# -- gRPC -------------------------------------------------------------------------------
def _grpc_parameters(v: Verdict, where: str, parameters: Any) -> None:
    for key, parameter in parameters.items():
        choice = parameter.WhichOneof("parameter_choice")
        if choice is None:
            v.either.append(f"{where}: {key!r} has no value")
        elif key == "headers":
            v.either.append(f"{where}: headers (an object for MLServer, scalars here)")
        elif key == "content_type" and choice != "string_param":
            v.either.append(f"{where}: content_type not a string")


def _set_fields(contents: Any) -> list[str]:
    return [f.name for f, values in contents.ListFields() if len(values)]


def grpc_verdict(
    message: Any, inputs: Sequence[Declared] = (), outputs: Sequence[Declared] = ()
) -> Verdict:
    """The verdict on a ModelInferRequest (protobuf's message) for a model declaring these."""
    v = Verdict()
    _grpc_parameters(v, "parameters", message.parameters)
    raws = list(message.raw_input_contents)
    if raws and len(raws) != len(message.inputs):
        v.invalid.append(f"{len(raws)} raw buffers for {len(message.inputs)} inputs")
    given = []
    for i, tensor in enumerate(message.inputs):
        where = f"input {i}"
        given.append((tensor.name, tensor.datatype))
        _grpc_parameters(v, f"{where} parameters", tensor.parameters)
        if tensor.datatype not in DATATYPES:
            v.invalid.append(f"{where}: datatype {tensor.datatype[:20]!r} not a V2 datatype")
            continue
        if not all(0 <= d <= MAX_DIM for d in tensor.shape):
            v.invalid.append(f"{where}: a negative dimension")
            continue
        count = element_count(tensor.shape)
        filled = _set_fields(tensor.contents)
        if raws:
            if filled:
                v.invalid.append(f"{where}: contents beside raw_input_contents")
            elif tensor.HasField("contents"):
                v.either.append(f"{where}: empty contents beside raw_input_contents")
            if i >= len(raws):
                continue
            elements = raw_elements(tensor.datatype, raws[i])
            if elements is None or len(elements) != count:
                v.invalid.append(f"{where}: raw contents are not {count} elements")
            elif tensor.datatype == "BOOL" and any(b > 1 for b in raws[i]):
                v.either.append(f"{where}: BOOL bytes other than 0 and 1")
            continue
        want = CONTENTS_FIELD.get(tensor.datatype)
        values = list(getattr(tensor.contents, want)) if want else []
        if len(values) != count:
            v.invalid.append(f"{where}: {len(values)} values for {count}")
        elif any(name != want for name in filled):
            v.either.append(f"{where}: values in a field not of {tensor.datatype} as well")
        elif tensor.datatype in INT_RANGES and not all(
            element_fits(tensor.datatype, x) for x in values
        ):
            v.invalid.append(f"{where}: a value out of the range of {tensor.datatype}")
    requested = [out.name for out in message.outputs]
    for out in message.outputs:
        _grpc_parameters(v, "output parameters", out.parameters)
    _against_model(v, given, requested, inputs, outputs)
    return v


def grpc_elements(tensor: Any, raw: bytes | None) -> list[Any] | None:
    """A gRPC tensor's elements: from ``raw`` when given, else from its contents."""
    if raw is not None:
        return raw_elements(tensor.datatype, raw)
    want = CONTENTS_FIELD.get(tensor.datatype)
    return list(getattr(tensor.contents, want)) if want else []
