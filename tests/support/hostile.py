"""Hostile input for streamwise: hypothesis strategies, one blocking sender per target, and
the property every answer must hold. Shared by tests/test_fuzz_slice.py (the fast slice:
``python -m pytest tests/test_fuzz_slice.py``) and scripts/soak_fuzz.py (10,000+ cases).

The property, for every target:

- no 5xx (REST) and no UNKNOWN / INTERNAL / DATA_LOSS / ... (gRPC) for a client's mistake;
  the one 5xx a client may cause is 501 / UNIMPLEMENTED, a valid unary request to a
  stream-only model (docs/architecture.md, "Decisions");
- every REST error the app sends is exactly ``{"error": "<str>"}``;
- a valid request succeeds (identity echoes its inputs), an invalid one is a 4xx / a client
  error status. Validity is decided here, without the server, by the steps the server
  documents (pydantic parsing, the gRPC conversion, ``validate_request`` against the model's
  declared inputs); requests built valid by construction must pass that oracle too;
- the server stays live: the callers check health and the models' readiness afterwards.

Senders block (httpx.Client, grpcio, sockets): they run in a worker thread while the server
runs in trio (``trio.to_thread.run_sync``).
"""

from __future__ import annotations

import json
import math
import pathlib
import re
import socket
import struct
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
import pydantic
from hypothesis import HealthCheck
from hypothesis import strategies as st

from streamwise._proto import inference as bp
from streamwise.errors import InvalidRequest
from streamwise.grpc.convert import CONTENTS_FIELD, request_from_proto
from streamwise.protocol.validation import INT_RANGES, validate_request
from streamwise.types import InferenceRequest, InferenceResponse, MetadataTensor

from . import paths
from .grpc_stubs import load_stubs

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
    inputs: tuple[MetadataTensor, ...]
    outputs: tuple[MetadataTensor, ...]
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
            inputs=tuple(MetadataTensor.model_validate(m) for m in doc.get("inputs", ())),
            outputs=tuple(MetadataTensor.model_validate(m) for m in doc.get("outputs", ())),
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
ANY = "any"  # garbage: anything but a server error


# -- JSON text with raw fragments -----------------------------------------------------------
@dataclass(frozen=True)
class Raw:
    """JSON text put into a document verbatim: what json.dumps cannot write (NaN tokens
    are fine, but not 10,000 levels of nesting, lone surrogates or 1e999)."""

    text: str


def _cut(text: str, limit: int = 1500) -> str:
    return text if len(text) <= limit else text[:limit] + f"...({len(text) - limit} more)"


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


# -- REST bodies ----------------------------------------------------------------------------
def _elements(datatype: str) -> st.SearchStrategy[Any]:
    """Elements that fit ``datatype``."""
    if datatype == "BOOL":
        return st.booleans()
    if datatype == "BYTES":
        return st.text(max_size=8)
    if datatype in ("FP16", "FP32", "FP64"):
        return st.floats(width=16) | st.integers(-9, 9)  # NaN and infinities are numbers
    lo, hi = INT_RANGES[datatype]
    return st.integers(lo, hi)


def _wrong_elements(datatype: str) -> st.SearchStrategy[Any]:
    """Elements that do not fit ``datatype`` (mostly)."""
    if datatype in INT_RANGES:
        lo, hi = INT_RANGES[datatype]
        out_of_range = st.integers(hi + 1, hi + 2**70) | st.integers(lo - 2**70, lo - 1)
        return out_of_range | st.floats() | st.booleans() | st.text(max_size=3)
    if datatype == "BOOL":
        return st.integers(0, 1) | st.text(max_size=3) | st.none()
    if datatype == "BYTES":
        return st.integers() | st.floats() | st.booleans() | st.none()
    return st.text(max_size=3) | st.booleans() | st.none() | st.sampled_from([Raw("NaN")])


SHAPES = st.one_of(
    st.lists(st.integers(0, 4), min_size=1, max_size=3),
    st.lists(st.integers(0, 4), max_size=3),
    st.sampled_from(
        [
            [10**12],
            [2**63 - 1],
            [2**63],
            [2**64 + 1],
            [10**30, 0],
            [0, 10**30],
            [-1],
            [-1, -1],
            [-(2**63)],
            [1, -1, -1],
            [2**32, 2**32],
            [1] * 1000,
            [10**18] * 300,  # a product of 5,400 digits: beyond Python's int-to-str limit
        ]
    ),
    st.integers(1, 12_000).map(lambda n: [2**62] * n),  # math.prod is quadratic in this
    st.lists(st.integers(), min_size=1, max_size=4),
    JSON_VALUES,  # not a list of integers at all
    st.lists(st.sampled_from([1.0, 1.5, True, "1", "x", None, [1], Raw("1e999")]), max_size=3),
)


