"""Model metadata and model readiness over REST, with and without versions."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import httpx
import pytest

from .conftest import MODELS
from .wire import describe, error_body, versions_unsupported

SETTINGS = pathlib.Path(__file__).parent / "models" / "streamwise"
DATATYPES = {
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BYTES",
}  # fmt: skip


def _settings(model: str) -> dict[str, Any]:
    return json.loads((SETTINGS / model / "model-settings.json").read_text())  # type: ignore[no-any-return]


@pytest.mark.parametrize("model", MODELS)
def test_model_ready(http: httpx.Client, need, model: str) -> None:
    need(model)
    response = http.get(f"/v2/models/{model}/ready")
    assert response.status_code == 200, describe(response)


@pytest.mark.parametrize("model", MODELS)
def test_model_metadata_shape(http: httpx.Client, need, model: str) -> None:
    need(model)
    response = http.get(f"/v2/models/{model}")
    assert response.status_code == 200, describe(response)
    body = response.json()
    assert body.get("name") == model, body
    # the protocol's required fields: name, platform, inputs, outputs (versions optional)
    assert isinstance(body.get("platform"), str), f"no platform: {body}"
    assert all(isinstance(v, str) for v in body.get("versions") or []), body
    for key in ("inputs", "outputs"):
        assert isinstance(body.get(key), list), f"no {key} list: {body}"
        for t in body[key]:
            assert isinstance(t.get("name"), str), t
            assert t.get("datatype") in DATATYPES, t
            assert all(isinstance(d, int) for d in t.get("shape", [])), t


def test_model_metadata_matches_the_model_settings(http: httpx.Client, need, deviation) -> None:
    """The document's text model declares one BYTES input `prompt` and output `output`."""
    need("text-model")
    body = http.get("/v2/models/text-model").json()
    settings = _settings("text-model")
    for key in ("inputs", "outputs"):
        declared = [(t["name"], t["datatype"]) for t in settings[key]]
        assert [(t["name"], t["datatype"]) for t in body.get(key) or []] == declared, body
    if body.get("platform") != settings["platform"]:
        deviation(f"platform {body.get('platform')!r}, not the settings' {settings['platform']!r}")


def test_model_metadata_lists_the_version(http: httpx.Client, need, deviation) -> None:
    """Listed bare (`v1.2.3`) or in MLServer's `name/version` spelling of model-settings."""
    need("text-model")
    versions = http.get("/v2/models/text-model").json().get("versions") or []
    if not versions:
        deviation("model metadata lists no versions (versions are optional)")
        return
    assert any(v.rsplit("/", 1)[-1] == "v1.2.3" for v in versions), versions


def test_versioned_model_ready(http: httpx.Client, need, deviation) -> None:
    """A version the metadata lists must be addressable on the versioned path."""
    need("text-model")
    response = http.get("/v2/models/text-model/versions/v1.2.3/ready")
    if versions_unsupported(response, deviation):
        return
    assert response.status_code == 200, describe(response)


def test_versioned_model_metadata(http: httpx.Client, need, deviation) -> None:
    need("text-model")
    response = http.get("/v2/models/text-model/versions/v1.2.3")
    if versions_unsupported(response, deviation):
        return
    assert response.status_code == 200, describe(response)
    assert response.json().get("name") == "text-model"


def _unknown(response: httpx.Response, deviation, what: str) -> None:
    assert 400 <= response.status_code < 500, f"{what}: {describe(response)}"
    if response.status_code != 404:
        deviation(f"{what} answered {response.status_code}, not 404")


def test_unknown_model_ready(http: httpx.Client, deviation) -> None:
    _unknown(http.get("/v2/models/no-such-model/ready"), deviation, "unknown model ready")


def test_unknown_version_ready(http: httpx.Client, need, deviation) -> None:
    need("text-model")
    response = http.get("/v2/models/text-model/versions/no-such-version/ready")
    if versions_unsupported(response, deviation):
        return
    _unknown(response, deviation, "unknown version ready")


def test_unknown_model_metadata(http: httpx.Client, deviation) -> None:
    response = http.get("/v2/models/no-such-model")
    _unknown(response, deviation, "unknown model metadata")
    assert error_body(response), f"no {{'error': ...}} body: {describe(response)}"
