"""The repository extension: index, load and unload. Unloading is destructive: those
checks run only with --destructive (or on the server the suite started itself), and
always load the model back."""

from __future__ import annotations

import time

import httpx
import pytest

from .wire import client_error, describe, error_body, request, tensor

INDEX = "/v2/repository/index"


def index(http: httpx.Client, body: dict[str, object] | None = None) -> list[dict[str, object]]:
    response = http.post(INDEX, json={} if body is None else body)
    assert response.status_code == 200, describe(response)
    entries = response.json()
    assert isinstance(entries, list), entries
    return entries


def test_index_lists_the_models_with_their_state(http: httpx.Client, served: set[str]) -> None:
    entries = index(http)
    for entry in entries:
        assert isinstance(entry.get("name"), str), entry
        assert isinstance(entry.get("state"), str), entry
    states = {e["name"]: e["state"] for e in entries}
    for model in served:
        assert states.get(model) == "READY", f"{model}: {states.get(model)} in {entries}"


def test_index_of_ready_models(http: httpx.Client, served: set[str]) -> None:
    entries = index(http, {"ready": True})
    assert all(e.get("state") == "READY" for e in entries), entries
    assert served <= {e["name"] for e in entries}, entries


@pytest.mark.parametrize("action", ["load", "unload"])
def test_unknown_model(http: httpx.Client, deviation, action: str) -> None:
    response = http.post(f"/v2/repository/models/no-such-model/{action}", json={})
    client_error(response, deviation, f"{action} of an unknown model", preferred=404)


@pytest.mark.parametrize("name", ["..%2F..%2Fetc", "%2Ftmp%2Fx", "os.path"])
def test_load_refuses_names_that_are_not_models(http: httpx.Client, deviation, name: str) -> None:
    """A model name is not a path, nor a module to import."""
    response = http.post(f"/v2/repository/models/{name}/load", json={})
    assert 400 <= response.status_code < 500, describe(response)
    if response.status_code != 404:
        deviation(f"load of {name!r}: {response.status_code}, not 404")


def wait_ready(http: httpx.Client, model: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while http.get(f"/v2/models/{model}/ready").status_code != 200:
        assert time.monotonic() < deadline, f"{model} not ready {timeout} s after its load"
        time.sleep(0.1)


@pytest.mark.destructive
def test_unload_then_load(http: httpx.Client, need, deviation) -> None:
    need("identity")
    body = request(tensor("x", "INT32", [1], [1]))
    try:
        response = http.post("/v2/repository/models/identity/unload", json={})
        assert response.status_code == 200, describe(response)
        ready = http.get("/v2/models/identity/ready")
        assert 400 <= ready.status_code < 600, f"ready after unload: {describe(ready)}"
        refused = http.post("/v2/models/identity/infer", json=body)
        assert 400 <= refused.status_code < 600, f"infer after unload: {describe(refused)}"
        assert error_body(refused), f"infer after unload: {describe(refused)}"
        if refused.status_code not in (404, 503):
            deviation(f"infer on an unloaded model: {refused.status_code}, not 404 or 503")
        listed = http.post(INDEX, json={})  # its own checks judge an index that fails
        if listed.status_code == 200:
            states = {e["name"]: e["state"] for e in listed.json()}
            assert states.get("identity", "UNAVAILABLE") != "READY", states
    finally:
        response = http.post("/v2/repository/models/identity/load", json={})
        wait_ready(http, "identity")
    assert response.status_code == 200, describe(response)
    assert http.post("/v2/models/identity/infer", json=body).status_code == 200


@pytest.mark.destructive
def test_load_of_a_loaded_model_keeps_it_serving(http: httpx.Client, need) -> None:
    need("identity")
    response = http.post("/v2/repository/models/identity/load", json={})
    assert response.status_code == 200, describe(response)
    wait_ready(http, "identity")
    body = request(tensor("x", "INT32", [1], [3]))
    assert http.post("/v2/models/identity/infer", json=body).status_code == 200
