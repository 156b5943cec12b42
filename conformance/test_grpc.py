"""gRPC unary RPCs: ModelReady, ModelMetadata, ModelInfer (every datatype, typed and raw),
errors, message size, and the repository RPCs. Health and server metadata are in
test_health.py, ModelStreamInfer in test_grpc_stream.py."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import grpc
import httpx
import numpy as np
import pytest

from . import datatypes
from .conftest import MODELS
from .grpc_client import (
    CLIENT_ERRORS,
    CONTENTS,
    Client,
    attempt,
    code_of,
    describe,
    encode_raw,
    expect_client_error,
    expect_model_error,
    output_values,
    still_live,
)

pytestmark = pytest.mark.grpc

# BYTES elements over gRPC are bytes, not only UTF-8 text
SAMPLES: dict[str, list[Any]] = {**datatypes.SAMPLES, "BYTES": [b"", b"hello", b"\x00\xff\xfe"]}
TYPED = [d for d in SAMPLES if CONTENTS[d][0] is not None]  # FP16 travels raw only


# -- helpers --
def infer_request(
    client: Client, model: str, *tensors: tuple[str, str, list[Any]], raw: bool = False, **kw: Any
) -> Any:
    """A ModelInferRequest with (name, datatype, values) inputs of shape [1, n], their data
    in typed ``contents`` or in ``raw_input_contents``."""
    pb = client.pb
    request = pb.ModelInferRequest(model_name=model, **kw)
    for name, datatype, values in tensors:
        tensor = request.inputs.add(name=name, datatype=datatype, shape=[1, len(values)])
        if raw:
            request.raw_input_contents.append(encode_raw(datatype, values))
        else:
            getattr(tensor.contents, str(CONTENTS[datatype][0])).extend(values)
    return request


def expected(datatype: str, values: list[Any]) -> list[Any]:
    if datatype == "BYTES":
        return values
    return np.array(values, dtype=CONTENTS[datatype][1]).tolist()  # type: ignore[no-any-return]


def output(reply: Any, name: str) -> tuple[Any, list[Any]]:
    """The output called ``name`` and its decoded values."""
    names = [o.name for o in reply.outputs]
    assert name in names, f"output {name!r} missing; got {names}"
    index = names.index(name)
    return reply.outputs[index], output_values(reply, index)


def assert_echo(reply: Any, name: str, datatype: str, values: list[Any]) -> None:
    out, got = output(reply, name)
    assert out.datatype == datatype, f"datatype {datatype} came back as {out.datatype}"
    assert list(out.shape) == [1, len(values)], f"shape [1, {len(values)}] -> {out.shape}"
    assert got == expected(datatype, values), f"{datatype} values changed"


def model_ready(client: Client, name: str, version: str = "") -> tuple[Any, Any]:
    return attempt(client.ModelReady, client.pb.ModelReadyRequest(name=name, version=version))


def repository_services(client: Client) -> list[tuple[str, Any, Any]]:
    """(label, stub, messages) of GRPCInferenceService and, if known, ModelRepositoryService."""
    services = [("GRPCInferenceService", client, client.pb)]
    if client.repository is not None:
        services.append(("ModelRepositoryService", client.repository, client.repository_pb))
    return services


def on_repository_services(
    client: Client, deviation: Callable[[str], None], call: Callable[[Any, Any], Any]
) -> dict[str, tuple[Any, Any]]:
    """``call(stub, messages)`` -> (reply, error) on each repository service that
    implements it; one service UNIMPLEMENTED is a deviation, all of them a failure."""
    results, missing = {}, []
    for label, stub, messages in repository_services(client):
        reply, error = call(stub, messages)
        if error is not None and code_of(error) == grpc.StatusCode.UNIMPLEMENTED:
            missing.append(label)
        else:
            results[label] = reply, error
    assert results, f"the repository RPC is UNIMPLEMENTED on {missing}"
    if missing:
        deviation(f"the repository RPC is UNIMPLEMENTED on {', '.join(missing)}")
    return results


# -- ModelReady --
@pytest.mark.parametrize("model", MODELS)
def test_model_ready(grpc_client: Client, need, model: str) -> None:
    need(model)
    reply, error = model_ready(grpc_client, model)
    assert error is None, f"ModelReady({model}): {describe(error)}"
    assert reply.ready is True


def test_model_ready_listed_version(grpc_client: Client, need, deviation) -> None:
    """Every version the model's metadata lists must be addressable (ModelReady and
    ModelMetadata). MLServer-style listings read "text-model/v1.2.3": the version is what
    follows the model name; the whole string is also tried (a deviation if only it works)."""
    need("text-model")
    pb = grpc_client.pb
    meta = grpc_client.ModelMetadata(pb.ModelMetadataRequest(name="text-model"), timeout=10)
    if not meta.versions:
        deviation("text-model's metadata lists no versions (model-settings declares one)")
        return
    for listed in meta.versions:
        tried = []
        for version in dict.fromkeys([listed.removeprefix("text-model/"), listed]):
            reply, error = model_ready(grpc_client, "text-model", version)
            tried.append(f"{version!r}: {describe(error) if error else reply.ready}")
            if error is None and reply.ready:
                break
        else:
            pytest.fail(f"listed version {listed!r} not addressable by ModelReady: {tried}")
        if version != listed.removeprefix("text-model/"):
            deviation(f"version {listed!r} only addressable as the whole string")
        _, error = attempt(
            grpc_client.ModelMetadata, pb.ModelMetadataRequest(name="text-model", version=version)
        )
        assert error is None, f"ModelMetadata(version={version!r}): {describe(error)}"


@pytest.mark.parametrize(
    ("model", "version"), [("no-such-model", ""), ("text-model", "no-such-version")]
)
def test_model_ready_unknown(
    grpc_client: Client, need, deviation, live, model: str, version: str
) -> None:
    if model != "no-such-model":
        need(model)
    reply, error = model_ready(grpc_client, model, version)
    what = f"ModelReady({model!r}, version={version!r})"
    if error is None:
        assert reply.ready is False, f"{what}: ready"
        deviation(f"{what}: ready=false, not NOT_FOUND")
    else:
        expect_client_error(error, deviation, what)
    still_live(grpc_client, live)


# -- ModelMetadata --
def signature(tensors: Any) -> list[tuple[str, str, list[int]]]:
    def get(t: Any, key: str) -> Any:
        return t[key] if isinstance(t, dict) else getattr(t, key)

    return [(get(t, "name"), get(t, "datatype"), list(get(t, "shape"))) for t in tensors or []]


def test_model_metadata_matches_rest(grpc_client: Client, http: httpx.Client, need) -> None:
    need("text-model")
    reply = grpc_client.ModelMetadata(
        grpc_client.pb.ModelMetadataRequest(name="text-model"), timeout=10
    )
    rest = http.get("/v2/models/text-model").json()
    assert reply.name == rest["name"] == "text-model"
    assert reply.platform == (rest.get("platform") or "")
    assert list(reply.versions) == (rest.get("versions") or [])
    assert signature(reply.inputs) == signature(rest.get("inputs"))
    assert signature(reply.outputs) == signature(rest.get("outputs"))
    assert signature(reply.inputs) == [("prompt", "BYTES", [1])], "model-settings' inputs"
    assert signature(reply.outputs) == [("output", "BYTES", [1])], "model-settings' outputs"


def test_model_metadata_unknown(grpc_client: Client, deviation, live) -> None:
    _, error = attempt(
        grpc_client.ModelMetadata, grpc_client.pb.ModelMetadataRequest(name="no-such-model")
    )
    expect_client_error(error, deviation, "ModelMetadata of an unknown model")
    still_live(grpc_client, live)


# -- ModelInfer: data --
@pytest.mark.parametrize("datatype", TYPED)
def test_infer_typed(grpc_client: Client, need, datatype: str) -> None:
    need("identity")
    request = infer_request(grpc_client, "identity", ("x", datatype, SAMPLES[datatype]))
    reply = grpc_client.ModelInfer(request, timeout=10)
    assert_echo(reply, "x", datatype, SAMPLES[datatype])


@pytest.mark.parametrize("datatype", list(SAMPLES))
def test_infer_raw(grpc_client: Client, need, datatype: str) -> None:
    need("identity")
    request = infer_request(grpc_client, "identity", ("x", datatype, SAMPLES[datatype]), raw=True)
    reply = grpc_client.ModelInfer(request, timeout=10)
    assert_echo(reply, "x", datatype, SAMPLES[datatype])


def test_infer_id_and_model_name(grpc_client: Client, need) -> None:
    need("identity")
    request = infer_request(grpc_client, "identity", ("x", "INT32", [7]), id="grpc-id-42")
    reply = grpc_client.ModelInfer(request, timeout=10)
    assert reply.id == "grpc-id-42"
    assert reply.model_name == "identity"


def test_infer_parameters_reach_the_model(grpc_client: Client, need) -> None:
    """identity echoes the request's parameters as the response's."""
    need("identity")
    pb = grpc_client.pb
    sent = {
        "flag": pb.InferParameter(bool_param=True),
        "count": pb.InferParameter(int64_param=-(2**40)),
        "label": pb.InferParameter(string_param="caf\u00e9 \u2603"),
    }
    request = infer_request(grpc_client, "identity", ("x", "INT32", [1]), parameters=sent)
    reply = grpc_client.ModelInfer(request, timeout=10)

    def value(p: Any) -> tuple[str | None, Any]:
        kind = p.WhichOneof("parameter_choice")
        return kind, getattr(p, kind) if kind else None

    got = {k: value(reply.parameters[k]) for k in sent if k in reply.parameters}
    assert got == {k: value(p) for k, p in sent.items()}, "request parameters not echoed"


def test_infer_requested_output_subset(grpc_client: Client, need, deviation) -> None:
    need("identity")
    pb = grpc_client.pb
    request = infer_request(
        grpc_client,
        "identity",
        ("a", "INT32", [1, 2]),
        ("b", "FP32", [0.5, -2.0]),
        outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="b")],
    )
    reply = grpc_client.ModelInfer(request, timeout=10)
    assert_echo(reply, "b", "FP32", [0.5, -2.0])
    extra = [o.name for o in reply.outputs if o.name != "b"]
    if extra:
        deviation(f"outputs not asked for came back too: {extra}")


# -- ModelInfer: errors --
def test_infer_unknown_model(grpc_client: Client, deviation, live) -> None:
    request = infer_request(grpc_client, "no-such-model", ("x", "INT32", [1]))
    _, error = attempt(grpc_client.ModelInfer, request)
    expect_client_error(error, deviation, "ModelInfer on an unknown model")
    still_live(grpc_client, live)


def test_infer_invalid_datatype(grpc_client: Client, need, deviation, live) -> None:
    need("identity")
    request = infer_request(grpc_client, "identity", ("x", "FP32", [1.0, 2.0]))
    request.inputs[0].datatype = "FLOAT32"
    _, error = attempt(grpc_client.ModelInfer, request)
    expect_client_error(
        error, deviation, "datatype 'FLOAT32'", preferred=grpc.StatusCode.INVALID_ARGUMENT
    )
    still_live(grpc_client, live)


@pytest.mark.parametrize("raw", [False, True], ids=["typed", "raw"])
def test_infer_contents_do_not_match_shape(
    grpc_client: Client, need, deviation, live, raw: bool
) -> None:
    """Shape [2, 3] with 5 FP32 values. INVALID_ARGUMENT is right. A server that accepts it
    without checking hands the tensor on as it is: if identity's answer is exactly what
    was sent, nothing was lost or made up (a deviation: no validation); a padded, cut or
    otherwise changed answer fails, as do UNKNOWN/INTERNAL."""
    need("identity")
    values = [1.0, 2.0, 3.0, 4.0, 5.0]
    request = infer_request(grpc_client, "identity", ("x", "FP32", values), raw=raw)
    request.inputs[0].shape[:] = [2, 3]
    reply, error = attempt(grpc_client.ModelInfer, request)
    what = "5 values in a [2, 3] tensor"
    if error is None:
        out, got = output(reply, "x")
        assert (list(out.shape), got) == ([2, 3], values), f"{what}: accepted and changed"
        deviation(f"{what}: accepted (OK) and echoed as sent, not INVALID_ARGUMENT")
    else:
        expect_client_error(error, deviation, what, preferred=grpc.StatusCode.INVALID_ARGUMENT)
    still_live(grpc_client, live)


def test_infer_model_error(grpc_client: Client, need, deviation, live) -> None:
    """fail-mid-stream's unary predict raises."""
    need("fail-mid-stream")
    request = infer_request(grpc_client, "fail-mid-stream", ("n", "INT64", [2]))
    _, error = attempt(grpc_client.ModelInfer, request)
    expect_model_error(error, deviation, "ModelInfer on a model that raised")
    still_live(grpc_client, live)


