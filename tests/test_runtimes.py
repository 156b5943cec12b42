"""The model-file runtimes (streamwise.runtimes) served as MLServer users configure them:
small models trained here on scikit-learn's iris data, saved in each format, served from
MLServer-style model-settings by one server, and asked over REST (httpx) and gRPC (a stock
grpcio stub); the answers must be what the library itself predicts on the same rows."""

from __future__ import annotations

import concurrent.futures
import json
import pathlib
import pickle
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import numpy as np
import pytest

joblib = pytest.importorskip("joblib")
pd = pytest.importorskip("pandas")
sklearn = pytest.importorskip("sklearn")
sklearn_datasets = pytest.importorskip("sklearn.datasets")
sklearn_tree = pytest.importorskip("sklearn.tree")
xgb = pytest.importorskip("xgboost")
lgb = pytest.importorskip("lightgbm")
pytest.importorskip("onnxruntime")
skl2onnx = pytest.importorskip("skl2onnx")

from streamwise import ModelSettings  # noqa: E402
from streamwise.codecs import NumpyCodec  # noqa: E402
from streamwise.errors import ModelLoadError  # noqa: E402
from streamwise.runtime.loading import import_implementation  # noqa: E402
from streamwise.runtimes._files import model_path  # noqa: E402
from streamwise.runtimes.sklearn import SKLearnModel  # noqa: E402
from streamwise.types import InferenceRequest, InferenceResponse  # noqa: E402
from tests.support import served_in_subprocess  # noqa: E402
from tests.support.estimators import RecordsBatches, WaitsForFile  # noqa: E402
from tests.support.grpc_stubs import from_pb2, load_stubs, to_pb2  # noqa: E402

X, Y = sklearn_datasets.load_iris(return_X_y=True)
ROWS = X[::10]  # 15 rows, every class
COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@dataclass
class Case:
    model: str
    output: str | None  # the output asked for; None: the runtime's default
    expected: Callable[[], Any]  # what the library predicts on ROWS
    outputs: tuple[str, ...] = ()  # the output names of the response


