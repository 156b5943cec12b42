"""gRPC: valid protobuf with hostile contents, the oracle's expectation for each, and the
senders for ModelInfer and ModelStreamInfer."""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from hypothesis import strategies as st

from ..v2_oracle import (
    CONTENTS_FIELD,
    EITHER,
    INT_RANGES,
    INVALID,
    VALID,
    grpc_elements,
    grpc_verdict,
    same_elements,
)
from .common import (
    ANY,
    BAD_DATATYPES,
    BODY_LIMIT,
    CLIENT_ERROR,
    CLIENT_ERROR_OR_UNIMPLEMENTED,
    DATATYPES,
    MODELS,
    OK,
    STARTS,
    TIMEOUT,
    UNIMPLEMENTED,
    ModelInfo,
    Outcome,
    _cut,
    pb2,
    squeeze,
)
from .json_text import LONG_TEXT, NAMES

TYPED_FIELDS = {
    "bool_contents": st.booleans(),
    "int_contents": st.integers(-(2**31), 2**31 - 1),
    "int64_contents": st.integers(-(2**63), 2**63 - 1),
    "uint_contents": st.integers(0, 2**32 - 1),
    "uint64_contents": st.integers(0, 2**64 - 1),
    "fp32_contents": st.floats(width=32),
    "fp64_contents": st.floats(),
    "bytes_contents": st.binary(max_size=10),
}
RAW_SIZE = {"BOOL": 1, "UINT8": 1, "INT8": 1, "UINT16": 2, "INT16": 2, "FP16": 2, "UINT32": 4}
RAW_SIZE |= {"INT32": 4, "FP32": 4, "UINT64": 8, "INT64": 8, "FP64": 8}

GRPC_SHAPES = st.one_of(
    st.lists(st.integers(0, 4), min_size=1, max_size=3),
    st.lists(st.integers(0, 4), max_size=3),
    st.sampled_from([[10**12], [2**62, 2**62], [2**63 - 1], [-1], [-1, -1], [-(2**63)], [2**32, 2**32, 0], [1] * 500]),
    st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=3),
    st.integers(1, 25_000).map(lambda n: [2**62] * n),
)  # fmt: skip
GRPC_PARAMETER = st.one_of(
    st.builds(pb2.InferParameter),  # no choice set
    st.builds(pb2.InferParameter, bool_param=st.booleans()),
    st.builds(pb2.InferParameter, int64_param=st.integers(-(2**63), 2**63 - 1)),
    st.builds(pb2.InferParameter, string_param=st.text(max_size=20)),
    st.builds(pb2.InferParameter, double_param=st.floats()),
    st.builds(pb2.InferParameter, uint64_param=st.integers(0, 2**64 - 1))
    if "uint64_param" in pb2.InferParameter.DESCRIPTOR.fields_by_name
    else st.nothing(),
)
GRPC_PARAMETERS = st.dictionaries(
    st.sampled_from(["content_type", "headers", "optional", "x", ""]) | st.text(max_size=8),
    GRPC_PARAMETER,
    max_size=3,
)


def _raw_bytes_of(draw: st.DrawFn, datatype: str, count: int) -> bytes:
    if datatype == "BYTES":
        items = draw(st.lists(st.binary(max_size=6), min_size=count, max_size=count))
        return b"".join(struct.pack("<I", len(b)) + b for b in items)
    size = RAW_SIZE.get(datatype, 4)
    if datatype == "BOOL":
        return bytes(draw(st.lists(st.integers(0, 1), min_size=count, max_size=count)))
    return draw(st.binary(min_size=count * size, max_size=count * size))


BAD_BYTES_RAW = st.one_of(
    st.sampled_from(
        [
            b"\xff\xff\xff\xff",  # a length past the buffer
            b"\x05\x00\x00\x00ab",  # likewise
            b"\x01\x00",  # a truncated length
            b"\x01\x00\x00\x00a\x00",  # a truncated second length
            b"\x00\x00\x00\x80" + b"x" * 8,
            b"\x02\x00\x00\x00ab\x02\x00\x00\x00cd",  # two elements
        ]
    ),
    st.binary(max_size=40),
)


