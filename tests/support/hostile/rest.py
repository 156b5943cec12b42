"""REST bodies: valid and hostile inference requests, garbage bodies, the oracle's expectation
for each, and the senders for ``infer``/``generate`` and their streaming twins."""

from __future__ import annotations

import json
import math
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import httpx
from hypothesis import strategies as st

from ..v2_oracle import (
    EITHER,
    INT_RANGES,
    INVALID,
    VALID,
    element_count,
    leaves,
    rest_verdict,
    same_elements,
)
from .common import (
    ANY,
    BAD_DATATYPES,
    BODY_LIMIT,
    CLIENT_ERROR,
    CLIENT_ERROR_OR_UNIMPLEMENTED,
    DATATYPES,
    FOLLOW_UP_TIMEOUT,
    MODELS,
    OK,
    STARTS,
    UNIMPLEMENTED,
    ModelInfo,
    Outcome,
    _cut,
    squeeze,
)
from .json_text import JSON_SCALARS, JSON_VALUES, LONG_TEXT, NAMES, RAW_FRAGMENTS, Raw, dumps


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


NEAR_MISSES = [
    "one more",
    "one fewer",
    "wrong element",
    "float for an integer",
    "negative dimension",
    "dimension as text",
    "other datatype",
    "same name twice",
    "no data",
    "id not a string",
]


@st.composite
def near_valid_body(draw: st.DrawFn, model: ModelInfo | None) -> dict[str, Any]:
    """A valid body with one thing changed: mostly a client error, sometimes still valid
    (another datatype the data fits), sometimes left open (a dimension as text). Where
    the oracle and the server part, it is at this edge."""
    body = draw(valid_body(model))
    how = draw(st.sampled_from(NEAR_MISSES))
    if how == "id not a string" or not body["inputs"]:
        body["id"] = draw(st.integers() | st.booleans() | st.just([]))
        return body
    tensor = draw(st.sampled_from(body["inputs"]))
    data = tensor["data"]
    flat = leaves(data, 10**6) if isinstance(data, list) else [data]
    datatype = tensor["datatype"]
    if how == "one more":
        tensor["data"] = [*flat, draw(_elements(datatype))]
    elif how == "one fewer":
        tensor["data"] = flat[:-1] if flat else [draw(_elements(datatype))]
    elif how == "wrong element" or (how == "float for an integer" and datatype not in INT_RANGES):
        at = draw(st.integers(0, max(len(flat) - 1, 0)))
        tensor["data"] = [*flat[:at], draw(_wrong_elements(datatype)), *flat[at + 1 :]]
    elif how == "float for an integer":
        at = draw(st.integers(0, max(len(flat) - 1, 0)))
        tensor["data"] = [*flat[:at], float(flat[at]) if flat else 1.0, *flat[at + 1 :]]
    elif how == "negative dimension":
        tensor["shape"] = [*tensor["shape"], -1]
    elif how == "dimension as text":
        tensor["shape"] = [str(d) for d in tensor["shape"]] or ["1"]
    elif how == "other datatype":
        tensor["datatype"] = draw(st.sampled_from([d for d in DATATYPES if d != datatype]))
    elif how == "same name twice":
        body["inputs"].append(dict(tensor))
    else:
        del tensor["data"]
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
    kind = draw(st.integers(0, 3))  # valid, one thing changed, hostile (twice as often)
    built_valid = kind == 0
    doc = draw([valid_body, near_valid_body, hostile_body, hostile_body][kind](model))
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
    verdict = rest_verdict(case.body, case.model.inputs, case.model.outputs)
    if case.built_valid and verdict.kind != VALID:
        raise AssertionError(
            f"the oracle refuses a request built valid ({verdict.reason}): {case!r}"
        )
    if verdict.kind == INVALID or len(case.body) > BODY_LIMIT:
        return CLIENT_ERROR
    if verdict.kind == EITHER:
        unary_to_stream_only = case.model.stream_only and not stream
        return CLIENT_ERROR_OR_UNIMPLEMENTED if unary_to_stream_only else ANY
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
    if status >= 500 and not (
        status == 501 and expect in (UNIMPLEMENTED, CLIENT_ERROR_OR_UNIMPLEMENTED)
    ):
        return f"server error {status} for a client's request: {response.content[:300]!r}"
    if status >= 400 and (problem := _error_body_problem(response)):
        return problem
    wanted = {
        OK: (200, 200),
        STARTS: (200, 200),
        UNIMPLEMENTED: (501, 501),
        CLIENT_ERROR: (400, 499),
        CLIENT_ERROR_OR_UNIMPLEMENTED: (400, 501),
        ANY: (0, 499),
    }[expect]
    if not wanted[0] <= status <= wanted[1]:
        return f"expected {expect}, got {status}: {response.content[:300]!r}"
    return None


def _as_json(value: Any) -> Any:
    """``value`` as standard JSON writes it: a non-finite float is null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _echo_problem(request_body: bytes, response_body: bytes | str) -> str | None:
    """identity's answer to a valid request: an output per input (per requested output,
    when some are), each with the input's datatype, shape and elements."""
    sent = json.loads(request_body)
    try:
        got = json.loads(response_body)
    except ValueError:
        return f"200 with a body that is not JSON: {response_body[:300]!r}"
    if not (isinstance(got, dict) and isinstance(got.get("outputs"), list)):
        return f"200 with a body that is not an inference response: {response_body[:300]!r}"
    inputs = {t["name"]: t for t in sent["inputs"]}
    requested = {o["name"] for o in sent.get("outputs") or ()}
    want = sorted(name for name in inputs if not requested or name in requested)
    names = sorted(str(o.get("name")) if isinstance(o, dict) else "?" for o in got["outputs"])
    if got.get("model_name") != "identity" or names != want:
        return f"{got.get('model_name')!r} answered outputs {names} for {want}"
    for out in got["outputs"]:
        sent_tensor = inputs[out["name"]]
        for key in ("datatype", "shape"):
            if out.get(key) != sent_tensor[key]:
                return f"output {out['name']!r}: {key} {out.get(key)!r}, sent {sent_tensor[key]!r}"
        count = element_count(sent_tensor["shape"])
        # JSON has no NaN or Infinity: a non-finite float comes back as null (the server's
        # JSON writer, orjson, writes standard JSON; MLServer's does the same)
        sent_leaves = [_as_json(x) for x in leaves(sent_tensor["data"], count)]
        if not same_elements(leaves(out.get("data"), count), sent_leaves):
            return f"output {out['name']!r}: data {out.get('data')!r:.200}, sent {sent_tensor['data']!r:.200}"
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
        outcome.problem = _echo_problem(case.body, response.content)
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
        stream_only = case.model is not None and case.model.stream_only
        if expect in (STARTS, ANY) and stream_only and r.status_code == 200:
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
        elif expect == OK:  # (what the protocol leaves open is echoed as the server read it)
            outcome.problem = _echo_problem(case.body, events[0][1])
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