@st.composite
def tensor_data(draw: st.DrawFn, datatype: str, shape: Any) -> Any:
    """Data for a tensor: matching its shape and datatype, or not, in many ways."""
    dims_ok = isinstance(shape, list) and all(type(d) is int and 0 <= d <= 64 for d in shape)
    count = math.prod(shape) if dims_ok else draw(st.integers(0, 6))
    count = min(count, 256)
    elements = _elements(datatype) if datatype in DATATYPES else JSON_SCALARS
    how = draw(
        st.sampled_from(
            ["fit", "fit", "nested", "count", "wrong", "lone", "json", "raw", "empty", "long"]
        )
    )
    if how in ("fit", "nested"):
        flat = draw(st.lists(elements, min_size=count, max_size=count))
        if how == "nested" and dims_ok and len(shape) >= 2 and shape[-1]:
            step = shape[-1]
            return [flat[i : i + step] for i in range(0, len(flat), step)]
        return flat
    if how == "count":
        n = max(0, count + draw(st.sampled_from([-2, -1, 1, 2, 100])))
        return draw(st.lists(elements, min_size=n, max_size=n))
    if how == "wrong":
        bad = _wrong_elements(datatype) if datatype in DATATYPES else JSON_SCALARS
        flat = draw(st.lists(elements, min_size=count, max_size=count))
        if flat:
            flat[draw(st.integers(0, len(flat) - 1))] = draw(bad)
            return flat
        return [draw(bad)]
    if how == "lone":
        return draw(elements | JSON_SCALARS)
    if how == "json":
        return draw(JSON_VALUES)
    if how == "raw":
        return [draw(RAW_FRAGMENTS)]
    if how == "empty":
        return draw(st.sampled_from([[], [[]], [[], []], {}, None, ""]))
    return [0] * draw(st.integers(1, 100_000))  # long


PARAMETERS = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {},
        optional={
            "content_type": st.sampled_from(["np", "str", "base64", "pd", "hg", "?"])
            | JSON_SCALARS,
            "headers": st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=3) | JSON_SCALARS,
            "optional": JSON_SCALARS,
            "version": JSON_SCALARS,
            "x": JSON_VALUES,
        },
    ),
    JSON_VALUES,
)


@st.composite
def hostile_tensor(draw: st.DrawFn, model: ModelInfo | None) -> Any:
    declared = {m.name: m.datatype for m in model.inputs} if model else {}
    name = draw(st.sampled_from(sorted(declared)) | NAMES if declared else NAMES)
    if name in declared and draw(st.booleans()):
        datatype: Any = declared[name]  # the right name and datatype: the data is the test
    else:
        datatype = draw(st.sampled_from(DATATYPES) | st.sampled_from(BAD_DATATYPES) | JSON_SCALARS)
    shape = draw(SHAPES)
    tensor: dict[str, Any] = {
        "name": name,
        "shape": shape,
        "datatype": datatype,
        "data": draw(tensor_data(datatype if isinstance(datatype, str) else "", shape)),
    }
    if draw(st.booleans()):
        tensor["parameters"] = draw(PARAMETERS)
    change = draw(st.sampled_from([None] * 8 + ["drop", "extra", "retype"]))
    key = draw(st.sampled_from(sorted(tensor)))
    if change == "drop":
        del tensor[key]
    elif change == "extra":
        tensor[draw(st.text(max_size=8))] = draw(JSON_VALUES)
    elif change == "retype":
        tensor[key] = draw(JSON_VALUES)
    return tensor


@st.composite
def valid_tensor(draw: st.DrawFn, model: ModelInfo | None, name: str | None = None) -> Any:
    """A tensor any model taking this input must accept."""
    declared = {m.name: m for m in model.inputs} if model else {}
    if name is None:
        name = draw(st.text(max_size=10))
    datatype = declared[name].datatype if name in declared else draw(st.sampled_from(DATATYPES))
    shape = draw(st.lists(st.integers(0, 3), max_size=3))
    if model and model.name == "token-streamer":
        # n tokens, which we never read to the end; odd but valid shapes all the same
        shape = draw(st.sampled_from([[1], [1], [1, 1], [], [0], [2]]))
    n = math.prod(shape)
    data: Any = draw(st.lists(_elements(datatype), min_size=n, max_size=n))
    if n == 1 and draw(st.booleans()):
        data = data[0]  # a lone value fits a one-element shape
    tensor = {"name": name, "shape": shape, "datatype": datatype, "data": data}
    if draw(st.booleans()):
        tensor["parameters"] = {"content_type": draw(st.sampled_from(["np", "str", "x"]))}
    return tensor