def write_model(root: pathlib.Path, name: str, settings: dict[str, Any]) -> pathlib.Path:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model-settings.json").write_text(json.dumps({"name": name, **settings}))
    return folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[pathlib.Path, dict[str, Case]]:
    """The repository, and what each served model must answer. Trees and few rounds on one
    thread: each trains in milliseconds."""
    root = tmp_path_factory.mktemp("runtimes")
    cases: dict[str, Case] = {}

    tree = sklearn_tree.DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, Y)
    folder = write_model(root, "iris-joblib", {
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib", "version": "v1"},
    })  # fmt: skip
    joblib.dump(tree, folder / "model.joblib")
    cases["joblib-predict"] = Case("iris-joblib", None, lambda: tree.predict(ROWS), ("predict",))
    cases["joblib-proba"] = Case(
        "iris-joblib", "predict_proba", lambda: tree.predict_proba(ROWS), ("predict_proba",)
    )

    regressor = sklearn_tree.DecisionTreeRegressor(max_depth=3, random_state=0).fit(X, Y * 1.5)
    folder = write_model(root, "iris-pickle", {"implementation": "mlserver_sklearn.SKLearnModel"})
    with open(folder / "model.pkl", "wb") as f:  # no uri: found in the model's folder
        pickle.dump(regressor, f)
    cases["pickle-predict"] = Case("iris-pickle", None, lambda: regressor.predict(ROWS))

    frame = pd.DataFrame(X, columns=COLUMNS)
    named = sklearn_tree.DecisionTreeClassifier(max_depth=2, random_state=0).fit(frame, Y)
    folder = write_model(root, "iris-frame", {
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./clf.joblib", "extra": {"predict_fn": "predict_proba"}},
    })  # fmt: skip
    joblib.dump(named, folder / "clf.joblib")
    rows_frame = pd.DataFrame(ROWS, columns=COLUMNS)
    cases["frame-default-fn"] = Case(
        "iris-frame", None, lambda: named.predict_proba(rows_frame), ("predict_proba",)
    )

    classifier = xgb.XGBClassifier(n_estimators=5, max_depth=2, n_jobs=1).fit(X, Y)
    folder = write_model(root, "xgb-json", {
        "implementation": "mlserver_xgboost.XGBoostModel", "parameters": {"uri": "./model.json"},
    })  # fmt: skip
    classifier.save_model(folder / "model.json")
    cases["xgb-json-predict"] = Case("xgb-json", None, lambda: classifier.predict(ROWS))
    cases["xgb-json-proba"] = Case(
        "xgb-json", "predict_proba", lambda: classifier.predict_proba(ROWS)
    )

    params = {"objective": "multi:softprob", "num_class": 3, "max_depth": 2, "nthread": 1}
    booster = xgb.train(params, xgb.DMatrix(X, label=Y), num_boost_round=5)
    folder = write_model(root, "xgb-ubj", {"implementation": "mlserver_xgboost.XGBoostModel"})
    booster.save_model(folder / "model.ubj")  # no uri: model.ubj, a well-known name
    cases["xgb-ubj-booster"] = Case("xgb-ubj", None, lambda: booster.predict(xgb.DMatrix(ROWS)))

    lgb_params = {"objective": "multiclass", "num_class": 3, "num_leaves": 4, "verbose": -1}
    lgb_booster = lgb.train({**lgb_params, "num_threads": 1}, lgb.Dataset(X, label=Y), 5)
    folder = write_model(root, "lgb", {
        "implementation": "mlserver_lightgbm.LightGBMModel", "parameters": {"uri": "model.txt"},
    })  # fmt: skip
    lgb_booster.save_model(str(folder / "model.txt"))
    cases["lgb-predict"] = Case("lgb", None, lambda: lgb_booster.predict(ROWS), ("predict",))

    onnx_tree = sklearn_tree.DecisionTreeClassifier(max_depth=3, random_state=1).fit(X, Y)
    folder = write_model(
        root, "iris-onnx", {"implementation": "streamwise.runtimes.onnx.OnnxModel"}
    )
    onnx_model = skl2onnx.to_onnx(onnx_tree, X[:1].astype(np.float32))  # ZipMap'd probabilities
    (folder / "model.onnx").write_bytes(onnx_model.SerializeToString())
    cases["onnx-label"] = Case(
        "iris-onnx", "output_label", lambda: onnx_tree.predict(ROWS), ("output_label",)
    )
    cases["onnx-probability"] = Case(
        "iris-onnx", "output_probability", lambda: onnx_tree.predict_proba(ROWS)
    )

    folder = write_model(root, "iris-batched", {
        "implementation": "mlserver_sklearn.SKLearnModel",
        "max_batch_size": 16, "max_batch_time": 0.5,
    })  # fmt: skip
    joblib.dump(RecordsBatches(tree, root / "batches.log"), folder / "model.joblib")

    folder = write_model(root, "blocking", {"implementation": "mlserver_sklearn.SKLearnModel"})
    joblib.dump(WaitsForFile(root / "release"), folder / "model.joblib")

    # failures: each FAILED with why, the rest serve
    write_model(root, "missing-file", {
        "implementation": "mlserver_sklearn.SKLearnModel", "parameters": {"uri": "./nope.joblib"},
    })  # fmt: skip
    folder = write_model(root, "corrupt", {
        "implementation": "mlserver_xgboost.XGBoostModel", "parameters": {"uri": "./model.json"},
    })  # fmt: skip
    (folder / "model.json").write_text('{"learner": truncated')
    folder = write_model(root, "wrong-format", {
        "implementation": "mlserver_sklearn.SKLearnModel", "parameters": {"uri": "./model.txt"},
    })  # fmt: skip
    lgb_booster.save_model(str(folder / "model.txt"))  # LightGBM's text, given to scikit-learn
    return root, cases


@pytest.fixture(scope="module")
def server(trained: tuple[pathlib.Path, dict[str, Case]]) -> Iterator[tuple[int, int]]:
    with served_in_subprocess(trained[0]) as ports:
        yield ports


def cases() -> list[str]:
    return [
        "joblib-predict", "joblib-proba", "pickle-predict", "frame-default-fn",
        "xgb-json-predict", "xgb-json-proba", "xgb-ubj-booster", "lgb-predict",
        "onnx-label", "onnx-probability",
    ]  # fmt: skip


def request_for(case: Case, datatype: str = "FP64") -> InferenceRequest:
    dtype = np.float32 if datatype == "FP32" else np.float64
    outputs = [{"name": case.output}] if case.output else None
    if case.model == "iris-frame":  # one input per column, content type pd
        inputs = [
            {"name": name, "shape": [len(ROWS), 1], "datatype": datatype,
             "data": ROWS[:, i].astype(dtype).tolist()}
            for i, name in enumerate(COLUMNS)
        ]  # fmt: skip
        return InferenceRequest.model_validate(
            {"parameters": {"content_type": "pd"}, "inputs": inputs, "outputs": outputs}
        )
    inputs = [{"name": "input-0", "shape": list(ROWS.shape), "datatype": datatype,
               "data": ROWS.astype(dtype).ravel().tolist()}]  # fmt: skip
    return InferenceRequest.model_validate({"inputs": inputs, "outputs": outputs})


