"""A deliberately simple V2 / Open Inference Protocol REST server, for the conformance
suite's self-test (tests/test_conformance_selftest.py).

It is correct enough to pass the checks the self-test names, and each ``--break NAME``
breaks one behaviour a check of the suite is about, so that check must fail on it (or,
for ``cut-stream``, record a deviation). Standard library only; like the suite, it
imports nothing from streamwise. It serves the eight reference models of
``conformance/models/streamwise`` (their metadata is read from the model-settings
files, their behaviour is re-implemented here), and Triton's flat generate dialect on
``generate`` / ``generate_stream`` (a JSON object without ``inputs``). REST only,
HTTP/1.1, one thread per connection.

    python conformance/selftest/server.py [--port 0] [--break NAME ...] [--list]

It prints ``listening on http://127.0.0.1:PORT`` once it accepts connections, and runs
until it is killed.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Json = dict[str, Any]

BREAKAGES = {
    "hidden-failure": "a model failure mid-stream ends the stream with a clean `event: done`",
    "cut-stream": "a model failure mid-stream cuts the connection with no message (a deviation)",
    "no-sse-id": "stream events carry no `id` in their InferenceResponse",
    "id-per-event": "each event of one stream carries a new generated `id`",
    "ignore-request-id": "the request's `id` is not echoed (a generated one instead)",
    "bare-metadata": 'model metadata is only {"name": ...}',
    "not-live": '/v2/health/live answers 200 {"live": false}',
    "unknown-model-500": "an unknown model is an internal error (500), not a 404",
    "detail-error-body": 'errors have a {"detail": ...} body, not {"error": ...}',
    "errors-inside-stream": "a refused streaming request is a 200 stream with one error event",
    "buffered-stream": "a stream is collected whole and sent with a Content-Length",
    "wrong-datatype": "integer outputs come back as INT64 whatever their datatype",
    "wrong-shape": "outputs come back flattened to one dimension",
    "shape-unchecked": "tensors whose data does not fit their shape are accepted",
    "wrapped-values": "integers out of their datatype's range are accepted and wrapped",
    "flat-as-v2": "Triton's flat generate request is answered with V2 responses",
    "flat-v2-error-event": "a flat stream's failure is V2's `event: error`, not Triton's data",
}

MODELS_DIR = pathlib.Path(__file__).resolve().parent.parent / "models" / "streamwise"
DATATYPES = {
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BYTES",
}  # fmt: skip
INT_RANGES = {
    dt: (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if dt[0] == "I" else (0, 2**bits - 1)
    for dt, bits in [
        ("INT8", 8), ("INT16", 16), ("INT32", 32), ("INT64", 64),
        ("UINT8", 8), ("UINT16", 16), ("UINT32", 32), ("UINT64", 64),
    ]
}  # fmt: skip
ROUTE = re.compile(
    r"^/v2/models/(?P<model>[^/]+)(?:/versions/(?P<version>[^/]+))?"
    r"(?P<action>/ready|/infer|/generate|/generate_stream|/infer_stream)?$"
)
STREAMING = {"/generate_stream", "/infer_stream"}


class Refused(Exception):
    """A request the server answers with a status and an error body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# -- the reference models --
def load_models() -> dict[str, Json]:
    """Metadata per model, from the model-settings files."""
    models = {}
    for path in sorted(MODELS_DIR.glob("*/model-settings.json")):
        settings = json.loads(path.read_text())
        versions = [v.rsplit("/", 1)[-1] for v in settings.get("versions", [])]
        if "version" in settings.get("parameters", {}):
            versions.append(settings["parameters"]["version"])
        models[settings["name"]] = {
            "name": settings["name"],
            "versions": versions,
            "platform": settings.get("platform", ""),
            "inputs": settings.get("inputs", []),
            "outputs": settings.get("outputs", []),
        }
    return models


def scalar(inputs: dict[str, Json], name: str, default: Any) -> Any:
    if name not in inputs:
        return default
    data = inputs[name]["data"]
    while isinstance(data, list):
        data = data[0]
    return data


def text(name: str, value: str) -> Json:
    return {"name": name, "datatype": "BYTES", "shape": [1], "data": [value]}


def tokens(inputs: dict[str, Json], n: int, delay_s: float = 0.0) -> Iterator[list[Json]]:
    delay_s = float(scalar(inputs, "delay_s", delay_s))
    for i in range(int(scalar(inputs, "n", n))):
        if delay_s:
            time.sleep(delay_s)
        yield [text("token", f"token-{i}")]