@st.composite
def valid_body(draw: st.DrawFn, model: ModelInfo | None) -> dict[str, Any]:
    if model and model.inputs:
        names = [m.name for m in model.inputs if m.name != "delay_s" or draw(st.booleans())]
    else:
        names = draw(st.lists(st.text(max_size=10), max_size=3, unique=True))
    body: dict[str, Any] = {"inputs": [draw(valid_tensor(model, name)) for name in names]}
    if draw(st.booleans()):
        body["id"] = draw(st.text(max_size=20))
    if draw(st.booleans()):
        body["parameters"] = draw(
            st.fixed_dictionaries(
                {}, optional={"content_type": st.text(max_size=5), "x": st.integers()}
            )
        )
    if model and model.name == "identity" and draw(st.booleans()):
        body["outputs"] = [{"name": t["name"]} for t in body["inputs"][:1]]
    return body


@st.composite
def hostile_body(draw: st.DrawFn, model: ModelInfo | None) -> Any:
    body: dict[str, Any] = {"inputs": draw(st.lists(hostile_tensor(model), max_size=3))}
    optional = {
        "id": JSON_SCALARS | LONG_TEXT,
        "parameters": PARAMETERS,
        "outputs": st.lists(
            st.fixed_dictionaries({"name": NAMES}, optional={"parameters": PARAMETERS}), max_size=3
        )
        | JSON_VALUES,
        draw(st.text(max_size=6)): JSON_VALUES,
    }
    for key, values in optional.items():
        if draw(st.integers(0, 3)) == 0:
            body[key] = draw(values)
    change = draw(st.sampled_from([None] * 6 + ["no inputs", "inputs", "dup", "not a dict"]))
    if change == "no inputs":
        del body["inputs"]
    elif change == "inputs":
        body["inputs"] = draw(JSON_VALUES)
    elif change == "dup" and body["inputs"]:
        body["inputs"].append(dict(body["inputs"][0]))
    elif change == "not a dict":
        return draw(JSON_VALUES)
    return body


@dataclass
class RestCase:
    path: str
    body: bytes
    model: ModelInfo | None
    """The model the path names, when it names a demo model (and a version it has)."""
    built_valid: bool
    headers: dict[str, str] = field(default_factory=dict)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # hypothesis prints this
        printer.text(repr(self))

    def __repr__(self) -> str:  # what hypothesis and the soak print for a failing case
        text = f"RestCase(path={self.path!r}, headers={self.headers!r}, body={self.body!r})"
        return _cut(squeeze(text))


def _encode_name(draw: st.DrawFn, name: str) -> str:
    """``name`` as a path segment, sometimes with needless percent-encoding."""
    if draw(st.booleans()):
        return urllib.parse.quote(name, safe="")
    return "".join(
        chr(b) if b < 128 and chr(b).isalnum() and draw(st.integers(0, 3)) else f"%{b:02X}"
        for b in name.encode()
    )


@st.composite
def model_path(draw: st.DrawFn) -> tuple[str, ModelInfo | None]:
    """``/v2/models/<name>[/versions/<v>]`` and the demo model it names (None if none)."""
    choice = draw(st.sampled_from([*MODELS, *MODELS, "identity", "identity", "other"]))
    if choice == "other":
        name = draw(
            st.sampled_from(["no-such-model", "IDENTITY", "identity ", " identity", "..", "."])
            | st.text(min_size=1, max_size=30).filter(lambda s: s not in MODELS)
            | st.integers(256, 20_000).map(lambda n: "m" * n)
        )
        model = None
    else:
        name, model = choice, MODELS[choice]
    path = "/v2/models/" + _encode_name(draw, name)
    if draw(st.integers(0, 3)) == 0:
        version = draw(
            st.sampled_from([v for v in (model.version if model else None, "2", "v0") if v])
            | st.text(alphabet="abcv0123456789.-", min_size=1, max_size=8).filter(
                lambda v: v.strip(".")
            )
        )
        if model is not None and version != model.version:
            model = None
        path += "/versions/" + urllib.parse.quote(version, safe="")
    return path, model


@st.composite
def rest_cases(draw: st.DrawFn) -> RestCase:
    path, model = draw(model_path())
    built_valid = draw(st.integers(0, 3)) == 0
    doc = draw(valid_body(model) if built_valid else hostile_body(model))
    headers = {}
    if draw(st.integers(0, 4)) == 0:
        headers["content-type"] = draw(CONTENT_TYPES)
    return RestCase(path, dumps(doc), model, built_valid and model is not None, headers)


CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-16",
        "text/plain",
        "application/octet-stream",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
        "",
        "*/*",
        "application/json;;;",
    ]
)
GARBAGE = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=100).map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.sampled_from(
        [
            b"",
            b"{",
            b"[]",
            b"null",
            b'{"inputs": []',
            b"\xef\xbb\xbf{}",  # a UTF-8 BOM
            '{"inputs": []}'.encode("utf-16"),
            b'{"inputs": [], "inputs": 5}',
            b"{}" * 1000,
        ]
    ),
    st.integers(BODY_LIMIT - 2, BODY_LIMIT + 10).map(lambda n: b"[" + b"0," * (n // 2) + b"0]"),
)


@st.composite
def garbage_cases(draw: st.DrawFn) -> RestCase:
    path, model = draw(model_path())
    headers = {"content-type": draw(CONTENT_TYPES)}
    return RestCase(path, draw(GARBAGE), model, False, headers)


def rest_expectation(case: RestCase, stream: bool) -> str:
    """What the server must answer, decided without it."""
    if case.model is None:
        return CLIENT_ERROR  # no such model (or version), or no such route
    try:
        request = InferenceRequest.model_validate_json(case.body)
        validate_request(request, case.model.inputs, case.model.outputs)
    except (pydantic.ValidationError, InvalidRequest):
        if case.built_valid:
            raise AssertionError(f"the oracle refuses a request built valid: {case!r}") from None
        return CLIENT_ERROR
    if len(case.body) > BODY_LIMIT:
        return CLIENT_ERROR
    if not case.model.stream_only:
        return OK
    return STARTS if stream else UNIMPLEMENTED


def _error_body_problem(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return f"{response.status_code} body is not JSON: {response.content[:200]!r}"
    if not (isinstance(body, dict) and list(body) == ["error"] and isinstance(body["error"], str)):
        return f'{response.status_code} body is not {{"error": str}}: {body!r:.200}'
    return None


def _check_status(status: int, expect: str, response: httpx.Response) -> str | None:
    if status >= 500 and not (status == 501 and expect == UNIMPLEMENTED):
        return f"server error {status} for a client's request: {response.content[:300]!r}"
    if status >= 400 and (problem := _error_body_problem(response)):
        return problem
    wanted = {
        OK: (200, 200),
        STARTS: (200, 200),
        UNIMPLEMENTED: (501, 501),
        CLIENT_ERROR: (400, 499),
        ANY: (0, 499),
    }[expect]
    if not wanted[0] <= status <= wanted[1]:
        return f"expected {expect}, got {status}: {response.content[:300]!r}"
    return None


def _echo_problem(request_body: bytes, response: InferenceResponse) -> str | None:
    sent = json.loads(request_body)
    names = [t["name"] for t in sent["inputs"]]
    got = [o.name for o in response.outputs]
    if response.model_name != "identity" or not set(got) <= set(names) or (names and not got):
        return f"identity answered outputs {got} for inputs {names}"
    return None


def _connection_problem(http: httpx.Client, body: bytes, outcome: Outcome) -> Outcome:
    """After a body over the limit, which the server refuses before reading it all: the
    connection the client keeps must still serve the next request."""
    if outcome.problem is None and len(body) > BODY_LIMIT:
        try:
            http.get("/v2/health/live", timeout=FOLLOW_UP_TIMEOUT)
        except httpx.TimeoutException:
            outcome.problem = (
                f"after a {outcome.answer} to a body of {len(body)} bytes (over the limit), "
                f"the next request on the connection got no answer in {FOLLOW_UP_TIMEOUT} s"
            )
    return outcome


def send_rest_infer(http: httpx.Client, case: RestCase) -> Outcome:
    expect = rest_expectation(case, stream=False)
    verb = "/infer" if len(case.body) % 2 else "/generate"
    response = http.post(case.path + verb, content=case.body, headers=case.headers)
    outcome = Outcome(
        str(response.status_code), _check_status(response.status_code, expect, response)
    )
    if outcome.problem is None and expect == OK:
        try:
            outcome.problem = _echo_problem(
                case.body, InferenceResponse.model_validate_json(response.content)
            )
        except pydantic.ValidationError as exc:
            outcome.problem = f"200 with a body that is not an InferenceResponse: {exc}"
    return _connection_problem(http, case.body, outcome)


_SSE_EVENT = re.compile(r"(?:event: (\w+)\n)?data: (.*)\n\n")


def _first_event_problem(response: httpx.Response, case: RestCase) -> str | None:
    """token-streamer answers at once unless asked for a delay: its first event must not
    be the model crashing on a request that validation let through."""
    assert case.model is not None
    if case.model.name != "token-streamer":
        return None  # text-model sleeps 0.5 s before its first word
    inputs = {t["name"]: t for t in json.loads(case.body)["inputs"]}
    delay = inputs.get("delay_s", {}).get("data", [0])
    delay = delay[0] if isinstance(delay, list) and delay else delay
    if isinstance(delay, int | float) and delay > 0:
        return None
    text = ""
    for chunk in response.iter_text():
        text += chunk
        if "\n\n" in text:
            break
    # the model may refuse inputs that validation let through (n = -1, two values of n):
    # as the client's error, an InferenceError; a crash ("model failed") is ours
    if text.startswith("event: error") and '"model failed' in text:
        return f"a valid request made the model fail: {squeeze(text)[:300]!r}"
    return None


def send_rest_stream(http: httpx.Client, case: RestCase) -> Outcome:
    expect = rest_expectation(case, stream=True)
    verb = "/infer_stream" if len(case.body) % 2 else "/generate_stream"
    with http.stream("POST", case.path + verb, content=case.body, headers=case.headers) as r:
        if expect == STARTS and r.status_code == 200:
            # a valid stream of a demo model that may run for long: its start is what we
            # check, and its first event when it comes at once; leaving then is a client
            # disconnect, which must cancel the model
            return Outcome("200", _first_event_problem(r, case))
        r.read()
    outcome = Outcome(str(r.status_code), _check_status(r.status_code, expect, r))
    if outcome.problem is None and r.status_code == 200:
        text = r.content.decode()
        events = _SSE_EVENT.findall(text)
        if "".join(m.group(0) for m in _SSE_EVENT.finditer(text)) != text:
            outcome.problem = f"malformed SSE body: {text[:300]!r}"
        elif [kind for kind, _ in events] != [""]:
            outcome.problem = f"expected one data event, got: {text[:300]!r}"
        else:
            try:
                response = InferenceResponse.model_validate_json(events[0][1])
                outcome.problem = _echo_problem(case.body, response)
            except pydantic.ValidationError as exc:
                outcome.problem = f"SSE data is not an InferenceResponse: {exc}"
    return _connection_problem(http, case.body, outcome)


def send_rest_garbage(http: httpx.Client, case: RestCase) -> Outcome:
    verb = ["/infer", "/generate", "/infer_stream", "/generate_stream"][len(case.body) % 4]
    response = http.post(case.path + verb, content=case.body, headers=case.headers)
    expect = ANY
    if len(case.body) > BODY_LIMIT:
        expect = CLIENT_ERROR
    outcome = Outcome(
        str(response.status_code), _check_status(response.status_code, expect, response)
    )
    if outcome.problem is None and response.status_code == 413 and len(case.body) <= BODY_LIMIT:
        outcome.problem = f"413 for a body of {len(case.body)} bytes, under the limit"
    return _connection_problem(http, case.body, outcome)


# -- REST paths, methods and headers -----------------------------------------------------
SEGMENTS = st.one_of(
    st.sampled_from(
        [
            "v2",
            "models",
            "health",
            "live",
            "ready",
            "infer",
            "generate",
            "generate_stream",
            "infer_stream",
            "versions",
            "repository",
            "index",
            "load",
            *MODELS,
            "..",
            ".",
            "",
            "%2e%2e",
            "%2F",
            "%00",
            "%ff",
            "%",
            "%zz",
            "%25",
            "?",
            "#",
            ";x=1",
            "~",
        ]
    ),
    st.text(max_size=12).map(lambda s: urllib.parse.quote(s, safe="")),
    st.text(
        alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="/?#"),
        max_size=12,
    ),
    st.integers(100, 20_000).map(lambda n: "s" * n),
)
METHODS = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
HEADER_NAMES = st.sampled_from(
    ["accept", "accept-encoding", "content-type", "authorization", "x-request-id", "origin",
     "transfer-encoding-x", "expect-x", "cookie", "range", "if-none-match", "te-x", "upgrade-x"]
) | st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=20)  # fmt: skip
HEADER_VALUES = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=40,
) | st.integers(1, 6000).map(lambda n: "v" * n)