def check(case: Case, response: InferenceResponse) -> None:
    expected = np.asarray(case.expected())
    if case.outputs:
        assert [o.name for o in response.outputs] == list(case.outputs)
    [output] = response.outputs
    got = NumpyCodec.decode_output(output)
    assert got.shape == expected.shape
    if expected.dtype.kind == "f":
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    else:
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("name", cases())
def test_rest_predictions_are_the_librarys(
    name: str, trained: tuple[pathlib.Path, dict[str, Case]], server: tuple[int, int]
) -> None:
    case = trained[1][name]
    body = request_for(case).model_dump(mode="json", exclude_none=True)
    r = httpx.post(f"http://127.0.0.1:{server[0]}/v2/models/{case.model}/infer", json=body)
    assert r.status_code == 200, r.text
    response = InferenceResponse.model_validate(r.json())
    check(case, response)
    assert response.model_version == ("v1" if case.model == "iris-joblib" else None)


@pytest.mark.parametrize("name", cases())
def test_grpc_predictions_are_the_librarys(
    name: str, trained: tuple[pathlib.Path, dict[str, Case]], server: tuple[int, int]
) -> None:
    case = trained[1][name]
    _, pb2_grpc = load_stubs()
    with grpc.insecure_channel(f"127.0.0.1:{server[1]}") as channel:
        stub = pb2_grpc.GRPCInferenceServiceStub(channel)
        reply = stub.ModelInfer(to_pb2(request_for(case, "FP32"), case.model))
    check(case, from_pb2(reply))


def test_adaptive_batching_merges_rows_for_a_runtime(
    trained: tuple[pathlib.Path, dict[str, Case]], server: tuple[int, int]
) -> None:
    """One row a request, 15 clients at once (REST and gRPC), to a scikit-learn model with
    MLServer's batching settings: its ``predict`` sees batches of several rows, and each
    client gets the tree's prediction for its own row."""
    root, cases = trained
    tree = cases["joblib-predict"]

    def one(i: int) -> Any:
        row = ROWS[i : i + 1]
        request = InferenceRequest.model_validate({"inputs": [
            {"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": row.ravel().tolist()}
        ]})  # fmt: skip
        if i % 2:
            _, pb2_grpc = load_stubs()
            with grpc.insecure_channel(f"127.0.0.1:{server[1]}") as channel:
                stub = pb2_grpc.GRPCInferenceServiceStub(channel)
                response = from_pb2(stub.ModelInfer(to_pb2(request, "iris-batched")))
        else:
            url = f"http://127.0.0.1:{server[0]}/v2/models/iris-batched/infer"
            r = httpx.post(url, json=request.model_dump(mode="json", exclude_none=True))
            assert r.status_code == 200, r.text
            response = InferenceResponse.model_validate(r.json())
        [output] = response.outputs
        return NumpyCodec.decode_output(output)

    with concurrent.futures.ThreadPoolExecutor(len(ROWS)) as pool:
        answers = list(pool.map(one, range(len(ROWS))))
    for i, got in enumerate(answers):
        np.testing.assert_array_equal(got, tree.expected()[i : i + 1])
    sizes = [int(n) for n in (root / "batches.log").read_text().split()]
    assert sum(sizes) == len(ROWS)
    assert max(sizes) > 1, sizes


def get(server: tuple[int, int], path: str) -> Any:
    r = httpx.get(f"http://127.0.0.1:{server[0]}{path}")
    assert r.status_code == 200, r.text
    return r.json()


def tensors(items: list[dict[str, Any]]) -> list[tuple[str, str, list[int]]]:
    return [(t["name"], t["datatype"], t["shape"]) for t in items]