def words(value: str, delay_s: float) -> Iterator[list[Json]]:
    for i, word in enumerate(value.split(" ")):
        if delay_s:
            time.sleep(delay_s)
        yield [text("output", word if i == 0 else " " + word)]


def identity(body: Json) -> list[Json]:
    outputs = []
    for t in body["inputs"]:
        out = {k: t[k] for k in ("name", "datatype", "shape", "data")}
        if "parameters" in t:
            out["parameters"] = t["parameters"]
        outputs.append(out)
    return outputs


def stream_of(model: str, body: Json) -> Iterator[list[Json]]:
    """The outputs of each response a model streams for one request."""
    inputs = {t["name"]: t for t in body["inputs"]}
    if model == "token-streamer":
        yield from tokens(inputs, 10)
    elif model == "slow-stream":
        yield from tokens(inputs, 100, 0.1)
    elif model == "fail-mid-stream":
        n = int(scalar(inputs, "n", 2))
        yield from tokens(inputs, n)
        raise RuntimeError(f"fail-mid-stream: failing after {n} responses")
    elif model == "word-streamer":
        yield from words(str(scalar(inputs, "text", "")), float(scalar(inputs, "delay_s", 0)))
    elif model == "text-model":
        yield from words(str(body["inputs"][0]["data"][0]), 0.5)
    elif model == "text-generator":
        fail_after = (body.get("parameters") or {}).get("fail_after")
        split = str(scalar(inputs, "text_input", "")).split(" ")
        for i, word in enumerate(split if fail_after is None else split[: int(fail_after)]):
            yield [text("text_output", word if i == 0 else " " + word)]
        if fail_after is not None:
            raise RuntimeError(f"text-generator: failing after {fail_after} words")
    else:  # identity, echo-stream
        yield identity(body)


def infer(model: str, body: Json) -> list[Json]:
    """The outputs of a unary inference."""
    if model == "fail-mid-stream":
        raise RuntimeError("fail-mid-stream: this model always fails")
    if model in ("identity", "echo-stream"):
        return identity(body)
    if model == "text-generator":
        inputs = {t["name"]: t for t in body["inputs"]}
        return [text("text_output", str(scalar(inputs, "text_input", "")))]
    raise Refused(400, f"model {model} only streams")


# -- request validation --
def fits(data: Any, shape: list[int]) -> bool:
    """Flat data of the shape's size, or data nested exactly as the shape."""
    if not any(isinstance(x, list) for x in data):
        return len(data) == math.prod(shape)
    return nested_as(data, shape)


def nested_as(data: Any, shape: list[int]) -> bool:
    if not shape:
        return not isinstance(data, list)
    return (
        isinstance(data, list)
        and len(data) == shape[0]
        and all(nested_as(x, shape[1:]) for x in data)
    )


def flat(data: Any) -> list[Any]:
    return [x for item in data for x in flat(item)] if isinstance(data, list) else [data]


def valid_element(datatype: str, value: Any, breaks: set[str]) -> bool:
    if datatype == "BOOL":
        return isinstance(value, bool)
    if datatype == "BYTES":
        return isinstance(value, str)
    if isinstance(value, bool):
        return False
    if datatype.startswith("FP"):
        return isinstance(value, int | float)
    lo, hi = INT_RANGES[datatype]
    return isinstance(value, int) and ("wrapped-values" in breaks or lo <= value <= hi)


def validate(body: Any, metadata: Json, breaks: set[str]) -> Json:
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
        raise Refused(400, "the body is not an inference request (no inputs list)")
    seen = set()
    for t in body["inputs"]:
        if not isinstance(t, dict) or not isinstance(t.get("name"), str):
            raise Refused(400, f"an input without a name: {t!r}"[:200])
        name, datatype, shape = t["name"], t.get("datatype"), t.get("shape")
        if name in seen:
            raise Refused(400, f"input {name!r} given twice")
        seen.add(name)
        if datatype not in DATATYPES:
            raise Refused(400, f"input {name!r}: unknown datatype {datatype!r}")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise Refused(400, f"input {name!r}: invalid shape {shape!r}")
        data = t.get("data")
        if not isinstance(data, list):
            raise Refused(400, f"input {name!r}: no data list")
        if "shape-unchecked" not in breaks and not fits(data, shape):
            raise Refused(400, f"input {name!r}: data does not fit the shape {shape}")
        if not all(valid_element(datatype, x, breaks) for x in flat(data)):
            raise Refused(400, f"input {name!r}: data that is not {datatype}")
    declared = {t["name"]: t for t in metadata["inputs"]}
    for t in body["inputs"] if declared else []:
        if t["name"] not in declared:
            raise Refused(400, f"input {t['name']!r} is not one of the model's")
        if t["datatype"] != declared[t["name"]]["datatype"]:
            raise Refused(400, f"input {t['name']!r} is not {declared[t['name']]['datatype']}")
    for name, t in declared.items():
        if name not in seen and not t.get("parameters", {}).get("optional"):
            raise Refused(400, f"input {name!r} is missing")
    return body