def _guard(path: str) -> str:
    """No case may unload a demo model: the rest of the run needs them."""
    if "unload" in urllib.parse.unquote(path).lower():
        return "/v2/repository/models/no-such-model/unload"
    return path


@dataclass
class PathCase:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))

    def __repr__(self) -> str:
        text = (
            f"PathCase({self.method} {self.path!r}, headers={self.headers!r}, body={self.body!r})"
        )
        return _cut(squeeze(text))


@st.composite
def path_cases(draw: st.DrawFn) -> PathCase:
    segments = draw(st.lists(SEGMENTS, max_size=7))
    prefix = draw(st.sampled_from(["/v2/", "/v2/models/", "/", "/v2/repository/models/"]))
    path = prefix + "/".join(segments)
    if draw(st.integers(0, 3)) == 0:
        path += "?" + draw(st.text(max_size=20).map(urllib.parse.quote))
    headers = draw(st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=4))
    body = draw(st.sampled_from([b"", b"{}", b'{"inputs": []}']) | GARBAGE)
    return PathCase(draw(METHODS), _guard(path), headers, body)


def send_path(http: httpx.Client, case: PathCase) -> Outcome:
    try:
        headers = {k: v.encode("latin-1") for k, v in case.headers.items()}  # as they are
        response = http.request(case.method, case.path, content=case.body, headers=headers)
    except (httpx.InvalidURL, httpx.UnsupportedProtocol, httpx.LocalProtocolError, UnicodeError):
        return Outcome("not sent")  # the client refuses to send it
    status = response.status_code
    if status >= 500:
        return Outcome(str(status), f"server error {status}: {response.content[:300]!r}")
    if status >= 400 and case.method != "HEAD" and (problem := _error_body_problem(response)):
        return Outcome(str(status), problem)
    return _connection_problem(http, case.body, Outcome(str(status)))


