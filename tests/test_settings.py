"""Settings: MLServer's files load; precedence; clear errors naming the file and field."""

from __future__ import annotations

import json
import pathlib

import pytest

from streamwise.errors import ConfigError
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