# -- Triton's generate dialect --
def from_flat(body: Json, metadata: Json) -> Json:
    """The V2 request for a flat one: keys naming a declared input are that input (its
    declared datatype, shape [n]), other keys and those of `parameters` are parameters."""
    declared = {t["name"]: t for t in metadata["inputs"]}
    nested = body.get("parameters", {})
    if not isinstance(nested, dict):
        raise Refused(400, "'parameters' must be an object")
    inputs, parameters = [], {}
    pairs = [(k, v) for k, v in body.items() if k not in ("id", "parameters")]
    for key, value in [*pairs, *nested.items()]:
        if key in declared:
            values = value if isinstance(value, list) else [value]
            if any(v is None or isinstance(v, dict | list) for v in values):
                raise Refused(400, f"input {key!r}: not a tensor value")
            datatype = declared[key]["datatype"]
            inputs.append(
                {"name": key, "datatype": datatype, "shape": [len(values)], "data": values}
            )
        elif isinstance(value, str | int | float):
            parameters[key] = value
        else:
            raise Refused(400, f"parameter {key!r} has invalid type")
    request: Json = {"inputs": inputs}
    if parameters:
        request["parameters"] = parameters
    if isinstance(body.get("id"), str) and body["id"]:
        request["id"] = body["id"]
    return request


def to_flat(response: Json, with_id: bool) -> Json:
    out: Json = {"model_name": response["model_name"], "model_version": ""}
    if with_id:
        out["id"] = response["id"]
    for o in response["outputs"]:
        data = flat(o["data"])
        out[o["name"]] = data[0] if len(data) == 1 else data
    return out


def break_outputs(outputs: list[Json], breaks: set[str]) -> list[Json]:
    for out in outputs:
        if "wrapped-values" in breaks and out["datatype"] in INT_RANGES:
            lo, hi = INT_RANGES[out["datatype"]]
            out["data"] = [(x - lo) % (hi - lo + 1) + lo for x in flat(out["data"])]
        if "wrong-datatype" in breaks and out["datatype"] in INT_RANGES:
            out["datatype"] = "INT64"
        if "wrong-shape" in breaks:
            out["shape"], out["data"] = [math.prod(out["shape"])], flat(out["data"])
    return outputs