# -- raw HTTP/1.1: what httpx will not send -------------------------------------------------
@dataclass
class RawCase:
    data: bytes
    complete: bool
    """False when the request cannot end (Content-Length beyond the body, an open chunked
    body): the client then closes its side."""

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))

    def __repr__(self) -> str:
        return _cut(squeeze(f"RawCase(complete={self.complete}, data={self.data!r})"))


@st.composite
def raw_cases(draw: st.DrawFn) -> RawCase:
    method = draw(METHODS | st.sampled_from(["BREW", "G ET", "", "get", "POST\x00"]))
    if draw(st.booleans()):
        path, _ = draw(model_path())
        path += draw(st.sampled_from(["/infer", "/generate_stream", ""]))
    else:
        path = draw(
            st.sampled_from(
                ["*", "http://127.0.0.1/v2", "v2", "/v2/health/live", "//", "/v2/models/%"]
            )
        )
    path = _guard(path)
    version = draw(
        st.sampled_from(["HTTP/1.1"] * 6 + ["HTTP/1.0", "HTTP/2.0", "HTTP/9.9", "JUNK", ""])
    )
    if draw(st.booleans()):
        body = dumps(draw(valid_body(MODELS["identity"])))
    else:
        body = draw(GARBAGE.filter(lambda b: len(b) < 4096))
    lines = [f"{method} {path} {version}".encode("latin-1", "replace")]
    if draw(st.integers(0, 5)):
        lines.append(b"Host: 127.0.0.1")
    complete = True
    framing = draw(
        st.sampled_from(
            ["length"] * 4 + ["less", "more", "bad", "twice", "none", "chunked", "badchunk"]
        )
    )
    if framing == "length":
        lines.append(b"Content-Length: %d" % len(body))
    elif framing == "less":
        lines.append(b"Content-Length: %d" % max(0, len(body) - draw(st.integers(1, 10))))
    elif framing == "more":
        lines.append(b"Content-Length: %d" % (len(body) + draw(st.integers(1, 10**6))))
        complete = False
    elif framing == "bad":
        lines.append(
            b"Content-Length: "
            + draw(
                st.sampled_from(
                    [b"-1", b"abc", b"1e3", b"", b"99999999999999999999999", b"0x10", b" 5 "]
                )
            )
        )
        complete = False  # the server may well wait for that many bytes
    elif framing == "twice":
        lines += [b"Content-Length: %d" % len(body), b"Content-Length: %d" % (len(body) + 1)]
    elif framing == "chunked":
        lines.append(b"Transfer-Encoding: chunked")
        body = (b"%x\r\n" % len(body) + body + b"\r\n" if body else b"") + b"0\r\n\r\n"
    elif framing == "badchunk":
        lines.append(b"Transfer-Encoding: chunked")
        body = draw(
            st.sampled_from(
                [b"zz\r\n", b"5\r\nab", b"-1\r\n", b"ffffffffffffffffff\r\n", b"3\r\nabcX\r\n"]
            )
        )
        complete = False
    for _ in range(draw(st.integers(0, 3))):
        lines.append(
            draw(
                st.sampled_from([b"X-No-Colon", b": empty-name", b"X-Bad\x00: v", b"X-High: \xff\xfe", b" folded: v",
                                 b"X-Long: " + b"x" * 20_000, b"Content-Type: application/json", b"Expect: 100-continue",
                                 b"Connection: keep-alive", b"Transfer-Encoding: gzip"])
                | st.binary(max_size=40)
            )
        )  # fmt: skip
    if complete:
        lines.append(b"Connection: close")
    return RawCase(b"\r\n".join(lines) + b"\r\n\r\n" + body, complete)


_STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3}) ")


def _first_response(data: bytes, head_only: bool) -> tuple[int, bytes] | None:
    """(status, body) of the first complete final response in ``data``; None until there
    is one. 1xx interim responses are skipped."""
    while True:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            return None
        match = _STATUS_LINE.match(head)
        if not match:
            return (-1, data)  # not HTTP: reported as such
        status = int(match.group(1))
        if 100 <= status < 200:
            data = rest
            continue
        headers = {
            k.strip().lower(): v.strip()
            for k, _, v in (line.partition(b":") for line in head.split(b"\r\n")[1:])
        }
        if head_only or status in (204, 304):
            return status, b""
        if b"content-length" in headers:
            n = int(headers[b"content-length"])
            return (status, rest[:n]) if len(rest) >= n else None
        if headers.get(b"transfer-encoding") == b"chunked":
            return (status, rest) if rest.endswith(b"0\r\n\r\n") else None
        return None  # delimited by the close


