"""Deployment: the container image, the manifests of ``deploy/``, and the behaviours the
orchestrators rely on, proven here without a cluster or a container runtime.

- KServe's MLServer environment: the server started as our ClusterServingRuntime starts
  it (its args, its env with KServe's placeholders filled in), on a folder holding only a
  model's code, serves that model by name.
- The Dockerfile: its instructions are checked, and its ENTRYPOINT + CMD and its
  HEALTHCHECK are run (the same argv, ``/mnt/models`` replaced by a folder here).
- Seldon Core v2's agent: a model folder copied into the repository after start-up is
  loaded over gRPC ``RepositoryModelLoad``, served, listed READY, unloaded.
- The plain Kubernetes manifests are validated against the Kubernetes schemas
  (kubernetes-validate, offline), and so are the pod specs inside the KServe and Seldon
  resources; the fields of those custom resources are checked with PyYAML.
"""

from __future__ import annotations

import json
import os
import pathlib
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import grpc
import httpx
import kubernetes_validate
import pytest
import yaml

from streamwise.server import END_TIMEOUT_S
from streamwise.settings import Settings
from tests.support import StartServer, free_port
from tests.support.grpc_stubs import in_thread, load_stubs

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DOCKERFILE = ROOT / "Dockerfile"
KUBERNETES_VERSION = "1.33.0"  # the schemas the manifests are validated against
MODELS_DIR = "/mnt/models"

# A model's code alone, as a KServe storageUri would hold it: no model-settings.json.
ECHO_MODEL = """\
from streamwise import MLModel
from streamwise.codecs import StringCodec
from streamwise.types import InferenceResponse, ResponseOutput


class Echo(MLModel):
    async_backend = "trio"

    async def predict(self, payload):
        uri = self._settings.parameters.uri if self._settings.parameters else None
        return InferenceResponse(
            model_name=self.name,
            outputs=[
                *(
                    ResponseOutput(name=i.name, datatype=i.datatype, shape=i.shape, data=i.data)
                    for i in payload.inputs
                ),
                StringCodec.encode_output("uri", [str(uri)]),
            ],
        )
"""
ECHO_REQUEST = {"inputs": [{"name": "x", "datatype": "INT64", "shape": [2], "data": [4, 2]}]}


