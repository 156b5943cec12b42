"""Health and server metadata, REST and gRPC."""

from __future__ import annotations

import httpx
import pytest

from .grpc_client import Client


def test_live(http: httpx.Client, deviation) -> None:
    response = http.get("/v2/health/live")
    assert response.status_code == 200, response.text
    if response.content and response.content.strip() not in (b"", b"{}"):
        body = response.json()
        if isinstance(body, dict) and "live" in body:
            assert body["live"] is True, f"200 saying it is not live: {response.text[:100]!r}"
        if body != {"live": True}:
            deviation(f"live body is {response.text[:100]!r}")


def test_ready(http: httpx.Client) -> None:
    response = http.get("/v2/health/ready")
    assert response.status_code == 200, response.text


def test_server_metadata(http: httpx.Client) -> None:
    response = http.get("/v2")
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body.get("name"), str) and body["name"], body
    assert isinstance(body.get("version"), str), body
    extensions = body.get("extensions", [])
    assert isinstance(extensions, list) and all(isinstance(e, str) for e in extensions), body


def test_health_endpoints_refuse_post(http: httpx.Client, deviation) -> None:
    response = http.post("/v2/health/live", json={})
    assert 400 <= response.status_code < 500, f"POST /v2/health/live -> {response.status_code}"
    if response.status_code != 405:
        deviation(f"POST on a GET endpoint answered {response.status_code}, not 405")


@pytest.mark.grpc
def test_grpc_server_live(grpc_client: Client) -> None:
    assert grpc_client.ServerLive(grpc_client.pb.ServerLiveRequest(), timeout=10).live is True


@pytest.mark.grpc
def test_grpc_server_ready(grpc_client: Client) -> None:
    assert grpc_client.ServerReady(grpc_client.pb.ServerReadyRequest(), timeout=10).ready is True


@pytest.mark.grpc
def test_grpc_server_metadata_matches_rest(grpc_client: Client, http: httpx.Client) -> None:
    reply = grpc_client.ServerMetadata(grpc_client.pb.ServerMetadataRequest(), timeout=10)
    rest = http.get("/v2").json()
    assert reply.name == rest["name"]
    assert reply.version == rest["version"]
    assert sorted(reply.extensions) == sorted(rest.get("extensions", []))