def send_raw(port: int, case: RawCase, timeout: float = TIMEOUT) -> Outcome:
    """Send the bytes, read until the first response is complete (Hypercorn keeps the
    connection open after ``Connection: close``), or until the server closes."""
    data = b""
    head_only = case.data.startswith(b"HEAD ")
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(case.data)
            if not case.complete:
                sock.shutdown(socket.SHUT_WR)
            while (first := _first_response(data, head_only)) is None or not case.complete:
                chunk = sock.recv(65536)  # when the client closed its side: to the server's
                if not chunk:
                    break
                data += chunk
        except TimeoutError:
            if not data:
                return Outcome("hang", f"no answer in {timeout} s")
            return Outcome("hang", f"an answer that does not end in {timeout} s: {data[:300]!r}")
        except (ConnectionResetError, BrokenPipeError):
            first = _first_response(data, head_only)
    try:  # the server must still be listening (Hypercorn's trio worker can die of a request)
        if not case.complete:
            time.sleep(0.02)  # what the server does with the close comes after it
        socket.create_connection(("127.0.0.1", port), timeout=timeout).close()
    except ConnectionRefusedError:
        return Outcome("server gone", "the server stopped listening (refused) after this request")
    if first is None:
        if not data:
            return Outcome("closed")  # the server gave up on it: fine for a broken request
        return (
            Outcome("cut", f"the answer was cut: {data[:300]!r}")
            if case.complete
            else Outcome("cut")
        )
    status, body = first
    if status < 0:
        return Outcome("?", f"not an HTTP response: {body[:300]!r}")
    if status == 501 and b"transfer-encoding:" in case.data.partition(b"\r\n\r\n")[0].lower():
        # RFC 9112 6.1: a transfer coding the server does not know ("gzip", or "chunked"
        # with an obsolete folded line after it, which h11 joins to the value)
        return Outcome("501")
    if status >= 500:
        return Outcome(str(status), f"server error {status}: {body[:300]!r}")
    return Outcome(str(status))


# -- gRPC: valid protobuf with hostile contents ----------------------------------------------
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
    built_valid = model is not None and draw(st.integers(0, 3)) == 0
    raw_mode = draw(st.booleans())
    if built_valid:
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
        if raw_mode and built_valid:
            tensor.ClearField("contents")
        message.inputs.append(tensor)
    if raw_mode:
        raws = [raw for _, raw in tensors]
        if not built_valid and draw(st.integers(0, 5)) == 0:
            raws = raws[:-1] if raws and draw(st.booleans()) else [*raws, b""]
        message.raw_input_contents.extend(raws)
    if not built_valid:
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
    try:
        request, _ = request_from_proto(bp.ModelInferRequest.parse(data))
        validate_request(request, case.model.inputs, case.model.outputs)
    except InvalidRequest:
        if case.built_valid:
            raise AssertionError(f"the oracle refuses a request built valid: {case!r}") from None
        return CLIENT_ERROR
    except Exception:  # a conversion bug: the server must not answer INTERNAL all the same
        return CLIENT_ERROR
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
    if code == grpc.StatusCode.UNIMPLEMENTED and expect not in (UNIMPLEMENTED, ANY):
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
    if outcome.problem is None:
        response = pb2.ModelInferResponse.FromString(reply)
        sent = [t.name for t in case.message.inputs]
        got = [o.name for o in response.outputs]
        if response.model_name != "identity" or got != sent[: len(got)] or (sent and not got):
            outcome.problem = f"identity answered outputs {got} for inputs {sent}"
    return outcome


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


# -- gRPC: garbage bytes as the message -------------------------------------------------------
def _varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 70) - 1
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _wire_field(number: int, wire: int, payload: Any) -> bytes:
    key = _varint(number << 3 | wire)
    if wire == 0:
        return key + _varint(payload)
    if wire == 2:
        return key + _varint(len(payload)) + payload
    return key + payload


def _fields(inner: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    one = st.one_of(
        st.tuples(st.integers(1, 9), st.just(0), st.integers(0, 2**70)),
        st.tuples(st.integers(1, 9), st.just(1), st.binary(min_size=8, max_size=8)),
        st.tuples(st.integers(1, 9), st.just(5), st.binary(min_size=4, max_size=4)),
        st.tuples(
            st.integers(1, 9),
            st.just(2),
            inner
            | st.binary(max_size=12)
            | st.sampled_from(
                [b"identity", b"FP32", b"BYTES", b"\xff\xfe", b"\xc3(", b"\xed\xa0\x80"]
            ),
        ),
        st.tuples(st.integers(1, 9), st.sampled_from([3, 4, 6, 7]), st.just(b"")),
    ).map(lambda f: _wire_field(*f))
    return st.lists(one, max_size=6).map(b"".join)


WIRE_MESSAGES = st.recursive(st.just(b""), _fields, max_leaves=20)


@st.composite
def mutated_valid_message(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(grpc_cases()).message.SerializeToString())
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        how = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        if how == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif how == "cut":
            del data[i:]
        elif how == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=4))
        else:
            del data[i]
    return bytes(data)