@st.composite
def grpc_tensor(draw: st.DrawFn, model: ModelInfo | None, raw_mode: bool) -> tuple[Any, bytes]:
    """An input tensor and its raw contents (used when ``raw_mode``)."""
    declared = {m.name: m for m in model.inputs} if model else {}
    name = draw(st.sampled_from(sorted(declared)) | NAMES if declared else NAMES)
    if name in declared and draw(st.booleans()):
        datatype = declared[name].datatype
    else:
        datatype = draw(
            st.sampled_from(DATATYPES) | st.sampled_from(BAD_DATATYPES) | st.text(max_size=6)
        )
    shape = draw(GRPC_SHAPES)
    dims_ok = all(0 <= d <= 64 for d in shape)
    count = min(math.prod(shape), 256) if dims_ok else draw(st.integers(0, 6))
    tensor = pb2.ModelInferRequest.InferInputTensor(name=name, datatype=datatype, shape=shape)
    for key, value in draw(GRPC_PARAMETERS).items():
        tensor.parameters[key].CopyFrom(value)
    raw = b""
    how = draw(st.sampled_from(["fit", "fit", "count", "other field", "none"]))
    if raw_mode:
        if how == "fit":
            raw = _raw_bytes_of(draw, datatype, count)
        elif how == "count":
            raw = _raw_bytes_of(draw, datatype, count) + draw(st.binary(min_size=1, max_size=9))
            raw = raw if draw(st.booleans()) else raw[: -draw(st.integers(1, 9)) or None]
        elif how == "other field":
            raw = draw(BAD_BYTES_RAW)
        if draw(st.integers(0, 9)) == 0:  # contents as well as raw
            tensor.contents.bool_contents.append(True)
    else:
        field_name = CONTENTS_FIELD.get(datatype, "fp32_contents")
        if how == "other field":
            field_name = draw(st.sampled_from(sorted(TYPED_FIELDS)))
        if how != "none":
            n = count if how != "count" else count + draw(st.sampled_from([-1, 1, 2, 50]))
            n = max(n, 0)
            values = draw(st.lists(TYPED_FIELDS[field_name], min_size=n, max_size=n))
            getattr(tensor.contents, field_name).extend(values)
    return tensor, raw


@st.composite
def valid_grpc_tensor(draw: st.DrawFn, model: ModelInfo | None, name: str) -> tuple[Any, bytes]:
    declared = {m.name: m for m in model.inputs} if model else {}
    datatype = declared[name].datatype if name in declared else draw(st.sampled_from(DATATYPES))
    shape = draw(st.lists(st.integers(0, 3), min_size=1, max_size=3))
    if model and model.name == "token-streamer":
        shape = [1]
    count = math.prod(shape)
    tensor = pb2.ModelInferRequest.InferInputTensor(name=name, datatype=datatype, shape=shape)
    raw = _raw_bytes_of(draw, datatype, count)
    if datatype in CONTENTS_FIELD:
        field_name = CONTENTS_FIELD[datatype]
        strategy = TYPED_FIELDS[field_name]
        if datatype in INT_RANGES:
            strategy = st.integers(*INT_RANGES[datatype])
        values = draw(st.lists(strategy, min_size=count, max_size=count))
        getattr(tensor.contents, field_name).extend(values)
    return tensor, raw


@dataclass
class GrpcCase:
    message: Any
    model: ModelInfo | None
    built_valid: bool

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))

    def __repr__(self) -> str:
        return _cut(squeeze(f"GrpcCase(bytes={self.message.SerializeToString()!r})"))


NEAR_MISSES = [
    "one more",
    "one fewer",
    "negative dimension",
    "other field",
    "other datatype",
    "same name twice",
    "raw buffer fewer",
    "raw and contents",
]


def _near_miss(draw: st.DrawFn, message: Any) -> None:
    """Change one thing in a valid ``message``: mostly a client error, sometimes still
    valid (another datatype the contents fit)."""
    if not message.inputs:
        message.inputs.add(name="x", datatype="INT32", shape=[-1])
        return
    at = draw(st.integers(0, len(message.inputs) - 1))
    tensor = message.inputs[at]
    raws = message.raw_input_contents
    how = draw(st.sampled_from(NEAR_MISSES))
    field_name = CONTENTS_FIELD.get(tensor.datatype)
    if how in ("one more", "one fewer") and raws:
        size = 4 if tensor.datatype == "BYTES" else RAW_SIZE[tensor.datatype]
        extra = b"\x00" * size
        raws[at] = raws[at] + extra if how == "one more" else raws[at][: -size or None] or extra
    elif how == "one more" and field_name:
        values = getattr(tensor.contents, field_name)
        values.append(values[0] if values else TYPED_DEFAULT[field_name])
    elif how == "one fewer" and field_name and getattr(tensor.contents, field_name):
        del getattr(tensor.contents, field_name)[-1]
    elif how == "negative dimension":
        tensor.shape.append(-1)
    elif how == "other field" and field_name and not raws:
        values = list(getattr(tensor.contents, field_name))
        tensor.ClearField("contents")
        other = draw(st.sampled_from([f for f in TYPED_FIELDS if f != field_name]))
        getattr(tensor.contents, other).extend([TYPED_DEFAULT[other]] * max(len(values), 1))
    elif how == "other datatype":
        tensor.datatype = draw(st.sampled_from([d for d in DATATYPES if d != tensor.datatype]))
    elif how == "same name twice":
        message.inputs.append(tensor)
        if raws:
            raws.append(raws[at])
    elif how == "raw buffer fewer" and raws:
        del raws[-1]
    elif how == "raw and contents" and raws:
        tensor.contents.bool_contents.append(True)
    else:
        tensor.shape.append(2)  # twice the elements it holds (or none of none)