def test_metadata_comes_from_the_model_file(server: tuple[int, int]) -> None:
    onnx = get(server, "/v2/models/iris-onnx")
    assert tensors(onnx["inputs"]) == [("X", "FP32", [-1, 4])]
    assert tensors(onnx["outputs"]) == [
        ("output_label", "INT64", [-1]),
        ("output_probability", "FP32", [-1, -1]),
    ]
    tree = get(server, "/v2/models/iris-joblib/versions/v1")
    assert tensors(tree["inputs"]) == [("input-0", "FP64", [-1, 4])]
    assert tensors(tree["outputs"]) == [
        ("predict", "INT64", [-1]),
        ("predict_proba", "FP64", [-1, 3]),
    ]
    frame = get(server, "/v2/models/iris-frame")
    assert [t["name"] for t in frame["inputs"]] == COLUMNS
    assert tensors(get(server, "/v2/models/xgb-json")["outputs"]) == [
        ("predict", "INT64", [-1]),
        ("predict_proba", "FP32", [-1, 3]),
    ]
    assert tensors(get(server, "/v2/models/lgb")["inputs"]) == [("input-0", "FP64", [-1, 4])]
    assert tensors(get(server, "/v2/models/lgb")["outputs"]) == [("predict", "FP64", [-1, 3])]


def test_failed_models_say_why_and_the_others_serve(
    trained: tuple[pathlib.Path, dict[str, Case]], server: tuple[int, int]
) -> None:
    root = trained[0]
    r = httpx.post(f"http://127.0.0.1:{server[0]}/v2/repository/index", json={})
    index = {m["name"]: m for m in r.json()}
    assert {n for n, m in index.items() if m["state"] == "READY"} == {
        "iris-joblib", "iris-pickle", "iris-frame", "xgb-json", "xgb-ubj", "lgb", "iris-onnx",
        "blocking", "iris-batched",
    }  # fmt: skip

    missing = index["missing-file"]
    assert missing["state"] == "FAILED"
    assert missing["reason"] == (
        f"model 'missing-file': model file not found: {root / 'missing-file' / 'nope.joblib'} "
        "(parameters.uri './nope.joblib')"
    )
    corrupt = index["corrupt"]
    assert corrupt["state"] == "FAILED"
    assert corrupt["reason"].startswith(
        f"model 'corrupt': cannot load {root / 'corrupt' / 'model.json'} as an XGBoost model "
        f"(JSON / UBJ) (xgboost {xgb.__version__}): ValueError: "
    )
    assert "Stack trace" not in corrupt["reason"]
    wrong = index["wrong-format"]
    assert wrong["state"] == "FAILED"
    assert wrong["reason"].startswith(
        f"model 'wrong-format': cannot load {root / 'wrong-format' / 'model.txt'} as a "
        f"scikit-learn model (joblib / pickle) (scikit-learn {sklearn.__version__}): "
    )

    # a request to a failed model: 503 with the reason; the others answer
    body = request_for(trained[1]["joblib-predict"]).model_dump(mode="json", exclude_none=True)
    r = httpx.post(f"http://127.0.0.1:{server[0]}/v2/models/missing-file/infer", json=body)
    assert r.status_code == 503
    assert r.json() == {"error": f"model missing-file is not ready (FAILED): {missing['reason']}"}
    r = httpx.post(f"http://127.0.0.1:{server[0]}/v2/models/iris-joblib/infer", json=body)
    assert r.status_code == 200


def test_a_model_computing_leaves_the_server_serving(
    trained: tuple[pathlib.Path, dict[str, Case]], server: tuple[int, int]
) -> None:
    """predict runs in a worker thread: while one blocks in its computation, the event loop
    answers the other models (on the loop, this second request would wait for the first)."""
    release = trained[0] / "release"
    url = f"http://127.0.0.1:{server[0]}/v2/models"
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        blocked = pool.submit(
            httpx.post, f"{url}/blocking/infer", json={"inputs": [ONE_ROW]}, timeout=60
        )
        started = pathlib.Path(str(release) + ".started")
        for _ in range(3000):  # until the model's thread is in predict (at most 30 s)
            if started.exists() or blocked.done():
                break
            time.sleep(0.01)
        assert started.exists() and not blocked.done()
        try:
            r = httpx.post(f"{url}/iris-joblib/infer", json={"inputs": [ONE_ROW]}, timeout=60)
            assert r.status_code == 200 and not blocked.done()
        finally:
            release.touch()
        r = blocked.result()
    assert r.status_code == 200 and r.json()["outputs"][0]["data"] == [0.0]


def infer_error(server: tuple[int, int], model: str, body: dict[str, Any]) -> tuple[int, Any]:
    r = httpx.post(f"http://127.0.0.1:{server[0]}/v2/models/{model}/infer", json=body)
    return r.status_code, r.json()