GRPC_GARBAGE = st.one_of(st.binary(max_size=200), WIRE_MESSAGES, mutated_valid_message())
GARBAGE_RPCS = ["ModelInfer", "ModelInfer", "ModelStreamInfer", "ModelStreamInfer",
                "ModelReady", "ModelMetadata", "ServerMetadata", "ServerLive", "RepositoryIndex"]  # fmt: skip


@dataclass
class GrpcGarbage:
    method: str
    messages: list[bytes]

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))

    def __repr__(self) -> str:
        return _cut(squeeze(f"GrpcGarbage({self.method}, messages={self.messages!r})"))


@st.composite
def grpc_garbage_cases(draw: st.DrawFn) -> GrpcGarbage:
    method = draw(st.sampled_from(GARBAGE_RPCS))
    n = draw(st.integers(1, 3)) if method == "ModelStreamInfer" else 1
    messages = draw(st.lists(GRPC_GARBAGE, min_size=n, max_size=n))
    if method == "ModelStreamInfer" and draw(st.booleans()):
        # garbage after a good request: decoded inside the model's request iterator
        messages.insert(0, pb2.ModelInferRequest(model_name="identity").SerializeToString())
    return GrpcGarbage(method, messages)


def send_grpc_garbage(rpc: Grpc, case: GrpcGarbage) -> Outcome:
    try:
        if case.method == "ModelStreamInfer":
            for _ in rpc.stream(case.method)(iter(case.messages), timeout=rpc.timeout):
                pass
        else:
            rpc.unary(case.method)(case.messages[0], timeout=rpc.timeout)
    except grpc.RpcError as exc:
        code, details = exc.code(), exc.details() or ""
        return Outcome(code.name, _grpc_status_problem(code, details, ANY))
    return Outcome("OK")


# -- the targets ----------------------------------------------------------------------------
@dataclass
class Clients:
    http: httpx.Client
    http_port: int
    rpc: Grpc


@dataclass(frozen=True)
class Target:
    name: str
    strategy: st.SearchStrategy[Any]
    send: Callable[[Clients, Any], Outcome]


TARGETS = [
    Target("rest_infer", rest_cases(), lambda c, x: send_rest_infer(c.http, x)),
    Target("rest_stream", rest_cases(), lambda c, x: send_rest_stream(c.http, x)),
    Target("rest_garbage", garbage_cases(), lambda c, x: send_rest_garbage(c.http, x)),
    Target("rest_paths", path_cases(), lambda c, x: send_path(c.http, x)),
    Target("raw_http", raw_cases(), lambda c, x: send_raw(c.http_port, x)),
    Target("grpc_infer", grpc_cases(), lambda c, x: send_grpc_infer(c.rpc, x)),
    Target("grpc_stream", grpc_stream_cases(), lambda c, x: send_grpc_stream(c.rpc, x)),
    Target("grpc_garbage", grpc_garbage_cases(), lambda c, x: send_grpc_garbage(c.rpc, x)),
]


def run_case(target: Target, clients: Clients, case: Any) -> Outcome:
    """``target.send``, with the client's own failures (a timeout, a dropped connection)
    as outcomes: each is a problem."""
    started = time.monotonic()
    try:
        outcome = target.send(clients, case)
        elapsed = time.monotonic() - started
        if outcome.problem is None and elapsed > SLOW:
            outcome.problem = f"the answer took {elapsed:.1f} s"
        return outcome
    except httpx.TimeoutException as exc:
        return Outcome("timeout", f"no answer in {TIMEOUT} s ({type(exc).__name__})")
    except httpx.TransportError as exc:
        return Outcome("transport error", f"{type(exc).__name__}: {exc}")
    except OSError as exc:
        return Outcome("socket error", f"{type(exc).__name__}: {exc}")


def open_clients(http_port: int, grpc_port: int) -> Clients:
    http = httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=TIMEOUT)
    channel = grpc.insecure_channel(
        f"127.0.0.1:{grpc_port}",
        options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)],
    )
    return Clients(http, http_port, Grpc(channel))


def close_clients(clients: Clients) -> None:
    clients.http.close()
    clients.rpc.channel.close()


def liveness_problems(clients: Clients) -> list[str]:
    """The server still answers health on both transports, and every demo model is READY."""
    problems = []
    for path in ("/v2/health/live", "/v2/health/ready", *(f"/v2/models/{m}/ready" for m in MODELS)):
        status = clients.http.get(path).status_code
        if status != 200:
            problems.append(f"GET {path}: {status}")
    stub = pb2_grpc.GRPCInferenceServiceStub(clients.rpc.channel)
    if not stub.ServerLive(pb2.ServerLiveRequest(), timeout=10).live:
        problems.append("gRPC ServerLive: not live")
    for name in MODELS:
        if not stub.ModelReady(pb2.ModelReadyRequest(name=name), timeout=10).ready:
            problems.append(f"gRPC ModelReady {name}: not ready")
    return problems


def rss_kib() -> int:
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0
