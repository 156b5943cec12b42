"""Settings: MLServer's files load; precedence; clear errors naming the file and field."""

from __future__ import annotations

import json
import pathlib

import pytest

from streamwise.errors import ConfigError
from streamwise.runtime.loading import import_implementation
from streamwise.settings import find_model_settings, load_settings
from tests.support import DOCUMENT


def write(folder: pathlib.Path, name: str, content: object) -> pathlib.Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_the_documents_files_load() -> None:
    settings = load_settings(DOCUMENT, environ={})
    assert (settings.http_port, settings.grpc_port, settings.host) == (8080, 8081, "127.0.0.1")
    assert settings.parallel_workers == 0 and settings.gzip_enabled is False
    [model] = find_model_settings(DOCUMENT)
    assert model.name == "text-model" and model.implementation == "text_model.TextModel"
    assert model.versions == ("text-model/v1.2.3",)
    assert model.inputs[0].name == "prompt" and model.inputs[0].datatype == "BYTES"


def test_precedence_file_then_mlserver_env_then_streamwise_env_then_flags(
    tmp_path: pathlib.Path,
) -> None:
    write(tmp_path, "settings.json", {"http_port": 1000, "grpc_port": 1001, "host": "0.0.0.0"})
    env = {
        "MLSERVER_HTTP_PORT": "2000",
        "MLSERVER_GRPC_PORT": "2001",
        "STREAMWISE_GRPC_PORT": "3001",
    }
    s = load_settings(tmp_path, environ=env, overrides={"host": "127.0.0.2", "grpc_port": None})
    assert (s.http_port, s.grpc_port, s.host) == (2000, 3001, "127.0.0.2")
    s = load_settings(tmp_path, environ={"STREAMWISE_EXTENSIONS": '["a", "b"]'})
    assert s.extensions == ("a", "b")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{nope", "settings.json: not valid JSON"),
        ("[1]", "settings.json: expected a JSON object"),
        ({"http_prot": 1}, "settings.json: field 'http_prot': unknown field"),
        ({"http_port": "abc"}, "settings.json: field 'http_port': Input should be a valid integer"),
        ({"http_port": 70000}, "settings.json: field 'http_port'"),
    ],
)
def test_bad_settings_name_the_file_and_field(
    tmp_path: pathlib.Path, content: object, message: str
) -> None:
    write(tmp_path, "settings.json", content)
    with pytest.raises(ConfigError, match=message):
        load_settings(tmp_path, environ={})


def test_bad_environment_names_the_variable(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConfigError, match="environment STREAMWISE_HTTP_PORT: field 'http_port'"):
        load_settings(tmp_path, environ={"STREAMWISE_HTTP_PORT": "many"})


def test_bad_model_settings_name_the_file_and_field(tmp_path: pathlib.Path) -> None:
    path = write(
        tmp_path,
        "m/model-settings.json",
        {
            "name": "m",
            "implementation": "a.B",
            "inputs": [{"name": "x", "datatype": "FP99", "shape": [1]}],
        },
    )
    with pytest.raises(ConfigError, match=rf"{path}: field 'inputs.0.datatype'"):
        find_model_settings(tmp_path)
    write(tmp_path, "m/model-settings.json", {"name": "m", "implementation": "a.B", "colour": 1})
    with pytest.raises(ConfigError, match="field 'colour': unknown field"):
        find_model_settings(tmp_path)


def test_nameless_model_is_named_after_its_folder(tmp_path: pathlib.Path) -> None:
    write(tmp_path, "sub/my-model/model-settings.json", {"implementation": "a.B"})
    [model] = find_model_settings(tmp_path)
    assert model.name == "my-model" and model.folder == tmp_path / "sub" / "my-model"


def test_settings_are_immutable() -> None:
    s = load_settings(None, environ={})
    with pytest.raises(Exception, match="frozen"):
        s.http_port = 1  # type: ignore[misc]


# -- a model from the environment alone (MLServer's rule, KServe's MLServer runtime) --

KSERVE_LIKE = {
    "MLSERVER_MODEL_IMPLEMENTATION": "model.Echo",
    "MLSERVER_MODEL_NAME": "my-isvc",
    "MLSERVER_MODEL_URI": "/mnt/models",
    "MLSERVER_HTTP_PORT": "8080",
}


def test_a_repository_without_model_settings_serves_the_model_the_environment_describes(
    tmp_path: pathlib.Path,
) -> None:
    env = {**KSERVE_LIKE, "MLSERVER_MODEL_VERSION": "7", "MLSERVER_MODEL_EXTRA": '{"k": 1}'}
    [model] = find_model_settings(tmp_path, environ=env)
    assert (model.name, model.implementation) == ("my-isvc", "model.Echo")
    assert model.parameters is not None
    assert model.parameters.uri == "/mnt/models"  # MLSERVER_MODEL_URI is parameters.uri
    assert model.version == "7" and model.parameters.extra == {"k": 1}
    assert model.source is None and model.folder == tmp_path.resolve()
    assert "from the environment" in model.origin


def test_streamwise_model_variables_win_and_a_nameless_model_is_named_after_the_folder(
    tmp_path: pathlib.Path,
) -> None:
    env = {"MLSERVER_MODEL_IMPLEMENTATION": "a.B", "STREAMWISE_MODEL_IMPLEMENTATION": "model.C"}
    [model] = find_model_settings(tmp_path, environ=env)
    assert model.implementation == "model.C" and model.name == tmp_path.name
    assert model.parameters is not None and model.parameters.uri is None


def test_model_settings_files_win_over_the_environment(tmp_path: pathlib.Path) -> None:
    write(tmp_path, "m/model-settings.json", {"implementation": "a.B"})
    assert [m.name for m in find_model_settings(tmp_path, environ=KSERVE_LIKE)] == ["m"]


def test_no_implementation_in_the_environment_no_model(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert find_model_settings(tmp_path, environ={"MLSERVER_HTTP_PORT": "1"}) == []
    assert find_model_settings(tmp_path, environ={"MLSERVER_MODEL_NAME": "x"}) == []
    assert "MLSERVER_MODEL_NAME set but no MLSERVER_MODEL_IMPLEMENTATION" in caplog.text


def test_a_bad_model_variable_is_named(tmp_path: pathlib.Path) -> None:
    env = {**KSERVE_LIKE, "STREAMWISE_MODEL_MAX_BATCH_SIZE": "many"}
    with pytest.raises(ConfigError, match="environment STREAMWISE_MODEL_MAX_BATCH_SIZE"):
        find_model_settings(tmp_path, environ=env)
    env = {**KSERVE_LIKE, "MLSERVER_MODEL_EXTRA": "[1]"}
    with pytest.raises(ConfigError, match="environment MLSERVER_MODEL_EXTRA: field 'extra'"):
        find_model_settings(tmp_path, environ=env)


def test_the_model_from_the_environment_is_looked_up_in_the_repository_folder(
    tmp_path: pathlib.Path,
) -> None:
    (tmp_path / "model.py").write_text(
        "from streamwise import MLModel\nclass Echo(MLModel):\n    pass\n"
    )
    [model] = find_model_settings(tmp_path, environ=KSERVE_LIKE)
    assert import_implementation(model).__name__ == "Echo"
    [broken] = find_model_settings(
        tmp_path, environ={**KSERVE_LIKE, "MLSERVER_MODEL_IMPLEMENTATION": "nope.X"}
    )
    with pytest.raises(ConfigError, match="model 'my-isvc' from the environment"):
        import_implementation(broken)