TYPED_DEFAULT = {
    "bool_contents": True,
    "int_contents": 1,
    "int64_contents": 1,
    "uint_contents": 1,
    "uint64_contents": 1,
    "fp32_contents": 1.0,
    "fp64_contents": 1.0,
    "bytes_contents": b"x",
}


@st.composite
def grpc_cases(draw: st.DrawFn, model_name: str | None = None) -> GrpcCase:
    """A ModelInferRequest; for ``model_name`` when given (the later messages of a stream)."""
    if model_name is None:
        model_name = draw(
            st.sampled_from([*MODELS, "identity", "identity", "", "no-such-model", "IDENTITY"])
            | NAMES
        )
    model = MODELS.get(model_name)
    version = ""
    if draw(st.integers(0, 4)) == 0:
        version = draw(st.sampled_from([model.version or "", "2"] if model else ["1"]) | NAMES)
        if model is not None and version and version != model.version:
            model = None
    kind = draw(st.integers(0, 3)) if model is not None else 3
    built_valid = kind == 0
    near = kind == 1  # built valid, then one thing changed (_near_miss)
    raw_mode = draw(st.booleans())
    if built_valid or near:
        assert model is not None
        names = (
            [m.name for m in model.inputs if m.name != "delay_s"]
            if model.inputs
            else draw(st.lists(st.text(max_size=8), max_size=3, unique=True))
        )
        tensors = [draw(valid_grpc_tensor(model, name)) for name in names]
        raw_mode = raw_mode or any(t.datatype == "FP16" for t, _ in tensors)
    else:
        tensors = draw(st.lists(grpc_tensor(model, raw_mode), max_size=3))
    message = pb2.ModelInferRequest(model_name=model_name, model_version=version)
    for tensor, _ in tensors:
        if raw_mode and (built_valid or near):
            tensor.ClearField("contents")
        message.inputs.append(tensor)
    if raw_mode:
        raws = [raw for _, raw in tensors]
        if not (built_valid or near) and draw(st.integers(0, 5)) == 0:
            raws = raws[:-1] if raws and draw(st.booleans()) else [*raws, b""]
        message.raw_input_contents.extend(raws)
    if near:
        _near_miss(draw, message)
    elif not built_valid:
        for key, value in draw(GRPC_PARAMETERS).items():
            message.parameters[key].CopyFrom(value)
        for name in draw(st.lists(NAMES, max_size=2)):
            message.outputs.add(name=name)
        message.id = draw(st.text(max_size=10) | LONG_TEXT)
    return GrpcCase(message, model, built_valid)


GRPC_CLIENT_ERRORS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
}


def grpc_expectation(case: GrpcCase) -> str:
    if case.model is None:
        return CLIENT_ERROR
    data = case.message.SerializeToString()
    if len(data) > BODY_LIMIT:
        return CLIENT_ERROR
    if len(data) > BODY_LIMIT // 2:
        return ANY  # valid or not, its echo may be over the limit: RESOURCE_EXHAUSTED
    verdict = grpc_verdict(
        pb2.ModelInferRequest.FromString(data), case.model.inputs, case.model.outputs
    )
    if case.built_valid and verdict.kind != VALID:
        raise AssertionError(
            f"the oracle refuses a request built valid ({verdict.reason}): {case!r}"
        )
    if verdict.kind == INVALID:
        return CLIENT_ERROR
    if verdict.kind == EITHER:
        return CLIENT_ERROR_OR_UNIMPLEMENTED if case.model.stream_only else ANY
    return UNIMPLEMENTED if case.model.stream_only else OK


def _grpc_status_problem(code: grpc.StatusCode, details: str, expect: str) -> str | None:
    if code == grpc.StatusCode.OK:
        if expect in (OK, ANY, STARTS):
            return None
        return f"expected {expect}, got OK"
    if code not in GRPC_CLIENT_ERRORS:
        return f"{code.name} for a client's request: {details!r:.300}"
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and "metadata" in details:
        # grpcio's own refusal: the status message the server sent is over its limit
        return f"the server's status message is too large for the client: {details!r:.300}"
    if expect == OK:
        return f"expected success, got {code.name}: {details!r:.300}"
    if expect == UNIMPLEMENTED and code != grpc.StatusCode.UNIMPLEMENTED:
        return f"expected UNIMPLEMENTED, got {code.name}: {details!r:.300}"
    if code == grpc.StatusCode.UNIMPLEMENTED and expect not in (
        UNIMPLEMENTED,
        CLIENT_ERROR_OR_UNIMPLEMENTED,
        ANY,
    ):
        return f"UNIMPLEMENTED for a {expect} request: {details!r:.300}"
    return None


