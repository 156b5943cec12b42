"""Adaptive batching (docs/batching.md): concurrent unary requests merged into one
``predict`` call, each client answered with exactly its own rows and outputs, over real
sockets with the clients users have (httpx, grpcio); and the merge/split functions'
property (rows and outputs partition exactly)."""

from __future__ import annotations

import json
import pathlib
import textwrap
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from streamwise import ServerInfo
from streamwise.runtime.batching import merge, merge_key, split
from streamwise.runtime.dataplane import Call
from streamwise.types import (
    InferenceRequest,
    InferenceResponse,
    Parameters,
    RequestInput,
    RequestOutput,
    ResponseOutput,
    TensorData,
)
from tests.support import StartServer, probe
from tests.support.grpc_stubs import from_pb2, in_thread, to_pb2

MODEL = '''
"""Rows in, per row: ``double`` (x times the request's ``scale`` parameter, 2 by
default), ``total`` (the row's sum) and ``batch`` (the rows of the predict call that
computed it). A row holding -1 waits for ``probe.gate["open"]``; one holding -2 fails."""

import asyncio

from streamwise import MLModel
from streamwise.codecs import NumpyCodec
from streamwise.types import InferenceResponse, ResponseOutput
from tests.support import probe


class Rows(MLModel):
    async def predict(self, payload):
        x = NumpyCodec.decode_input(payload.inputs[0])
        n = x.shape[0]
        scale = getattr(payload.parameters, "scale", 2) if payload.parameters else 2
        probe.batches.append({
            "rows": n, "width": x.shape[1], "datatype": payload.inputs[0].datatype,
            "scale": scale, "clients": sorted({int(v) // 100 for v in x[:, 0] if v >= 0}),
        })
        if (x == -1).any():
            probe.gate["held"] = True
            for _ in range(3000):  # 30 s at most: a broken test does not hang forever
                if probe.gate.get("open"):
                    break
                await asyncio.sleep(0.01)
        if (x == -2).any():
            raise ValueError("a row of -2")
        double = x * scale
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            outputs=[
                ResponseOutput(name="double", shape=list(double.shape), datatype="FP64",
                               data=double.reshape(-1).tolist()),
                ResponseOutput(name="total", shape=[n, 1], datatype="FP64",
                               data=x.sum(axis=1).tolist()),
                ResponseOutput(name="batch", shape=[n, 1], datatype="INT32", data=[n] * n),
            ],
        )
'''


def repository(
    tmp_path: pathlib.Path, size: int, wait: float, running: int | None = None
) -> pathlib.Path:
    folder = tmp_path / "rows"
    folder.mkdir()
    (folder / "rows_model.py").write_text(textwrap.dedent(MODEL))
    settings = {"name": "rows", "implementation": "rows_model.Rows",
                "max_batch_size": size, "max_batch_time": wait,
                "max_concurrent_batches": running}  # fmt: skip
    (folder / "model-settings.json").write_text(json.dumps(settings))
    return tmp_path


@pytest.fixture(autouse=True)
def _clean_probe() -> None:
    probe.batches.clear()
    probe.gate.clear()


def rows_for(client: int, n: int, width: int = 3) -> list[list[float]]:
    """Client ``client``'s distinct rows: every value encodes (client, row, column)."""
    return [[client * 100 + r * 10 + c for c in range(width)] for r in range(n)]


def request_for(
    client: int,
    n: int,
    outputs: list[str] | None = None,
    width: int = 3,
    datatype: str = "FP32",
    scale: int | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": f"client-{client}",
        "inputs": [{"name": "x", "shape": [n, width], "datatype": datatype,
                    "data": rows_for(client, n, width)}],
    }  # fmt: skip
    if outputs is not None:
        body["outputs"] = [{"name": o} for o in outputs]
    if scale is not None:
        body["parameters"] = {"scale": scale}
    return body


def check_own(body: dict[str, Any], answer: InferenceResponse) -> None:
    """``answer`` holds exactly the client's rows, and only the outputs it asked for."""
    inp = body["inputs"][0]
    n, width = inp["shape"]
    rows = inp["data"]
    scale = body.get("parameters", {}).get("scale", 2)
    assert answer.id == body["id"]
    wanted = [o["name"] for o in body["outputs"]] if "outputs" in body else None
    got = {o.name: o for o in answer.outputs}
    assert sorted(got) == sorted(wanted or ["double", "total", "batch"])
    if "double" in got:
        assert got["double"].shape == [n, width]
        assert got["double"].data.root == [v * scale for row in rows for v in row]
    if "total" in got:
        assert got["total"].shape == [n, 1]
        assert got["total"].data.root == [sum(row) for row in rows]
    if "batch" in got:
        assert got["batch"].shape == [n, 1]
        assert all(seen >= n for seen in got["batch"].data.root)