ONE_ROW = {"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}
THREE_FEATURES = {"name": "input-0", "shape": [1, 3], "datatype": "FP64", "data": [5.1, 3.5, 1.4]}


def test_requests_a_model_cannot_take_get_400_with_why(server: tuple[int, int]) -> None:
    assert infer_error(server, "iris-pickle", {"inputs": [ONE_ROW], "outputs": [{"name": "predict_proba"}]}) == (
        400, {"error": "DecisionTreeRegressor models do not support 'predict_proba'"},
    )  # fmt: skip
    assert infer_error(server, "iris-joblib", {"inputs": [ONE_ROW], "outputs": [{"name": "decision"}]}) == (
        400, {"error": "SKLearnModel only supports 'predict', 'predict_proba', 'transform' as outputs ('decision' was requested)"},
    )  # fmt: skip
    status, body = infer_error(server, "iris-joblib", {"inputs": [THREE_FEATURES]})
    assert status == 400 and body["error"].startswith(
        "model 'iris-joblib': ValueError: X has 3 features"
    )
    status, body = infer_error(server, "xgb-json", {"inputs": [THREE_FEATURES]})
    assert status == 400 and "Feature shape mismatch, expected: 4, got 3" in body["error"]
    status, body = infer_error(server, "lgb", {"inputs": [THREE_FEATURES]})
    assert status == 400 and "The number of features in data (3)" in body["error"]
    status, body = infer_error(server, "iris-onnx", {"inputs": [THREE_FEATURES]})
    assert status == 400 and body["error"].startswith("model 'iris-onnx': InvalidArgument")
    text = {"name": "input-0", "shape": [1, 1], "datatype": "BYTES", "data": ["petals"]}
    assert infer_error(server, "iris-onnx", {"inputs": [text]}) == (
        400, {"error": "model 'iris-onnx': input 'X' takes FP32, which object data does not convert to"},
    )  # fmt: skip
    two = {"inputs": [ONE_ROW, {**ONE_ROW, "name": "input-1"}]}
    assert infer_error(server, "lgb", two) == (
        400, {"error": 'LightGBMModel takes one input tensor, or one input per column with the request\'s content type "pd" (2 inputs were given)'},
    )  # fmt: skip
    # and the models still serve
    r = httpx.post(
        f"http://127.0.0.1:{server[0]}/v2/models/iris-onnx/infer", json={"inputs": [ONE_ROW]}
    )
    assert r.status_code == 200 and [o["name"] for o in r.json()["outputs"]] == [
        "output_label",
        "output_probability",
    ]


def test_a_missing_extra_fails_its_models_with_the_pip_install(
    trained: tuple[pathlib.Path, dict[str, Case]],
) -> None:
    """A server where xgboost and pandas are not importable: the XGBoost models are FAILED
    with the file, the format and the pip install; the others serve; a request in the
    ``pd`` content type gets 501 and the pip install."""
    root = trained[0]
    with served_in_subprocess(root, hide=["xgboost", "pandas"]) as (http_port, _):
        r = httpx.post(f"http://127.0.0.1:{http_port}/v2/repository/index", json={})
        index = {m["name"]: m for m in r.json()}
        assert index["xgb-json"]["state"] == "FAILED"
        assert index["xgb-json"]["reason"] == (
            f"model 'xgb-json': cannot load {root / 'xgb-json' / 'model.json'} (an XGBoost model "
            "(JSON / UBJ)): xgboost is not installed (import of xgboost halted; None in "
            'sys.modules): pip install "streamwise[xgboost]"'
        )
        assert index["xgb-ubj"]["state"] == "FAILED"
        assert index["lgb"]["state"] == index["iris-onnx"]["state"] == "READY"
        body = {"inputs": [ONE_ROW]}
        r = httpx.post(f"http://127.0.0.1:{http_port}/v2/models/lgb/infer", json=body)
        assert r.status_code == 200
        frame = request_for(trained[1]["frame-default-fn"]).model_dump(
            mode="json", exclude_none=True
        )
        r = httpx.post(f"http://127.0.0.1:{http_port}/v2/models/iris-frame/infer", json=frame)
        assert (r.status_code, r.json()) == (501, {
            "error": 'the \'pd\' content type (PandasCodec) needs pandas, which is not installed: pip install "streamwise[pandas]"'
        })  # fmt: skip


# -- where the model file is: MLServer's get_model_uri --


def settings_in(folder: pathlib.Path, **parameters: Any) -> ModelSettings:
    return ModelSettings.model_validate({
        "name": "m", "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": parameters or None, "source": folder / "model-settings.json",
    })  # fmt: skip


def test_model_path_is_found_as_mlserver_finds_it(tmp_path: pathlib.Path) -> None:
    wellknown = SKLearnModel.wellknown
    (tmp_path / "model.pkl").write_bytes(b"")
    assert model_path(settings_in(tmp_path), wellknown) == tmp_path / "model.pkl"
    (tmp_path / "model.joblib").write_bytes(b"")  # first in MLServer's list
    assert model_path(settings_in(tmp_path), wellknown) == tmp_path / "model.joblib"
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "model.pickle").write_bytes(b"")
    assert (
        model_path(settings_in(tmp_path, uri="sub"), wellknown) == tmp_path / "sub" / "model.pickle"
    )
    assert (
        model_path(settings_in(tmp_path, uri="./sub/../model.pkl"), wellknown)
        == tmp_path / "model.pkl"
    )
    assert (
        model_path(settings_in(tmp_path, uri=f"file://{tmp_path}/model.pkl"), wellknown)
        == tmp_path / "model.pkl"
    )
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        ModelLoadError,
        match=r"no model file in the folder .*empty \(looked for model.joblib, model.pickle, model.pkl\)",
    ):
        model_path(settings_in(tmp_path, uri="empty"), wellknown)
    with pytest.raises(ModelLoadError, match="only local files are served"):
        model_path(settings_in(tmp_path, uri="s3://bucket/model.joblib"), wellknown)


