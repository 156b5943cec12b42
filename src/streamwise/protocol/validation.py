"""Request validation, done once at the edge: sans-IO, no server state.

What is checked (each failure is an :class:`~streamwise.errors.InvalidRequest` whose
message names the input):

- input names are unique; requested output names are unique;
- every shape dimension is a non-negative integer;
- the data holds exactly ``prod(shape)`` elements (flat or nested lists, or one lone value
  when the shape holds one element); counted without allocating anything of shape size,
  so a request declaring ``[10**12]`` with little data costs nothing;
- every element fits the datatype: booleans for BOOL, integers within range for the
  integer types (no booleans, no floats), numbers for FP16/32/64, strings (or bytes, from
  in-process callers) for BYTES;
- against the model's declared inputs, when it declares any: every input is declared and
  has the declared datatype; every declared input is present unless its metadata
  parameters say ``"optional": true``. Declared *shapes* are not enforced: MLServer
  clients routinely add a batch dimension (``StringCodec`` sends ``[1, 1]`` for a ``[1]``
  input);
- against the model's declared outputs, when it declares any: requested outputs exist.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ..errors import InvalidRequest
from ..types import InferenceRequest, MetadataTensor, RequestInput

__all__ = ["validate_request", "validate_input", "count_elements", "INT_RANGES"]

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
_FLOATS = frozenset({"FP16", "FP32", "FP64"})


def _flatten(data: Any, out: list[Any], limit: int) -> bool:
    """Append the leaves of ``data`` to ``out``; False as soon as there are over ``limit``."""
    for item in data:
        if isinstance(item, list):
            if not _flatten(item, out, limit):
                return False
        else:
            out.append(item)
            if len(out) > limit:
                return False
    return True


def count_elements(data: Any, expected: int) -> tuple[int, list[Any]]:
    """The leaves of ``data`` (up to ``expected + 1`` of them) and how many there were."""
    if not isinstance(data, list):
        return 1, [data]
    if all(not isinstance(x, list) for x in data):  # the common, flat case
        return len(data), data
    leaves: list[Any] = []
    _flatten(data, leaves, expected)
    return len(leaves), leaves


def _check_elements(inp: RequestInput, leaves: list[Any]) -> None:
    datatype = inp.datatype
    if datatype == "BYTES":
        bad = next((x for x in leaves if not isinstance(x, (str, bytes))), _OK)
        want = "strings"
    elif datatype == "BOOL":
        bad = next((x for x in leaves if not isinstance(x, bool)), _OK)
        want = "booleans"
    elif datatype in _FLOATS:
        bad = next(
            (x for x in leaves if isinstance(x, bool) or not isinstance(x, (int, float))), _OK
        )
        want = "numbers"
    else:
        lo, hi = INT_RANGES[datatype]
        bad = next(
            (x for x in leaves if type(x) is not int or not lo <= x <= hi),  # noqa: E721
            _OK,
        )
        want = f"integers in [{lo}, {hi}]"
    if bad is not _OK:
        raise InvalidRequest(
            f"input {inp.name!r}: {datatype} data must be {want}, got {_show(bad)}"
        )


_OK = object()


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def validate_input(inp: RequestInput) -> None:
    """Shape, element count and element types of one input."""
    if any(d < 0 for d in inp.shape):
        raise InvalidRequest(f"input {inp.name!r}: shape {inp.shape} has a negative dimension")
    expected = math.prod(inp.shape)
    count, leaves = count_elements(inp.data.root, expected)
    if count != expected:
        got = f"more than {expected}" if count > expected else str(count)
        raise InvalidRequest(
            f"input {inp.name!r}: shape {inp.shape} needs {expected} elements, data has {got}"
        )
    _check_elements(inp, leaves)


def _check_against_metadata(
    request: InferenceRequest,
    inputs: Sequence[MetadataTensor],
    outputs: Sequence[MetadataTensor],
) -> None:
    if inputs:
        declared = {m.name: m for m in inputs}
        for inp in request.inputs:
            meta = declared.get(inp.name)
            if meta is None:
                raise InvalidRequest(
                    f"unexpected input {inp.name!r}; the model takes {sorted(declared)}"
                )
            if meta.datatype != inp.datatype:
                raise InvalidRequest(
                    f"input {inp.name!r}: datatype {inp.datatype} given, "
                    f"the model takes {meta.datatype}"
                )
        given = {inp.name for inp in request.inputs}
        for meta in inputs:
            optional = bool(meta.parameters and getattr(meta.parameters, "optional", False))
            if meta.name not in given and not optional:
                raise InvalidRequest(f"missing input {meta.name!r}")
    if outputs and request.outputs:
        names = {m.name for m in outputs}
        for out in request.outputs:
            if out.name not in names:
                raise InvalidRequest(
                    f"unknown output {out.name!r} requested; the model gives {sorted(names)}"
                )


def validate_request(
    request: InferenceRequest,
    inputs: Sequence[MetadataTensor] = (),
    outputs: Sequence[MetadataTensor] = (),
) -> None:
    """Raise :class:`InvalidRequest` unless a model with this metadata can serve ``request``."""
    names = [inp.name for inp in request.inputs]
    if len(set(names)) != len(names):
        raise InvalidRequest(f"duplicate input names in {names}")
    if request.outputs:
        out_names = [o.name for o in request.outputs]
        if len(set(out_names)) != len(out_names):
            raise InvalidRequest(f"duplicate output names in {out_names}")
    for inp in request.inputs:
        validate_input(inp)
    _check_against_metadata(request, inputs, outputs)