@dataclass
class Grpc:
    """A grpcio channel to the server under fuzz, and its calls (bytes in, bytes out)."""

    channel: grpc.Channel
    timeout: float = TIMEOUT

    def unary(self, method: str) -> Callable[..., Any]:
        return self.channel.unary_unary(f"/inference.GRPCInferenceService/{method}")

    def stream(self, method: str) -> Callable[..., Any]:
        return self.channel.stream_stream(f"/inference.GRPCInferenceService/{method}")


def send_grpc_infer(rpc: Grpc, case: GrpcCase) -> Outcome:
    expect = grpc_expectation(case)
    try:
        reply = rpc.unary("ModelInfer")(case.message.SerializeToString(), timeout=rpc.timeout)
    except grpc.RpcError as exc:
        code, details = exc.code(), exc.details() or ""
        return Outcome(code.name, _grpc_status_problem(code, details, expect))
    outcome = Outcome("OK", _grpc_status_problem(grpc.StatusCode.OK, "", expect))
    if outcome.problem is None and expect == OK:
        outcome.problem = _echo_problem(case.message, pb2.ModelInferResponse.FromString(reply))
    return outcome


def _echo_problem(request: Any, response: Any) -> str | None:
    """identity's answer to a valid request: an output per input (per requested output,
    when some are), each with the input's datatype, shape and elements."""
    raws = list(request.raw_input_contents)
    inputs = {t.name: (t, raws[i] if raws else None) for i, t in enumerate(request.inputs)}
    requested = {o.name for o in request.outputs}
    want = sorted(name for name in inputs if not requested or name in requested)
    names = sorted(o.name for o in response.outputs)
    if response.model_name != "identity" or names != want:
        return f"{response.model_name!r} answered outputs {names} for {want}"
    out_raws = list(response.raw_output_contents)
    for j, out in enumerate(response.outputs):
        tensor, raw = inputs[out.name]
        if (out.datatype, list(out.shape)) != (tensor.datatype, list(tensor.shape)):
            return (
                f"output {out.name!r}: {out.datatype} {list(out.shape)}, "
                f"sent {tensor.datatype} {list(tensor.shape)}"
            )
        got = grpc_elements(out, out_raws[j] if j < len(out_raws) else None)
        if got is None or not same_elements(got, grpc_elements(tensor, raw) or []):
            return f"output {out.name!r}: elements {got!r:.200} differ from those sent"
    return None


@st.composite
def grpc_stream_cases(draw: st.DrawFn) -> list[GrpcCase]:
    first = draw(grpc_cases())
    rest = draw(
        st.lists(grpc_cases(model_name=first.message.model_name) | grpc_cases(), max_size=2)
    )
    return [first, *rest]


def send_grpc_stream(rpc: Grpc, cases: list[GrpcCase]) -> Outcome:
    """A bidi stream of requests. Valid requests to the stream-only demo models are not
    sent as streams (they would run for long); their unary call must say UNIMPLEMENTED."""
    expects = [grpc_expectation(c) for c in cases]
    if cases[0].model is not None and cases[0].model.stream_only and expects[0] != CLIENT_ERROR:
        return send_grpc_infer(rpc, cases[0])
    same = [
        (c.message.model_name, c.message.model_version)
        == (cases[0].message.model_name, cases[0].message.model_version)
        for c in cases
    ]
    answered = 0  # requests the server must answer before the error (if any)
    for expect, ok in zip(expects, same, strict=True):
        if expect != OK or not ok:
            break
        answered += 1
    expect = OK if answered == len(cases) else CLIENT_ERROR
    if ANY in expects:
        expect, answered = ANY, -1  # an answer may be over the size limit: not counted
    messages = [c.message.SerializeToString() for c in cases]
    responses = []
    try:
        for reply in rpc.stream("ModelStreamInfer")(iter(messages), timeout=rpc.timeout):
            responses.append(reply)
        code, details = grpc.StatusCode.OK, ""
    except grpc.RpcError as exc:
        code, details = exc.code(), exc.details() or ""
    outcome = Outcome(code.name, _grpc_status_problem(code, details, expect))
    if outcome.problem is None and answered >= 0 and len(responses) != answered:
        outcome.problem = (
            f"{len(responses)} responses for {answered} valid leading requests, then {code.name}"
        )
    return outcome
