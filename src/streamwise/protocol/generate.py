"""Triton's generate dialect: flat JSON in, flat JSON out (sans-IO, no server state).

``POST .../generate`` and ``.../generate_stream`` take two bodies. A V2 request (one with
an ``inputs`` key) is served as it always was; any other JSON object is Triton's flat
request (its ``docs/protocol/extension_generate.md``, and the conversion in
its ``src/http_server.cc``)::

    {"text_input": "What is", "parameters": {"max_tokens": 8}, "id": "42"}

Request, as Triton converts it:

- ``id`` (a string) is the request id; ``parameters`` (an object) holds more keys, which
  are converted as the top-level ones are;
- a key naming one of the model's declared inputs becomes that tensor: the declared
  datatype, a lone value or a list (nested lists give their leaves), and the declared
  shape filled in from the element count (fixed dimensions divide it, the innermost
  ``-1`` takes what is left, other ``-1`` are 1), since the body carries no shape;
- any other key becomes a request parameter: a string, number or boolean, else 400
  (Triton: "parameter 'X' has invalid type");
- a model that declares no inputs (MLServer models often do not) takes every top-level
  key as a tensor, its datatype read from the JSON (strings BYTES, integers INT64, other
  numbers FP64, booleans BOOL) and its shape from the list; only ``parameters`` holds
  parameters then;
- a key given twice is 400: Python's ``json`` would keep the last one silently.

The tensors are then validated like any V2 request (``validation.py``): a missing input,
a value of the wrong type, an integer out of range are 400s naming the input.

Response: ``model_name``, ``model_version``, ``id`` when the request had one (not empty),
the response's parameters (but ``content_type`` and ``headers``, codec metadata), and one
key per output: a one-element tensor as its value, any other as a flat list (0 elements:
``[]``), BYTES as text. Where names collide, the reserved keys win, then parameters, as in
Triton. A stream is one ``data:`` event per response, and a failure after the stream
started is a last ``data: {"error": "..."}`` (Triton's; V2 streams end with ``event:
error``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pydantic

from ..codecs.lists import flatten
from ..errors import InvalidRequest, ModelFailed, show
from ..types import InferenceRequest, InferenceResponse, MetadataTensor, Parameters, RequestInput

__all__ = ["FlatRequest", "read", "to_request", "encoder", "error_event"]

_CODEC_PARAMETERS = frozenset({"content_type", "headers"})
_TENSOR_VALUE = "a string, number, boolean or a list of them"
_FLAT = pydantic.TypeAdapter(dict[str, Any])
"""Serialises a flat response as pydantic serialises V2's (compact, the same floats)."""


class _Object(dict[str, Any]):
    """A JSON object that remembers the first key it was given twice."""

    __slots__ = ("twice",)

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__(pairs)
        self.twice: str | None = None
        if len(self) != len(pairs):
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    self.twice = key
                    break
                seen.add(key)


@dataclass(slots=True)
class FlatRequest:
    """A generate request in Triton's dialect, parsed, not yet converted."""

    body: dict[str, Any]


def read(body: bytes) -> FlatRequest | None:
    """The body as a flat generate request, or None when it is not one: not a JSON object,
    or one with an ``inputs`` key (a V2 request, maybe a broken one: its own error stands,
    rather than a flat-dialect error a V2 client would not understand). An empty body is
    ``{}``, as Triton reads it."""
    if not body.strip():
        return FlatRequest(_Object([]))
    try:
        parsed = json.loads(body, object_pairs_hook=_Object)
    except (ValueError, RecursionError):  # not JSON (UnicodeDecodeError is a ValueError)
        return None
    if not isinstance(parsed, dict) or "inputs" in parsed:
        return None
    return FlatRequest(parsed)


def to_request(flat: FlatRequest, inputs: Sequence[MetadataTensor]) -> InferenceRequest:
    """The V2 request a model with these declared ``inputs`` gets for ``flat``; raises
    :class:`InvalidRequest` for what cannot be converted (validation comes after)."""
    body = flat.body
    _check_once(body, "the request")
    declared = {m.name: m for m in inputs}
    tensors: list[RequestInput] = []
    parameters: dict[str, Any] = {}

    def place(key: str, value: Any, top: bool) -> None:
        if key in parameters or any(t.name == key for t in tensors):
            raise InvalidRequest(f"key {show(key)} is given twice (top level and 'parameters')")
        meta = declared.get(key)
        if meta is not None or (not declared and top):
            tensors.append(_tensor(key, value, meta))
        elif isinstance(value, (str, int, float)):  # bool is an int
            parameters[key] = value
        else:
            raise InvalidRequest(
                f"parameter {show(key)} has invalid type: a parameter is a string, number "
                f"or boolean, and the model declares no input of that name"
            )

    request_id: str | None = None
    for key, value in body.items():
        if key == "id":
            if not isinstance(value, str):
                raise InvalidRequest(f"'id' must be a string, got {show(value, 40)}")
            request_id = value or None  # Triton: an empty id is no id
        elif key == "parameters":
            if "parameters" in declared:
                raise InvalidRequest(
                    "the model declares an input named 'parameters', the generate request's "
                    "reserved key: send it as a V2 request"
                )
            if not isinstance(value, dict):
                raise InvalidRequest("'parameters' must be a JSON object")
            _check_once(value, "'parameters'")
            for name, item in value.items():
                place(name, item, top=False)
        else:
            place(key, value, top=True)
    if not tensors and not declared:  # as a V2 request without inputs: nothing to run
        raise InvalidRequest(
            "the request holds no input: a generate request names the model's inputs as "
            "top-level keys"
        )
    try:
        params = Parameters(**parameters) if parameters else None
    except pydantic.ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidRequest(f"parameter {show(where)}: {first['msg']}") from None
    return InferenceRequest(id=request_id, parameters=params, inputs=tensors)