@pytest.mark.parametrize("mib", [5, 70])
def test_infer_large_message(grpc_client: Client, need, live, mib: int) -> None:
    """An FP32 tensor of ``mib`` MiB must round-trip exactly or be refused with
    RESOURCE_EXHAUSTED (servers' size limits differ: 4 MiB in grpc, 64 in streamwise)."""
    need("identity")
    data = np.random.default_rng(mib).random(mib * 2**20 // 4, dtype=np.float32)
    request = grpc_client.pb.ModelInferRequest(model_name="identity")
    request.inputs.add(name="x", datatype="FP32", shape=[1, data.size])
    request.raw_input_contents.append(data.astype("<f4").tobytes())
    reply, error = attempt(grpc_client.ModelInfer, request, timeout=120)
    del request
    if error is not None:
        assert code_of(error) == grpc.StatusCode.RESOURCE_EXHAUSTED, describe(error)
    else:
        names = [o.name for o in reply.outputs]
        assert names == ["x"], names
        assert list(reply.outputs[0].shape) == [1, data.size]
        if reply.raw_output_contents:  # compared as bytes: no list of millions of floats
            got = reply.raw_output_contents[0]
        else:
            got = np.array(reply.outputs[0].contents.fp32_contents, dtype="<f4").tobytes()
        assert got == data.astype("<f4").tobytes(), f"{mib} MiB of FP32 values changed"
    still_live(grpc_client, live)


# -- repository --
def test_repository_index(grpc_client: Client, served: set[str], deviation) -> None:
    if not served:
        pytest.skip("the target serves none of the reference models")

    def index(stub: Any, messages: Any) -> tuple[Any, Any]:
        return attempt(stub.RepositoryIndex, messages.RepositoryIndexRequest())

    problems = []
    for label, (reply, error) in on_repository_services(grpc_client, deviation, index).items():
        if error is not None:
            problems.append(f"{label}: {describe(error)}")
            continue
        states = {m.name: m.state for m in reply.models}
        wrong = {m: states.get(m) for m in sorted(served) if states.get(m) != "READY"}
        if wrong:
            problems.append(f"{label}: models not listed with state 'READY': {wrong}")
    assert not problems, "RepositoryIndex: " + "; ".join(problems)


@pytest.mark.parametrize("action", ["RepositoryModelLoad", "RepositoryModelUnload"])
def test_repository_unknown_model(grpc_client: Client, deviation, live, action: str) -> None:
    def change(stub: Any, messages: Any) -> tuple[Any, Any]:
        message = getattr(messages, action + "Request")(model_name="no-such-model")
        return attempt(getattr(stub, action), message)

    for label, (_, error) in on_repository_services(grpc_client, deviation, change).items():
        expect_client_error(error, deviation, f"{label}.{action} of an unknown model")
    still_live(grpc_client, live)


def change_model(client: Client, action: str, model: str) -> grpc.RpcError | None:
    """RepositoryModelLoad/Unload (``action``) of ``model`` on the first repository
    service that implements it; its error, None if OK."""
    for _, stub, messages in repository_services(client):
        request = getattr(messages, action + "Request")(model_name=model)
        _, error = attempt(getattr(stub, action), request, timeout=30)
        if error is None or code_of(error) != grpc.StatusCode.UNIMPLEMENTED:
            return error
    pytest.fail(f"{action} is UNIMPLEMENTED on every service")


def wait_ready(client: Client, model: str, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        reply, error = model_ready(client, model)
        if error is None and reply.ready:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


@pytest.mark.destructive
def test_repository_unload_and_load(grpc_client: Client, need) -> None:
    """Unload identity: it is gone (ModelReady false or NOT_FOUND/UNAVAILABLE, ModelInfer a
    clear error); load it: it answers again. Reloaded in any case."""
    need("identity")
    infer = infer_request(grpc_client, "identity", ("x", "INT32", [3]))
    gone = {grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE}
    problems = []
    try:
        error = change_model(grpc_client, "RepositoryModelUnload", "identity")
        assert error is None, f"unload identity: {describe(error)}"
        reply, error = model_ready(grpc_client, "identity")
        if error is None and reply.ready:
            problems.append("ModelReady true after unload")
        elif error is not None and code_of(error) not in gone:
            problems.append(f"ModelReady after unload: {describe(error)}")
        _, error = attempt(grpc_client.ModelInfer, infer)
        if error is None or code_of(error) not in CLIENT_ERRORS | gone:
            problems.append(f"ModelInfer after unload: {describe(error)}")
        error = change_model(grpc_client, "RepositoryModelLoad", "identity")
        assert error is None, f"load identity: {describe(error)}"
        assert wait_ready(grpc_client, "identity"), "identity not ready 10 s after load"
        assert_echo(grpc_client.ModelInfer(infer, timeout=10), "x", "INT32", [3])
    finally:
        if not wait_ready(grpc_client, "identity", timeout=0):
            change_model(grpc_client, "RepositoryModelLoad", "identity")
            wait_ready(grpc_client, "identity")
    assert not problems, "; ".join(problems)