# -- HTTP --
class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], breaks: set[str]) -> None:
        super().__init__(address, Handler)
        self.breaks = breaks
        self.models = load_models()

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that left
            super().handle_error(request, client_address)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.dispatch("GET")

    def do_POST(self) -> None:
        self.dispatch("POST")

    def do_PUT(self) -> None:
        self.dispatch("PUT")

    def do_DELETE(self) -> None:
        self.dispatch("DELETE")

    @property
    def breaks(self) -> set[str]:
        return self.server.breaks

    def dispatch(self, method: str) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = self.path.split("?", 1)[0]
        streaming = path.endswith(tuple(STREAMING))
        try:
            self.route(method, path, raw)
        except Refused as exc:
            if streaming and "errors-inside-stream" in self.breaks:
                self.start_stream()
                self.send_event(b"event: error\ndata: " + self.error(str(exc)) + b"\n\n")
                self.end_stream()
            else:
                self.send_json(exc.status, self.error(str(exc)))

    def route(self, method: str, path: str, raw: bytes) -> None:
        get: dict[str, Callable[[], Json]] = {
            "/v2/health/live": lambda: {"live": "not-live" not in self.breaks},
            "/v2/health/ready": lambda: {"ready": True},
            "/v2": lambda: {"name": "v2-selftest", "version": "0.1", "extensions": []},
        }
        if path in get:
            self.allow(method, "GET")
            return self.send_json(200, get[path]())
        match = ROUTE.match(path)
        if match is None:
            raise Refused(404, f"no such path: {path}")
        action = match["action"] or ""
        self.allow(method, "POST" if action not in ("", "/ready") else "GET")
        metadata = self.model(match["model"], match["version"])
        if action == "":
            keep = {"name"} if "bare-metadata" in self.breaks else metadata.keys()
            return self.send_json(200, {k: v for k, v in metadata.items() if k in keep})
        if action == "/ready":
            return self.send_json(200, {"name": metadata["name"], "ready": True})
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            raise Refused(400, "the body is not JSON") from None
        flat_request = (
            action in ("/generate", "/generate_stream")
            and isinstance(body, dict)
            and "inputs" not in body
        )
        if flat_request:
            body = from_flat(body, metadata)
            flat_request = "flat-as-v2" not in self.breaks
        body = validate(body, metadata, self.breaks)
        if action in STREAMING:
            return self.stream(metadata["name"], body, flat_request)
        try:
            outputs = infer(metadata["name"], body)
        except RuntimeError as exc:
            raise Refused(500, str(exc)) from None
        response = self.response(metadata["name"], body, outputs)
        return self.send_json(200, to_flat(response, "id" in body) if flat_request else response)

    def allow(self, method: str, allowed: str) -> None:
        if method != allowed:
            raise Refused(405, f"{method} not allowed here, only {allowed}")

    def model(self, name: str, version: str | None) -> Json:
        if name not in self.server.models:
            raise Refused(500 if "unknown-model-500" in self.breaks else 404, f"no model {name}")
        metadata = self.server.models[name]
        if version is not None and version not in metadata["versions"]:
            raise Refused(404, f"model {name} has no version {version}")
        return metadata

    def response(self, model: str, body: Json, outputs: list[Json], rid: str = "") -> Json:
        wanted = [o.get("name") for o in body.get("outputs") or [] if isinstance(o, dict)]
        outputs = break_outputs(
            [o for o in outputs if not wanted or o["name"] in wanted], self.breaks
        )
        if "ignore-request-id" in self.breaks or not isinstance(body.get("id"), str):
            rid = rid or uuid.uuid4().hex
        else:
            rid = body["id"]
        response: Json = {"model_name": model, "id": rid, "outputs": outputs}
        if body.get("parameters") is not None:
            response["parameters"] = body["parameters"]
        return response

    # -- answers --
    def error(self, message: str) -> bytes:
        key = "detail" if "detail-error-body" in self.breaks else "error"
        return json.dumps({key: message}).encode()

    def send_json(self, status: int, body: Json | bytes) -> None:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def stream(self, model: str, body: Json, flat_request: bool = False) -> None:
        rid = uuid.uuid4().hex  # one generated id for the whole stream
        buffered = bytearray()
        if "buffered-stream" not in self.breaks:
            self.start_stream()
        try:
            for outputs in stream_of(model, body):
                if "id-per-event" in self.breaks:
                    rid = uuid.uuid4().hex
                response = self.response(model, body, outputs, rid)
                if "no-sse-id" in self.breaks:
                    del response["id"]
                if flat_request:
                    response = to_flat(response, "id" in body)
                event = b"data: " + json.dumps(response, separators=(",", ":")).encode()
                buffered += self.send_event(event + b"\n\n", hold="buffered-stream" in self.breaks)
        except RuntimeError as exc:
            if "cut-stream" in self.breaks:
                self.close_connection = True
                return  # without the last chunk: the body is cut
            if "hidden-failure" in self.breaks:
                end = b"event: done\ndata: {}\n\n"
            elif flat_request and "flat-v2-error-event" not in self.breaks:
                end = b"data: " + self.error(str(exc)) + b"\n\n"  # Triton's
            else:
                end = b"event: error\ndata: " + self.error(str(exc)) + b"\n\n"
            buffered += self.send_event(end, hold="buffered-stream" in self.breaks)
        if "buffered-stream" in self.breaks:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Content-Length", str(len(buffered)))
            self.end_headers()
            self.wfile.write(buffered)
        else:
            self.end_stream()

    def start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def send_event(self, event: bytes, hold: bool = False) -> bytes:
        """One event as one chunk, sent at once; or returned, to be sent later."""
        if hold:
            return event
        self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
        return b""

    def end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: a free one (default)")
    parser.add_argument("--break", dest="breaks", action="append", default=[],
                        choices=sorted(BREAKAGES), metavar="NAME", help="repeatable")  # fmt: skip
    parser.add_argument("--list", action="store_true", help="list the breakages and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name, what in BREAKAGES.items():
            print(f"{name:22} {what}")
        return
    server = Server((args.host, args.port), set(args.breaks))
    print(f"listening on http://{args.host}:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