def _check_once(obj: dict[str, Any], where: str) -> None:
    twice = getattr(obj, "twice", None)
    if twice is not None:
        raise InvalidRequest(f"key {show(twice)} is given twice in {where}")


def _tensor(name: str, value: Any, meta: MetadataTensor | None) -> RequestInput:
    if isinstance(value, list):
        leaves: list[Any] = []
        try:
            shape = _shape_and_leaves(name, value, leaves)
        except RecursionError:  # JSON nested nearly as deep as the parser allows
            raise InvalidRequest(f"input {show(name)} is nested too deeply") from None
    elif value is None or isinstance(value, dict):
        raise InvalidRequest(f"input {show(name)} must be {_TENSOR_VALUE}, got {show(value, 40)}")
    else:
        leaves, shape = [value], [1]
    if meta is None:
        datatype = _datatype_of(name, leaves)
    else:
        datatype = str(meta.datatype)
        if meta.shape:
            shape = _fill(name, list(meta.shape), len(leaves))
    return RequestInput(name=name, shape=shape, datatype=datatype, data=leaves)  # type: ignore[arg-type]


def _shape_and_leaves(name: str, value: list[Any], out: list[Any]) -> list[int]:
    """Append the leaves of the (nested) list ``value`` to ``out``; its shape. A list that
    is no tensor (ragged, objects or nulls inside) is 400."""
    if not any(isinstance(x, list) for x in value):
        for x in value:
            if x is None or isinstance(x, dict):
                raise InvalidRequest(
                    f"input {show(name)} must be {_TENSOR_VALUE}, holds {show(x, 40)}"
                )
        out.extend(value)
        return [len(value)]
    shapes = []
    for item in value:
        if not isinstance(item, list):
            raise InvalidRequest(f"input {show(name)}: a nested list must be rectangular")
        shapes.append(_shape_and_leaves(name, item, out))
    if any(s != shapes[0] for s in shapes):
        raise InvalidRequest(f"input {show(name)}: a nested list must be rectangular")
    return [len(value), *shapes[0]]


def _fill(name: str, shape: list[int], count: int) -> list[int]:
    """Triton's two passes: fixed dimensions divide ``count``; the innermost ``-1`` takes
    what is left, other ``-1`` are 1."""
    left = count
    for d in shape:
        if d >= 0:
            if (d == 0 and left != 0) or (d > 0 and left % d):
                raise _does_not_fit(name, shape, count)
            left = 0 if d == 0 else left // d
    filled = list(shape)
    for i in range(len(filled) - 1, -1, -1):
        if filled[i] < 0:
            filled[i], left = left, 1
    if left != 1 and not (left == 0 and 0 in filled):
        raise _does_not_fit(name, shape, count)
    return filled


def _does_not_fit(name: str, shape: list[int], count: int) -> InvalidRequest:
    return InvalidRequest(
        f"input {show(name)}: {count} element(s) do not fit its declared shape {shape}"
    )


def _datatype_of(name: str, leaves: list[Any]) -> str:
    """The datatype of an undeclared input, from its JSON values."""
    if not leaves:
        raise InvalidRequest(
            f"input {show(name)}: an empty list has no datatype (the model declares no inputs)"
        )
    if all(isinstance(x, bool) for x in leaves):
        return "BOOL"
    if all(isinstance(x, str) for x in leaves):
        return "BYTES"
    if all(isinstance(x, int) and not isinstance(x, bool) for x in leaves):
        return "INT64"
    if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in leaves):
        return "FP64"
    raise InvalidRequest(f"input {show(name)} mixes values of different types")


# -- responses --


def flat_response(response: InferenceResponse, with_id: bool) -> dict[str, Any]:
    """The flat object for one (stamped) response."""
    out: dict[str, Any] = {}
    if with_id and response.id:
        out["id"] = response.id
    out["model_name"] = response.model_name
    out["model_version"] = response.model_version or ""
    if response.parameters is not None:
        for key, value in response.parameters.model_dump().items():
            if key not in _CODEC_PARAMETERS and key not in out:
                out[key] = value
    for output in response.outputs:
        if output.name not in out:
            out[output.name] = _value(output.name, output.data.root)
    return out


def _value(name: str, data: Any) -> Any:
    leaves = [_text(name, x) for x in flatten(data)]  # a new list: the response is not touched
    return leaves[0] if len(leaves) == 1 else leaves


def _text(name: str, x: Any) -> Any:
    if not isinstance(x, (bytes, bytearray)):
        return x
    try:
        return bytes(x).decode()
    except UnicodeDecodeError:
        raise ModelFailed(
            f"output {show(name)} holds bytes that are not UTF-8 text: the generate "
            "dialect answers text (ask with a V2 request)"
        ) from None


def encoder(with_id: bool, streaming: bool) -> Callable[[InferenceResponse], bytes]:
    """Response -> bytes: the JSON body, or for a stream its ``data:`` event."""

    def encode(response: InferenceResponse) -> bytes:
        return _FLAT.dump_json(flat_response(response, with_id))

    def encode_event(response: InferenceResponse) -> bytes:
        return b"data: " + _FLAT.dump_json(flat_response(response, with_id)) + b"\n\n"

    return encode_event if streaming else encode


def error_event(message: str) -> bytes:
    """The last event of a flat stream that failed: Triton's ``data: {"error": ...}``."""
    body = json.dumps({"error": message}, ensure_ascii=False, separators=(",", ":"))
    return b"data: " + body.encode() + b"\n\n"