async def rest(info: ServerInfo, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(timeout=60) as client:
        return await client.post(f"{info.http_url}/v2/models/rows/infer", json=body)


async def grpc(info: ServerInfo, body: dict[str, Any], raw: bool) -> InferenceResponse:
    message = to_pb2(InferenceRequest.model_validate(body), "rows", raw=raw)
    return from_pb2(await in_thread(info, lambda stub: stub.ModelInfer(message, timeout=60)))


async def scrape(info: ServerInfo) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    async with httpx.AsyncClient() as client:
        r = await client.get(f"http://127.0.0.1:{info.metrics_port}/metrics")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def sample(samples: dict[Any, float], name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


async def wait_for(condition: Callable[[], bool]) -> None:
    with trio.fail_after(30):  # a guard against a hang, not a timing
        while not condition():  # noqa: ASYNC110 - a model's dict, no Event to wait on
            await trio.sleep(0.01)


async def test_thirty_two_clients_get_their_own_rows(
    start_server: StartServer, tmp_path: pathlib.Path
) -> None:
    """REST and gRPC (typed and raw) clients at once: each gets its own rows and outputs;
    the model saw batches of several requests; an invalid request is refused alone; a
    client that leaves while its batch runs does not disturb the others'."""
    info = await start_server(repository(tmp_path, size=8, wait=0.5))
    before = await scrape(info)
    failures = _failures()
    bodies = {}
    outputs_cycle = [None, ["double"], ["total", "batch"], ["batch", "double"]]
    for i in range(1, 31):
        bodies[i] = request_for(i, n=i % 3 + 1, outputs=outputs_cycle[i % 4])
    results: dict[int, InferenceResponse] = {}
    invalid: list[httpx.Response] = []

    async def client(i: int) -> None:
        if i % 3 == 0:
            r = await rest(info, bodies[i])
            assert r.status_code == 200, r.text
            results[i] = InferenceResponse.model_validate(r.json())
        else:
            results[i] = await grpc(info, bodies[i], raw=i % 3 == 2)

    async def invalid_client() -> None:  # 3 values for a [1, 3] tensor... but 2 given
        body = request_for(31, 1)
        body["inputs"][0]["data"] = [[1.0, 2.0]]
        invalid.append(await rest(info, body))

    # The client that leaves: its row holds -1, so its batch waits for the gate.
    leaver = await trio.open_tcp_stream("127.0.0.1", info.http_port)
    payload = json.dumps(request_for(0, 1) | {"inputs": [
        {"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [[-1, -1, -1]]}
    ]}).encode()  # fmt: skip
    await leaver.send_all(
        b"POST /v2/models/rows/infer HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(payload), payload)
    )
    async with trio.open_nursery() as nursery:
        for i in bodies:
            nursery.start_soon(client, i)
        nursery.start_soon(invalid_client)
        await wait_for(lambda: probe.gate.get("held", False))  # its batch is running
        await leaver.aclose()
        # the server has seen it go: its call ended as a failure (the client left)
        await wait_for(lambda: _failures() >= failures + 1)
        probe.gate["open"] = True

    assert len(invalid) == 1 and invalid[0].status_code == 400
    assert "needs 3 elements" in invalid[0].json()["error"]
    for i, body in bodies.items():
        check_own(body, results[i])
    # batches of several requests happened, as the model and the metric both say
    assert any(len(b["clients"]) > 1 for b in probe.batches)
    after = await scrape(info)
    labels = {"model": "rows", "version": ""}
    count = sample(after, "streamwise_batch_size_count", **labels) - sample(
        before, "streamwise_batch_size_count", **labels
    )
    ones = sample(after, "streamwise_batch_size_bucket", le="1.0", **labels) - sample(
        before, "streamwise_batch_size_bucket", le="1.0", **labels
    )
    batched = sample(after, "streamwise_batch_size_sum", **labels) - sample(
        before, "streamwise_batch_size_sum", **labels
    )
    assert count >= 1 and ones < count  # at least one batch of more than one request
    assert batched == 31  # every request that reached the model (30 clients, the leaver)
    queued = sample(after, "batch_request_queue_count", model_name="rows") - sample(
        before, "batch_request_queue_count", model_name="rows"
    )
    assert queued == 31
    # the server keeps serving
    r = await rest(info, request_for(40, 2))
    assert r.status_code == 200
    check_own(request_for(40, 2), InferenceResponse.model_validate(r.json()))


def _failures() -> float:
    """Failed unary calls of ``rows`` in this process (a client leaving is one)."""
    from streamwise.metrics import INFER_FAILURE

    return INFER_FAILURE.labels("rows", "")._value.get()  # type: ignore[no-any-return]


async def test_requests_that_cannot_merge_run_apart(
    start_server: StartServer, tmp_path: pathlib.Path
) -> None:
    """Other widths, another datatype, other request parameters, a scalar-free shape:
    each kind is batched only with its own, and every answer is right."""
    info = await start_server(repository(tmp_path, size=4, wait=0.3))
    kinds = {
        "plain": {},
        "wide": {"width": 5},
        "fp64": {"datatype": "FP64"},
        "scaled": {"scale": 3},
    }
    bodies: dict[int, tuple[str, dict[str, Any]]] = {}
    client = 1
    for kind, options in kinds.items():
        for _ in range(4):
            bodies[client] = (kind, request_for(client, client % 2 + 1, **options))
            client += 1
    results: dict[int, InferenceResponse] = {}

    async def send(i: int, body: dict[str, Any]) -> None:
        if i % 2:
            r = await rest(info, body)
            assert r.status_code == 200, r.text
            results[i] = InferenceResponse.model_validate(r.json())
        else:
            results[i] = await grpc(info, body, raw=False)

    async with trio.open_nursery() as nursery:
        for i, (_, body) in bodies.items():
            nursery.start_soon(send, i, body)
    for i, (_, body) in bodies.items():
        check_own(body, results[i])
    kind_of = {i: kind for i, (kind, _) in bodies.items()}
    for batch in probe.batches:  # no predict call mixed two kinds
        assert len({kind_of[c] for c in batch["clients"]}) == 1, batch
    assert len(probe.batches) >= len(kinds)


async def test_a_model_error_fails_the_whole_batch(
    start_server: StartServer, tmp_path: pathlib.Path
) -> None:
    info = await start_server(repository(tmp_path, size=3, wait=10))
    bodies = [request_for(1, 1), request_for(2, 2), request_for(3, 1)]
    bodies[1]["inputs"][0]["data"][1] = [-2, -2, -2]
    answers: list[httpx.Response] = []

    async def send(body: dict[str, Any]) -> None:
        answers.append(await rest(info, body))

    async with trio.open_nursery() as nursery:
        for body in bodies:
            nursery.start_soon(send, body)
    assert [b["clients"] for b in probe.batches] == [[1, 2, 3]]  # one predict call
    for r in answers:
        assert r.status_code == 500
        assert r.json() == {"error": "model failed: ValueError: a row of -2"}
    r = await rest(info, request_for(4, 1))  # and the model goes on serving
    assert r.status_code == 200


async def test_unload_runs_the_waiting_batch_then_reload(
    start_server: StartServer, tmp_path: pathlib.Path
) -> None:
    """Unloading does not wait for ``max_batch_time`` (a minute here): the requests
    waiting run at once, are answered, and only then is the model unloaded; a new
    request is refused clearly; a load starts a new batcher."""
    info = await start_server(repository(tmp_path, size=8, wait=60))
    slot = info.dataplane.registry.find("rows")
    answers: dict[int, httpx.Response] = {}

    async def send(i: int) -> None:
        answers[i] = await rest(info, request_for(i, 2))

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery, httpx.AsyncClient() as http:
            for i in (1, 2):
                nursery.start_soon(send, i)
            await wait_for(lambda: slot.in_flight == 2)  # both wait in the batcher
            r = await http.post(f"{info.http_url}/v2/repository/models/rows/unload")
            assert r.status_code == 200
    for i in (1, 2):
        assert answers[i].status_code == 200
        check_own(request_for(i, 2), InferenceResponse.model_validate(answers[i].json()))
    assert [b["clients"] for b in probe.batches] == [[1, 2]]
    r = await rest(info, request_for(3, 1))
    assert r.status_code == 503 and "not ready" in r.json()["error"]
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{info.http_url}/v2/repository/models/rows/load")
    assert r.status_code == 200
    assert info.dataplane.registry.find("rows").batcher is not None  # a new one
    probe.batches.clear()
    with trio.fail_after(30):  # eight fill a batch: no minute's wait
        async with trio.open_nursery() as nursery:
            for i in range(10, 18):
                nursery.start_soon(send, i)
    for i in range(10, 18):
        assert answers[i].status_code == 200
    assert [len(b["clients"]) for b in probe.batches] == [8]


@pytest.mark.parametrize("running", [None, 1])
async def test_a_batch_due_while_the_model_is_busy(
    start_server: StartServer, tmp_path: pathlib.Path, running: int | None
) -> None:
    """Client 1's batch holds the model. Six more clients come, each batch due after
    1 ms. With ``max_concurrent_batches: 1`` they wait for it, gathering into full batches
    (4, then 2), in order; with no bound (MLServer's way) their batches run beside it."""
    info = await start_server(repository(tmp_path, size=4, wait=0.001, running=running))
    slot = info.dataplane.registry.find("rows")
    held = request_for(1, 1)
    held["inputs"][0]["data"][0][0] = -1  # waits for the gate
    answers: dict[int, httpx.Response] = {}
    before = sample(await scrape(info), "streamwise_batch_size_count", model="rows")

    async def send(i: int, body: dict[str, Any]) -> None:
        answers[i] = await rest(info, body)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send, 1, held)
            await wait_for(lambda: bool(probe.gate.get("held")))
            for i in range(2, 8):  # in turn: the order is known
                nursery.start_soon(send, i, request_for(i, 1))
                if running is None:  # it runs once its 1 ms has passed, beside the held one
                    await wait_for(lambda i=i: len(probe.batches) == i)
                else:  # it waits in the batcher
                    await wait_for(lambda i=i: slot.in_flight == i)
            if running is not None:
                await trio.sleep(0.05)  # fifty times max_batch_time: they still wait
                assert len(probe.batches) == 1
            probe.gate["open"] = True
    for i in range(2, 8):
        assert answers[i].status_code == 200, answers[i].text
        check_own(request_for(i, 1), InferenceResponse.model_validate(answers[i].json()))
    assert answers[1].status_code == 200
    clients = [b["clients"] for b in probe.batches]  # the held row is -1: client 1 unnamed
    if running is None:
        assert clients == [[], [2], [3], [4], [5], [6], [7]]
    else:
        assert clients == [[], [2, 3, 4, 5], [6, 7]]
        after = sample(await scrape(info), "streamwise_batch_size_count", model="rows")
        assert after - before == 3  # the metric counts the batches the model ran


async def test_streams_are_not_batched(start_server: StartServer, tmp_path: pathlib.Path) -> None:
    info = await start_server(repository(tmp_path, size=8, wait=60))  # a unary call waits
    async with httpx.AsyncClient(timeout=30) as http:
        with trio.fail_after(30):
            r = await http.post(f"{info.http_url}/v2/models/rows/infer_stream",
                                json=request_for(1, 2))  # fmt: skip
    assert r.status_code == 200
    event = json.loads(r.text.split("data: ", 1)[1])
    check_own(request_for(1, 2), InferenceResponse.model_validate(event))


# -- the merge and split functions -------------------------------------------------------
OUTPUTS = ("double", "total")


@st.composite
def batches(draw: st.DrawFn) -> list[InferenceRequest]:
    width = draw(st.integers(1, 3))
    count = draw(st.integers(1, 6))
    requests = []
    for i in range(count):
        n = draw(st.integers(0, 4))
        data = [[i * 100 + r * 10 + c for c in range(width)] for r in range(n)]
        nested = draw(st.booleans())
        asked = draw(st.one_of(st.none(), st.lists(st.sampled_from(OUTPUTS), min_size=1,
                                                   max_size=2, unique=True)))  # fmt: skip
        tag = draw(st.sampled_from(["a", "b"]))
        requests.append(
            InferenceRequest(
                id=f"r{i}",
                inputs=[
                    RequestInput(
                        name="x",
                        shape=[n, width],
                        datatype="INT32",
                        data=data if nested else [v for row in data for v in row],
                        parameters=Parameters(tag=tag),  # type: ignore[call-arg]
                    )
                ],
                outputs=None if asked is None else [RequestOutput(name=o) for o in asked],
            )  # fmt: skip
        )
    return requests


def model(request: InferenceRequest) -> InferenceResponse:
    """A vectorised model: per row, its values doubled and their sum (and, as a per-row
    output parameter, the row's first value)."""
    inp = request.inputs[0]
    n, width = inp.shape
    flat = inp.data.root
    assert len(flat) == n * width and all(not isinstance(v, list) for v in flat)
    rows = [flat[r * width : (r + 1) * width] for r in range(n)]
    firsts = [row[0] for row in rows]
    return InferenceResponse(
        model_name="m",
        outputs=[
            ResponseOutput(name="double", shape=[n, width], datatype="INT64",
                           data=[2 * v for v in flat],
                           parameters=Parameters(first=firsts)),  # type: ignore[call-arg]
            ResponseOutput(name="total", shape=[n, 1], datatype="INT64",
                           data=[sum(row) for row in rows]),
        ],
    )  # fmt: skip


@given(batches())
def test_merge_and_split_partition_rows_and_outputs(requests: list[InferenceRequest]) -> None:
    assert len({merge_key(r) for r in requests}) == 1
    merged, rows = merge(requests)
    assert rows == [r.inputs[0].shape[0] for r in requests]
    (x,) = merged.inputs
    assert x.shape == [sum(rows), requests[0].inputs[0].shape[1]]
    tags = [r.inputs[0].parameters.tag for r in requests]  # type: ignore[union-attr]
    assert x.parameters is not None and x.parameters.tag == tags  # type: ignore[attr-defined]
    if all(r.outputs for r in requests):
        assert merged.outputs is not None
        assert {o.name for o in merged.outputs} == {o.name for r in requests for o in r.outputs}
    else:
        assert merged.outputs is None
    whole = model(merged)
    parts = split(whole, rows, "m")
    assert len(parts) == len(requests)
    for out in whole.outputs:  # every row of every output, each in exactly one part
        pieces = [next(o for o in p.outputs if o.name == out.name) for p in parts]
        assert [p.shape[0] for p in pieces] == rows
        assert [v for p in pieces for v in p.data.root] == out.data.root
    for request, part in zip(requests, parts, strict=True):
        assert part == _alone(request)  # the same as the request's own call...
        call = Call(SimpleNamespace(version=None), request, request.id or "", _asked(request))  # type: ignore[arg-type]
        stamped = call.stamp(part)  # ...and once stamped, its id and only its outputs
        assert stamped.id == request.id
        assert [o.name for o in stamped.outputs] == (
            [o for o in OUTPUTS if o in _asked(request)] if request.outputs else list(OUTPUTS)
        )


def _asked(request: InferenceRequest) -> frozenset[str] | None:
    return frozenset(o.name for o in request.outputs) if request.outputs else None


def _alone(request: InferenceRequest) -> InferenceResponse:
    """The model's answer to ``request`` alone, its parameters as a split one has them."""
    inp = request.inputs[0]
    flat = (
        inp.data.root
        if all(not isinstance(v, list) for v in inp.data.root)
        else [v for row in inp.data.root for v in row]
    )
    alone = model(InferenceRequest(inputs=[inp.model_copy(update={"data": TensorData(flat)})]))
    for out in alone.outputs:
        if out.parameters is not None:
            firsts = out.parameters.first  # type: ignore[attr-defined]
            out.parameters = (
                Parameters(first=firsts[0])
                if len(firsts) == 1
                # type: ignore[call-arg]
                else (Parameters(first=firsts) if firsts else Parameters())
            )
    return alone


def test_what_runs_apart() -> None:
    base = InferenceRequest.model_validate(request_for(1, 2))
    key = merge_key(base)
    assert key is not None
    same = InferenceRequest.model_validate(request_for(2, 1, outputs=["total"]))
    assert merge_key(same) == key  # other rows, other outputs: one batch
    with_headers = same.model_copy(deep=True)
    with_headers.parameters = Parameters(headers={"x-client": "2"})
    assert merge_key(with_headers) == key  # headers (gRPC metadata) do not matter
    for other in (
        request_for(1, 2, width=4),
        request_for(1, 2, datatype="FP64"),
        request_for(1, 2, scale=3),
    ):
        assert merge_key(InferenceRequest.model_validate(other)) not in (key, None)
    scalar = InferenceRequest(
        inputs=[RequestInput(name="x", shape=[], datatype="FP32", data=[1.0])]
    )
    ragged = InferenceRequest.model_validate(request_for(1, 2))
    ragged.inputs.append(RequestInput(name="y", shape=[3], datatype="FP32", data=[1, 2, 3]))
    assert merge_key(scalar) is None and merge_key(ragged) is None  # each runs alone
