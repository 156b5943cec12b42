"""Request validation, done once at the edge: sans-IO, no server state.

What is checked (each failure is an :class:`~streamwise.errors.InvalidRequest` whose
message names the input):

- input names are unique; requested output names are unique;
- every shape dimension is an integer in ``[0, 2**63 - 1]`` (V2 and gRPC shapes are int64);
- the data holds exactly ``prod(shape)`` elements (flat or nested lists, or one lone value
  when the shape holds one element); counted without allocating anything of shape size,
  so a request declaring ``[10**12]`` with little data costs nothing, and without computing
  a product beyond int64 (:func:`element_count`), so 100,000 dimensions cost no more than
  reading them;
- with ``max_elements`` (the server's ``max_tensor_elements``), no shape declares more
  elements: :class:`~streamwise.errors.PayloadTooLarge`, checked before the data;
- every element fits the datatype: booleans for BOOL, integers within range for the
  integer types (no booleans, no floats), numbers for FP16/32/64 and BF16, strings (or bytes, from
  in-process callers) for BYTES;
- against the model's declared inputs, when it declares any: every input is declared and
  has the declared datatype; every declared input is present unless its metadata
  parameters say ``"optional": true``. Declared *shapes* are not enforced: MLServer
  clients routinely add a batch dimension (``StringCodec`` sends ``[1, 1]`` for a ``[1]``
  input);
- against the model's declared outputs, when it declares any: requested outputs exist.

Messages quote what the client sent (names, shapes) cut to a few dozen characters
(:func:`show`): they travel as a gRPC status message, an HTTP/2 trailer, and a name of
200,000 characters there costs seconds to encode and exceeds clients' metadata limits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import InvalidRequest, PayloadTooLarge, show
from ..types import InferenceRequest, MetadataTensor, RequestInput

__all__ = [
    "validate_request",
    "validate_input",
    "count_elements",
    "element_count",
    "show",
    "INT_RANGES",
    "MAX_ELEMENTS",
]

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
_FLOATS = frozenset({"FP16", "FP32", "FP64", "BF16"})
MAX_ELEMENTS = 2**63 - 1
"""The largest dimension, and the most elements a shape may declare: int64, as V2 counts."""


def element_count(shape: Sequence[int]) -> int:
    """``prod(shape)``, or ``MAX_ELEMENTS + 1`` as soon as the product's magnitude is beyond
    ``MAX_ELEMENTS``. Linear in ``len(shape)``: ``math.prod`` of 50,000 dimensions of
    ``2**62`` builds a 3-million-bit integer and takes seconds."""
    if 0 in shape:
        return 0
    count = 1
    for d in shape:
        count *= d
        if not -MAX_ELEMENTS <= count <= MAX_ELEMENTS:
            return MAX_ELEMENTS + 1
    return count


def _count(n: int) -> str:
    return f"more than {MAX_ELEMENTS}" if n > MAX_ELEMENTS else str(n)


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
            f"input {show(inp.name)}: {datatype} data must be {want}, got {show(bad, 40)}"
        )


_OK = object()


def validate_input(inp: RequestInput, max_elements: int | None = None) -> None:
    """Shape, element count and element types of one input; with ``max_elements``, a shape
    declaring more is :class:`PayloadTooLarge` (before the data is looked at)."""
    if not all(0 <= d <= MAX_ELEMENTS for d in inp.shape):
        bad = next(d for d in inp.shape if not 0 <= d <= MAX_ELEMENTS)
        what = "a negative dimension" if bad < 0 else f"a dimension over {MAX_ELEMENTS}"
        raise InvalidRequest(f"input {show(inp.name)}: shape {show(inp.shape)} has {what}")
    expected = element_count(inp.shape)
    if max_elements is not None and expected > max_elements:
        raise PayloadTooLarge(
            f"input {show(inp.name)}: shape {show(inp.shape)} declares {_count(expected)} "
            f"elements, over the limit of {max_elements} (max_tensor_elements)"
        )
    count, leaves = count_elements(inp.data.root, expected)
    if count != expected:
        got = f"more than {expected}" if count > expected else str(count)
        raise InvalidRequest(
            f"input {show(inp.name)}: shape {show(inp.shape)} needs {_count(expected)} "
            f"elements, data has {got}"
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
                    f"unexpected input {show(inp.name)}; the model takes {sorted(declared)}"
                )
            if meta.datatype != inp.datatype:
                raise InvalidRequest(
                    f"input {show(inp.name)}: datatype {inp.datatype} given, "
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
                    f"unknown output {show(out.name)} requested; the model gives {sorted(names)}"
                )


def _duplicate(names: list[str]) -> str | None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return None


def validate_request(
    request: InferenceRequest,
    inputs: Sequence[MetadataTensor] = (),
    outputs: Sequence[MetadataTensor] = (),
    max_elements: int | None = None,
) -> None:
    """Raise :class:`InvalidRequest` unless a model with this metadata can serve ``request``
    (:class:`PayloadTooLarge` for an input declaring over ``max_elements`` elements)."""
    if (twice := _duplicate([inp.name for inp in request.inputs])) is not None:
        raise InvalidRequest(f"duplicate input name {show(twice)}")
    if request.outputs and (twice := _duplicate([o.name for o in request.outputs])) is not None:
        raise InvalidRequest(f"duplicate output name {show(twice)}")
    for inp in request.inputs:
        validate_input(inp, max_elements)
    _check_against_metadata(request, inputs, outputs)