def test_a_model_from_the_environment_finds_its_file_in_the_repository(
    tmp_path: pathlib.Path,
) -> None:
    """KServe's MLServer environment: MLSERVER_MODEL_URI relative to the repository."""
    from streamwise.settings import model_settings_from_environment

    (tmp_path / "model.bst").write_bytes(b"")
    environ = {
        "MLSERVER_MODEL_IMPLEMENTATION": "mlserver_lightgbm.LightGBMModel",
        "MLSERVER_MODEL_URI": ".",
    }
    settings = model_settings_from_environment(tmp_path, environ=environ)
    assert settings is not None
    assert model_path(settings, ("model.bst", "model.txt")) == tmp_path.resolve() / "model.bst"


def test_mlservers_runtime_names_are_ours(tmp_path: pathlib.Path) -> None:
    from streamwise.runtimes.lightgbm import LightGBMModel
    from streamwise.runtimes.xgboost import XGBoostModel

    for implementation, cls in [
        ("mlserver_sklearn.SKLearnModel", SKLearnModel),
        ("mlserver_xgboost.XGBoostModel", XGBoostModel),
        ("mlserver_lightgbm.LightGBMModel", LightGBMModel),
    ]:
        settings = ModelSettings.model_validate({"name": "m", "implementation": implementation})
        assert import_implementation(settings) is cls


def test_runtimes_loading_at_once_do_not_deadlock_in_pythons_import_locks(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two models loading at once, each importing a package whose ``__init__`` imports the
    other's: Python's per-module import locks raise ``_DeadlockError`` in one thread (as
    lightgbm and scikit-learn did when a repository's models loaded at once); the runtimes
    import one at a time, and both models load."""
    import sys

    import trio

    from streamwise.runtimes._files import FileModel

    packages = {"sw_cycle_a": "sw_cycle_b.mod", "sw_cycle_b": "sw_cycle_a.mod"}
    for package, other in packages.items():
        (tmp_path / package).mkdir()
        (tmp_path / package / "mod.py").write_text("")
        # each thread holds its module's lock, then its package's, then wants the other's
        (tmp_path / package / "__init__.py").write_text(
            f"import time\ntime.sleep(0.5)\nimport {other}\n"
        )
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "model.bin").write_bytes(b"")

    def runtime(module: str) -> type[FileModel]:
        class Cyclic(FileModel):
            library = (module,)
            package = extra = module
            format = "nothing"

            def _load_file(self, path: pathlib.Path, *modules: Any) -> None:
                pass

        return Cyclic

    models = [
        runtime(f"{package}.mod")(settings_in(tmp_path, uri="model.bin")) for package in packages
    ]

    async def load_both() -> None:
        async with trio.open_nursery() as nursery:
            for model in models:
                nursery.start_soon(model.load)

    try:
        trio.run(load_both)
    finally:
        for name in [*packages, *packages.values()]:
            sys.modules.pop(name, None)
    assert [model.path for model in models] == [tmp_path / "model.bin"] * 2