def documents(path: pathlib.Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def document(path: pathlib.Path) -> dict[str, Any]:
    [doc] = documents(path)
    return doc


def env_of(container: Mapping[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without any server or model setting of its own, this
    interpreter's folder first on PATH (``streamwise``, ``python``), and ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLSERVER_", "STREAMWISE_"))}
    env["STREAMWISE_METRICS_PORT"] = "0"  # not 8082: tests never take fixed ports
    env["PATH"] = f"{pathlib.Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    return {**env, **extra}


@contextmanager
def running(argv: list[str], env: Mapping[str, str], http_port: int) -> Iterator[str]:
    """``argv`` started with ``env``; its base URL once ``/v2/health/ready`` says 200.
    SIGTERM at the end, and it must exit 0."""
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=dict(env), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{http_port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"server exited early: {proc.stderr.read().decode()}")  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "server did not become ready"
            try:
                if httpx.get(f"{url}/v2/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 0, stderr.decode()


def check_echo(url: str, name: str, folder: pathlib.Path) -> None:
    assert httpx.get(f"{url}/v2/health/ready").status_code == 200
    assert httpx.get(f"{url}/v2/models/{name}/ready").status_code == 200
    reply = httpx.post(f"{url}/v2/models/{name}/infer", json=ECHO_REQUEST)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["model_name"] == name
    x, uri = body["outputs"]
    assert (x["name"], x["data"]) == ("x", [4, 2])
    assert uri["data"] == [str(folder)]  # MLSERVER_MODEL_URI reached parameters.uri


# -- KServe ------------------------------------------------------------------------------


def kserve_runtime() -> dict[str, Any]:
    return document(DEPLOY / "kserve" / "cluster-serving-runtime.yaml")


def kserve_service() -> dict[str, Any]:
    return document(DEPLOY / "kserve" / "inference-service.yaml")


def render_kserve(value: str, isvc: Mapping[str, Any]) -> str:
    """KServe's placeholders in a runtime's container, filled from the InferenceService."""
    meta = isvc["metadata"]
    value = value.replace("{{.Name}}", meta["name"])
    for key, label in meta.get("labels", {}).items():
        value = value.replace(f"{{{{.Labels.{key}}}}}", label)
    assert "{{" not in value, f"a placeholder this test does not fill: {value}"
    return value


def test_kserve_runtime_environment_serves_the_model_in_the_storage_folder(
    tmp_path: pathlib.Path,
) -> None:
    """The runtime's container as KServe runs it: its args, its env (placeholders filled
    from our InferenceService) and nothing else; /mnt/models is a folder here holding a
    model's code and no model-settings.json."""
    isvc = kserve_service()
    [container] = kserve_runtime()["spec"]["containers"]
    (tmp_path / "model.py").write_text(ECHO_MODEL)
    http_port, grpc_port = free_port(), free_port()

    def here(value: str) -> str:
        return render_kserve(value, isvc).replace(MODELS_DIR, str(tmp_path))

    env = {name: here(value) for name, value in env_of(container).items()}
    assert set(env) >= {"MLSERVER_MODEL_IMPLEMENTATION", "MLSERVER_MODEL_NAME"}
    env["MLSERVER_HTTP_PORT"], env["MLSERVER_GRPC_PORT"] = str(http_port), str(grpc_port)
    argv = [sys.executable, "-m", "streamwise", *map(here, container["args"])]
    with running(argv, clean_environment(**env), http_port) as url:
        check_echo(url, isvc["metadata"]["name"], tmp_path)


def test_kserve_manifests_fields() -> None:
    runtime, isvc = kserve_runtime(), kserve_service()
    assert runtime["apiVersion"] == "serving.kserve.io/v1alpha1"
    assert runtime["kind"] == "ClusterServingRuntime"
    spec = runtime["spec"]
    assert spec["protocolVersions"] == ["v2"]
    [container] = spec["containers"]
    assert container["name"] == "kserve-container"
    assert container["image"] == "streamwise:latest"  # the placeholder docs/deploy.md names
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8080, "h2c": 8081}  # KServe takes gRPC from a port named h2c
    defaults = Settings()  # KServe's scraping reads the runtime's annotations
    assert spec["annotations"]["prometheus.kserve.io/port"] == str(defaults.metrics_port)
    assert spec["annotations"]["prometheus.kserve.io/path"] == defaults.metrics_endpoint
    env = env_of(container)
    assert env["MLSERVER_HTTP_PORT"] == "8080" and env["MLSERVER_GRPC_PORT"] == "8081"
    assert env["MLSERVER_MODEL_IMPLEMENTATION"] == "{{.Labels.modelClass}}"
    assert env["MLSERVER_MODEL_NAME"] == "{{.Name}}"
    assert env["MLSERVER_MODEL_URI"] == MODELS_DIR
    assert container["args"] == ["serve", MODELS_DIR]
    assert container["securityContext"]["runAsNonRoot"] is True
    # not taken for MLServer by KServe: it would overwrite the modelClass label
    assert "serving.kserve.io/server-type" not in runtime["metadata"].get("annotations", {})

    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert isvc["kind"] == "InferenceService"
    model = isvc["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    formats = {f["name"] for f in spec["supportedModelFormats"]}
    assert model["modelFormat"]["name"] in formats
    assert model["protocolVersion"] == "v2"
    assert model["storageUri"]
    assert isvc["metadata"]["labels"]["modelClass"].count(".") >= 1  # module.Class
    annotations = isvc["metadata"]["annotations"]
    assert annotations["serving.kserve.io/deploymentMode"] == "RawDeployment"  # two ports


# -- the Dockerfile ----------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of each instruction, continuation lines joined."""
    lines: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continuation"
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def instruction(name: str) -> list[str]:
    return [args for kind, args in dockerfile() if kind == name]


def environment_of_image() -> dict[str, str]:
    env: dict[str, str] = {}
    for args in instruction("ENV"):
        for pair in shlex.split(args):
            key, _, value = pair.partition("=")
            env[key] = value
    return env


def healthcheck_argv() -> list[str]:
    [args] = instruction("HEALTHCHECK")
    _, _, command = args.partition(" CMD ")
    argv = json.loads(command)
    assert isinstance(argv, list) and argv[0] == "python"
    return [sys.executable, *argv[1:]]


def image_argv() -> list[str]:
    [entrypoint], [cmd] = instruction("ENTRYPOINT"), instruction("CMD")
    return [*json.loads(entrypoint), *json.loads(cmd)]


def test_the_dockerfile_instructions() -> None:
    [base] = instruction("FROM")
    assert base.startswith("python:3.1") and base.endswith("-slim")
    [user] = instruction("USER")
    assert user.split(":")[0] not in ("root", "0") and user.split(":")[0].isdigit()
    [expose] = instruction("EXPOSE")
    defaults = Settings()
    ports = [defaults.http_port, defaults.grpc_port, defaults.metrics_port]
    assert expose.split() == [str(port) for port in ports]
    assert environment_of_image()["STREAMWISE_HOST"] == "0.0.0.0"
    assert image_argv() == ["streamwise", "serve", MODELS_DIR]
    [extras] = instruction("ARG")
    assert extras == 'EXTRAS=""'  # none unless the build asks
    [install] = [args for args in instruction("RUN") if "pip install" in args]
    assert 'pip install ".${EXTRAS:+[$EXTRAS]}"' in install
    assert "/v2/health/ready" in " ".join(healthcheck_argv())
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignored and "!src/" in ignored


@pytest.mark.parametrize(
    ("extras", "wanted", "openmp"),
    [("", ".", False), ("sklearn,xgboost", ".[sklearn,xgboost]", False),
     ("onnx,lightgbm", ".[onnx,lightgbm]", True)],
)  # fmt: skip
def test_the_install_line_with_extras(extras: str, wanted: str, openmp: bool) -> None:
    """The image's install step, run by a POSIX shell (the image's /bin/sh is dash) with
    ``apt-get`` and ``pip`` replaced by echo: the extras asked for, and OpenMP for
    LightGBM only."""
    [install] = [args for args in instruction("RUN") if "pip install" in args]
    script = 'apt_get() { echo apt-get "$@"; }; pip() { echo pip "$@"; }; ' + install.replace(
        "apt-get", "apt_get"
    ).replace("rm -rf", "echo rm -rf").replace("cd /", "true")
    done = subprocess.run(
        ["sh", "-c", script], env={"EXTRAS": extras, "PATH": os.environ["PATH"]},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert f"pip install {wanted}\n" in done.stdout
    assert ("libgomp1" in done.stdout) == openmp


def test_the_images_command_and_healthcheck_work(tmp_path: pathlib.Path) -> None:
    """The image's ENTRYPOINT + CMD, /mnt/models replaced by a folder holding a model, with
    the image's ENV; then its HEALTHCHECK: healthy while the server serves, unhealthy once
    it has stopped."""
    folder = tmp_path / "echo"
    folder.mkdir()
    (folder / "model.py").write_text(ECHO_MODEL)
    (folder / "model-settings.json").write_text(
        json.dumps(
            {"name": "echo", "implementation": "model.Echo", "parameters": {"uri": str(folder)}}
        )
    )
    http_port = free_port()
    env = clean_environment(
        **environment_of_image(),
        STREAMWISE_HTTP_PORT=str(http_port),
        STREAMWISE_GRPC_PORT=str(free_port()),
    )
    streamwise, *args = image_argv()
    program = shutil.which(streamwise, path=env["PATH"])
    assert program is not None
    argv = [program, *(arg.replace(MODELS_DIR, str(tmp_path)) for arg in args)]
    with running(argv, env, http_port) as url:
        check_echo(url, "echo", folder)
        healthy = subprocess.run(healthcheck_argv(), env=env, capture_output=True, timeout=30)
        assert healthy.returncode == 0, healthy.stderr.decode()
    unhealthy = subprocess.run(healthcheck_argv(), env=env, capture_output=True, timeout=30)
    assert unhealthy.returncode != 0


# -- Seldon Core v2 ----------------------------------------------------------------------


def seldon(name: str) -> dict[str, Any]:
    return document(DEPLOY / "seldon" / f"{name}.yaml")


def containers_of(server_config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in server_config["spec"]["podSpec"]["containers"]}


def test_seldon_manifests_fields() -> None:
    config, server, model = seldon("server-config"), seldon("server"), seldon("model")
    for doc, kind in ((config, "ServerConfig"), (server, "Server"), (model, "Model")):
        assert (doc["apiVersion"], doc["kind"]) == ("mlops.seldon.io/v1alpha1", kind)
    assert server["spec"]["serverConfig"] == config["metadata"]["name"]
    containers = containers_of(config)
    ours, agent = containers["streamwise"], containers["agent"]
    assert ours["image"] == "streamwise:latest"
    env, agent_env = env_of(ours), env_of(agent)
    # the agent finds the server where the server listens
    assert env["MLSERVER_HTTP_PORT"] == agent_env["SELDON_SERVER_HTTP_PORT"]
    assert env["MLSERVER_GRPC_PORT"] == agent_env["SELDON_SERVER_GRPC_PORT"]
    assert env["MLSERVER_LOAD_MODELS_AT_STARTUP"] == "false"
    assert agent_env["SELDON_SERVER_TYPE"] == "mlserver"
    # the server serves the folder the agent writes models into
    [mount] = [m for m in agent["volumeMounts"] if m["name"] == "streamwise-models"]
    assert ours["args"] == ["serve", f"{mount['mountPath']}/models"]
    # with no model loaded a server is live, not ready: Seldon's probes ask for live
    assert ours["readinessProbe"]["httpGet"]["path"] == "/v2/health/live"
    capabilities = set(agent_env["SELDON_SERVER_CAPABILITIES"].split(","))
    assert set(model["spec"]["requirements"]) <= capabilities
    assert model["spec"]["storageUri"]
    assert config["spec"]["podSpec"]["securityContext"]["runAsNonRoot"] is True


async def test_a_model_copied_in_after_startup_loads_over_grpc_as_seldons_agent_does(
    start_server: StartServer, tmp_path: pathlib.Path
) -> None:
    """Seldon's agent: the server starts on an empty repository (models not loaded at
    startup), rclone copies a model folder in, the agent writes the model's name and
    version into its model-settings.json and calls RepositoryModelLoad on
    ``inference.GRPCInferenceService``; inference; RepositoryIndex lists it READY; unload."""
    repository = tmp_path / "models"
    repository.mkdir()
    info = await start_server(repository, load_models_at_startup=False)
    pb2, _ = load_stubs()

    def index(stub: Any) -> list[tuple[str, str, str]]:
        reply = stub.RepositoryIndex(pb2.RepositoryIndexRequest())
        return [(m.name, m.version, m.state) for m in reply.models]

    assert await in_thread(info, index) == []

    folder = repository / "echo_1"  # the agent's <model>_<version> name
    folder.mkdir()
    (folder / "model.py").write_text(ECHO_MODEL)
    # what the agent writes (UpdateNameAndVersion): every field it knows, zero or not
    (folder / "model-settings.json").write_text(
        json.dumps(
            {
                "name": "echo_1",
                "parallel_workers": 0,
                "implementation": "model.Echo",
                "parameters": {"uri": "./", "version": "1", "extra": {}},
            }
        )
    )

    def load_and_infer(stub: Any) -> Any:
        stub.RepositoryModelLoad(pb2.RepositoryModelLoadRequest(model_name="echo_1"))
        tensor = pb2.InferTensorContents(int64_contents=[4, 2])
        request = pb2.ModelInferRequest(
            model_name="echo_1",
            inputs=[
                pb2.ModelInferRequest.InferInputTensor(
                    name="x", datatype="INT64", shape=[2], contents=tensor
                )
            ],
        )
        return stub.ModelInfer(request)

    reply = await in_thread(info, load_and_infer)
    assert reply.model_name == "echo_1" and reply.model_version == "1"
    assert list(reply.outputs[0].contents.int64_contents) == [4, 2]
    assert await in_thread(info, index) == [("echo_1", "1", "READY")]

    def unload(stub: Any) -> None:
        stub.RepositoryModelUnload(pb2.RepositoryModelUnloadRequest(model_name="echo_1"))

    await in_thread(info, unload)
    assert await in_thread(info, index) == [("echo_1", "1", "UNAVAILABLE")]

    # the agent deletes the folder; a model no longer there is not found
    shutil.rmtree(folder)

    def load_gone(stub: Any) -> grpc.StatusCode:
        with pytest.raises(grpc.RpcError) as raised:
            stub.RepositoryModelLoad(pb2.RepositoryModelLoadRequest(model_name="echo_1"))
        return raised.value.code()

    assert await in_thread(info, load_gone) == grpc.StatusCode.NOT_FOUND
    assert await in_thread(info, index) == []


async def test_load_rereads_a_changed_model_settings_and_passes_over_another_broken_one(
    start_server: StartServer, tmp_path: pathlib.Path
) -> None:
    """The agent rewrites model-settings.json before a load: the load takes the file as it
    is then. A broken file of another model does not stop the load; the model's own
    broken file fails it, naming the file."""
    folder = tmp_path / "echo"
    folder.mkdir()
    (folder / "model.py").write_text(ECHO_MODEL)
    settings = folder / "model-settings.json"
    settings.write_text(json.dumps({"name": "echo", "implementation": "model.Nope"}))
    info = await start_server(tmp_path)
    async with httpx.AsyncClient(base_url=info.http_url) as client:
        ready = await client.get("/v2/models/echo/ready")
        assert ready.status_code == 503 and "FAILED" in ready.text

        settings.write_text(json.dumps({"name": "echo", "implementation": "model.Echo"}))
        (tmp_path / "other").mkdir()
        (tmp_path / "other" / "model-settings.json").write_text("{not json")
        loaded = await client.post("/v2/repository/models/echo/load")
        assert loaded.status_code == 200, loaded.text
        assert (await client.get("/v2/models/echo/ready")).status_code == 200

        settings.write_text("{not json either")
        await client.post("/v2/repository/models/echo/unload")
        refused = await client.post("/v2/repository/models/echo/load")
        assert refused.status_code == 500 and "not valid JSON" in refused.json()["error"]


# -- plain Kubernetes --------------------------------------------------------------------


def kubernetes_manifests() -> list[tuple[pathlib.Path, dict[str, Any]]]:
    paths = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
    assert paths
    return [(path, doc) for path in paths for doc in documents(path)]


def validate(resource: dict[str, Any], where: str) -> None:
    """Valid against the Kubernetes schemas of KUBERNETES_VERSION, strictly (no unknown
    field); a kind without a schema fails too."""
    try:
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        pytest.fail(f"{where}: {path}: {exc.message}")


def pod(spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "check"}, "spec": spec}


def test_the_kubernetes_manifests_are_valid() -> None:
    kinds = set()
    for path, resource in kubernetes_manifests():
        validate(resource, path.name)
        kinds.add(resource["kind"])
    assert kinds >= {"Deployment", "Service", "HorizontalPodAutoscaler"}


def test_the_pod_specs_inside_kserve_and_seldon_resources_are_valid() -> None:
    validate(pod({"containers": kserve_runtime()["spec"]["containers"]}), "kserve runtime")
    validate(pod(seldon("server-config")["spec"]["podSpec"]), "seldon ServerConfig")


def of_kind(kind: str) -> dict[str, Any]:
    [resource] = [r for _, r in kubernetes_manifests() if r["kind"] == kind]
    return resource


def test_the_deployment_probes_drains_and_runs_as_a_user() -> None:
    deployment = of_kind("Deployment")
    spec = deployment["spec"]["template"]["spec"]
    [container] = spec["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    env = env_of(container)
    assert env["STREAMWISE_HOST"] == "0.0.0.0"
    graceful = float(env.get("STREAMWISE_GRACEFUL_TIMEOUT", Settings().graceful_timeout))
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pre_stop = float(command[1])
    # SIGTERM comes after preStop; then the drain, the last writes, the unloads
    assert spec["terminationGracePeriodSeconds"] > pre_stop + graceful + END_TIMEOUT_S
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    resources = container["resources"]
    assert resources["requests"]["cpu"] and resources["limits"]["memory"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    defaults = Settings()
    assert ports == {"http": 8080, "grpc": 8081, "metrics": defaults.metrics_port}
    # where Prometheus' pod discovery scrapes: the metrics listener's port and path
    scrape = deployment["spec"]["template"]["metadata"]["annotations"]
    assert scrape["prometheus.io/scrape"] == "true"
    assert scrape["prometheus.io/port"] == str(defaults.metrics_port)
    assert scrape["prometheus.io/path"] == defaults.metrics_endpoint

    service = of_kind("Service")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert {p["targetPort"] for p in service["spec"]["ports"]} == set(ports)


def test_the_autoscaler_scales_the_deployment_on_cpu() -> None:
    hpa = of_kind("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == (
        "Deployment",
        of_kind("Deployment")["metadata"]["name"],
    )
    [metric] = hpa["spec"]["metrics"]
    assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    assert hpa["spec"]["minReplicas"] >= 2
