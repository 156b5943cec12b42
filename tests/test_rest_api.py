"""Every V2 REST endpoint, with and without versions, and every error as {"error": ...}."""

from __future__ import annotations

import errno
import sys

import httpx
import pytest
import trio

from streamwise import ServerInfo
from streamwise.server import ACCEPTING_SOCKETS
from tests.support import DEMO, StartServer, free_port

IDENTITY_BODY = {
    "id": "abc",
    "inputs": [
        {"name": "a", "shape": [2, 2], "datatype": "FP32", "data": [[1.0, 2.5], [3.0, 4.0]]},
        {"name": "b", "shape": [2], "datatype": "BYTES", "data": ["x", "y"]},
    ],
}


async def test_health_and_server_metadata(demo: ServerInfo, client: httpx.AsyncClient) -> None:
    for path in ("/v2/health/live", "/v2/health/ready"):
        r = await client.get(demo.http_url + path)
        assert (r.status_code, r.content) == (200, b"")
    r = await client.get(demo.http_url + "/v2")
    assert r.status_code == 200
    assert r.json() == {
        "name": "streamwise",
        "version": "0.1.0",
        "extensions": ["binary_tensor_data"],
    }


async def test_model_metadata_and_ready_with_and_without_versions(
    demo: ServerInfo, client: httpx.AsyncClient
) -> None:
    for path in (
        "/v2/models/text-model",
        "/v2/models/text-model/versions/v1.2.3",
        "/v2/models/text-model/versions/text-model%2Fv1.2.3",
    ):
        r = await client.get(demo.http_url + path)
        if "%2F" in path:  # a version with a slash is addressed by its part after `name/`
            assert r.status_code == 404 and "error" in r.json()
            continue
        assert r.status_code == 200, path
        assert r.json() == {
            "name": "text-model",
            "versions": ["text-model/v1.2.3"],
            "platform": "mlserver",
            "inputs": [{"name": "prompt", "datatype": "BYTES", "shape": [1]}],
            "outputs": [{"name": "output", "datatype": "BYTES", "shape": [1]}],
        }
        r = await client.get(demo.http_url + path + "/ready")
        assert (r.status_code, r.content) == (200, b"")
    r = await client.get(demo.http_url + "/v2/models/identity/versions/1/ready")
    assert r.status_code == 200


@pytest.mark.parametrize("route", ["infer", "generate"])
@pytest.mark.parametrize("prefix", ["/v2/models/identity", "/v2/models/identity/versions/1"])
async def test_infer_round_trip_echoes_id(
    demo: ServerInfo, client: httpx.AsyncClient, route: str, prefix: str
) -> None:
    r = await client.post(f"{demo.http_url}{prefix}/{route}", json=IDENTITY_BODY)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == "abc"
    assert body["model_name"] == "identity" and body["model_version"] == "1"
    assert [o["data"] for o in body["outputs"]] == [[[1.0, 2.5], [3.0, 4.0]], ["x", "y"]]


async def test_infer_without_id_gets_a_uuid(demo: ServerInfo, client: httpx.AsyncClient) -> None:
    body = {k: v for k, v in IDENTITY_BODY.items() if k != "id"}
    r = await client.post(f"{demo.http_url}/v2/models/identity/infer", json=body)
    assert len(r.json()["id"]) == 36


@pytest.mark.parametrize(
    ("requested", "returned"),
    [(["b"], ["b"]), (["a", "b"], ["a", "b"]), (["c"], ["a", "b"])],
    ids=["subset", "all", "none-produced"],
)
async def test_requested_outputs_are_kept_and_nothing_is_lost(
    demo: ServerInfo, client: httpx.AsyncClient, requested: list[str], returned: list[str]
) -> None:
    """Only the requested outputs come back; if the model produced none of them (it
    ignored the names), its whole answer comes back rather than nothing."""
    body = {**IDENTITY_BODY, "outputs": [{"name": n} for n in requested]}
    r = await client.post(f"{demo.http_url}/v2/models/identity/infer", json=body)
    assert r.status_code == 200, r.text
    assert [o["name"] for o in r.json()["outputs"]] == returned


ERRORS = [
    ("POST", "/v2/models/nope/infer", IDENTITY_BODY, 404),
    ("POST", "/v2/models/identity/versions/7/infer", IDENTITY_BODY, 404),
    ("GET", "/v2/models/nope", None, 404),
    ("GET", "/v2/models/nope/ready", None, 404),
    ("GET", "/v2/nowhere", None, 404),
    ("GET", "/v2/models/identity/infer", None, 405),
    ("POST", "/v2/health/live", None, 405),
    ("POST", "/v2/models/identity/infer", b"{", 400),
    ("POST", "/v2/models/identity/infer", b"[]", 400),
    (
        "POST",
        "/v2/models/identity/infer",
        {"inputs": [{"name": "a", "shape": [1], "datatype": "FP33", "data": [1]}]},
        400,
    ),
    (
        "POST",
        "/v2/models/identity/infer",
        {"inputs": [{"name": "a", "shape": [3], "datatype": "FP32", "data": [1, 2]}]},
        400,
    ),
    (
        "POST",
        "/v2/models/identity/infer",
        {"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": ["x"]}]},
        400,
    ),
    (
        "POST",
        "/v2/models/identity/infer",
        {"inputs": [{"name": "a", "shape": [10**12], "datatype": "FP32", "data": [1]}]},
        413,  # over max_tensor_elements: refused before the data is looked at
    ),
    (
        "POST",
        "/v2/models/text-model/infer",
        {"inputs": [{"name": "wrong", "shape": [1], "datatype": "BYTES", "data": ["x"]}]},
        400,
    ),
    (
        "POST",
        "/v2/models/text-model/infer",
        {"inputs": [{"name": "prompt", "shape": [1], "datatype": "FP32", "data": [1]}]},
        400,
    ),
    # the document's model only streams: unary infer is "not implemented", clearly
    (
        "POST",
        "/v2/models/text-model/infer",
        {"inputs": [{"name": "prompt", "shape": [1], "datatype": "BYTES", "data": ["x"]}]},
        501,
    ),
]


@pytest.mark.parametrize(("method", "path", "body", "status"), ERRORS)
async def test_errors_are_json_with_a_meaningful_status(
    demo: ServerInfo, client: httpx.AsyncClient, method: str, path: str, body: object, status: int
) -> None:
    kw = {"content": body} if isinstance(body, bytes) else {"json": body} if body else {}
    r = await client.request(method, demo.http_url + path, **kw)  # type: ignore[arg-type]
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert list(r.json()) == ["error"] and r.json()["error"]
    assert (await client.get(demo.http_url + "/v2/health/live")).status_code == 200


async def test_body_too_large_is_413(start_server: StartServer, client: httpx.AsyncClient) -> None:
    info = await start_server(max_request_body_bytes=1000)
    big = {"inputs": [{"name": "a", "shape": [500], "datatype": "FP32", "data": [1.0] * 500}]}
    r = await client.post(f"{info.http_url}/v2/models/identity/infer", json=big)
    assert r.status_code == 413 and "error" in r.json()


async def test_model_failure_is_500_with_its_message(
    models: ServerInfo, client: httpx.AsyncClient
) -> None:
    body = {"inputs": [{"name": "p", "shape": [1], "datatype": "BYTES", "data": ["x"]}]}
    r = await client.post(f"{models.http_url}/v2/models/fail-mid-stream/infer", json=body)
    assert r.status_code == 500
    assert r.json() == {"error": "model failed: RuntimeError: the model broke"}


async def test_failed_load_is_visible_and_others_serve(
    models: ServerInfo, client: httpx.AsyncClient
) -> None:
    r = await client.get(f"{models.http_url}/v2/models/broken-load/ready")
    assert r.status_code == 503
    assert "weights.bin: no such file" in r.json()["error"]
    r = await client.post(f"{models.http_url}/v2/repository/index", json={})
    index = {item["name"]: item for item in r.json()}
    assert index["broken-load"]["state"] == "FAILED"
    assert "OSError: weights.bin: no such file" in index["broken-load"]["reason"]
    assert index["slow-stream"] == {"name": "slow-stream", "state": "READY", "reason": ""}
    r = await client.post(f"{models.http_url}/v2/models/broken-load/infer", json={"inputs": []})
    assert r.status_code == 503
    # a failed model does not make the server unready: the others serve
    assert (await client.get(f"{models.http_url}/v2/health/ready")).status_code == 200
    r = await client.post(f"{models.http_url}/v2/repository/models/broken-load/load")
    assert r.status_code == 500 and "weights.bin" in r.json()["error"]


async def test_repository_unload_and_load(demo: ServerInfo, client: httpx.AsyncClient) -> None:
    base = demo.http_url
    assert (await client.post(f"{base}/v2/repository/models/identity/unload")).status_code == 200
    r = await client.get(f"{base}/v2/models/identity/ready")
    assert r.status_code == 503 and "UNLOADED" in r.json()["error"]
    r = await client.post(f"{base}/v2/models/identity/infer", json=IDENTITY_BODY)
    assert r.status_code == 503
    r = await client.post(f"{base}/v2/repository/index", json={"ready": False})
    assert [(i["name"], i["state"]) for i in r.json()] == [("identity", "UNAVAILABLE")]
    assert (await client.post(f"{base}/v2/repository/models/identity/load")).status_code == 200
    r = await client.post(f"{base}/v2/models/identity/infer", json=IDENTITY_BODY)
    assert r.status_code == 200
    r = await client.post(f"{base}/v2/repository/models/nope/load")
    assert r.status_code == 404 and "error" in r.json()


async def test_ready_is_false_with_zero_models(
    start_server: StartServer, client: httpx.AsyncClient, tmp_path: object
) -> None:
    info = await start_server(tmp_path)
    r = await client.get(f"{info.http_url}/v2/health/ready")
    assert r.status_code == 503 and "no model is ready" in r.json()["error"]
    assert (await client.get(f"{info.http_url}/v2/health/live")).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", "/v2/nowhere", 404),
        ("POST", "/v2/health/live", 405),
        ("POST", "/v2/repository/models/nope/unload", 404),
        ("POST", "/v2/repository/models/identity/load", 200),
        ("POST", "/v2/models/%2Fidentity/infer", 404),  # no 308 to a merged-slashes path
        ("GET", "/v2/health/live", 200),  # routes that read no body, sent one all the same
        ("GET", "/v2/models/identity", 200),
        ("GET", "/v2/models/nope/ready", 404),
    ],
)
async def test_unread_bodies_keep_the_connection_usable(
    demo: ServerInfo, method: str, path: str, status: int
) -> None:
    """Requests with a body no handler needs (no route, wrong method, a GET, repository
    load and unload), the body sent a little after the headers, on one keep-alive
    connection: every request is answered. Hypercorn (0.18) stopped answering on a
    connection where a response went out before its request's body was read, so every
    request's body is read before its answer goes out (found by the conformance suite,
    then for every other unread body by the fuzz slice)."""
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n".encode()
    stream = await trio.open_tcp_stream("127.0.0.1", demo.http_port)
    async with stream:
        for i in range(4):
            await stream.send_all(head)
            await trio.sleep(0.05)  # the server decides on the headers alone...
            await stream.send_all(b"{}")  # ...and the body comes after
            with trio.fail_after(5):
                answer = await _read_response(stream)
            assert answer.startswith(f"HTTP/1.1 {status}".encode()), answer
            assert b"connection: close" not in answer.lower()
            if i == 2:  # a pause before the next request (for load and unload, that hung)
                await trio.sleep(0.2)


async def _read_response(stream: trio.SocketStream) -> bytes:
    """One whole response with a Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += await stream.receive_some()
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += await stream.receive_some()
    return data


async def test_idle_keep_alive_connections_are_closed(start_server: StartServer) -> None:
    """A connection idle for ``keep_alive_timeout_s`` is closed, after a request as before
    the first: Hypercorn's idle timer died at once after a response (started from the
    app's cancelled task, see rest/_hypercorn_guard.py), so a client that keeps its
    connections kept them, and the server's file descriptors, for ever."""
    info = await start_server(DEMO, keep_alive_timeout_s=0.3)
    for first in (b"", b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"):
        stream = await trio.open_tcp_stream("127.0.0.1", info.http_port)
        async with stream:
            await stream.send_all(first)
            received = b""
            with trio.fail_after(5):  # closed after 0.3 s idle; 5 s is far beyond
                while data := await stream.receive_some():
                    received += data
            assert received.startswith(b"HTTP/1.1 200") if first else received == b""


async def test_a_request_longer_than_the_keep_alive_timeout_keeps_its_connection(
    start_server: StartServer,
) -> None:
    """The idle timer runs only while the connection is idle: a stream that takes three
    keep-alive timeouts is answered whole, the connection then serves another request,
    and is closed once idle for the timeout."""
    info = await start_server(DEMO, keep_alive_timeout_s=0.3)
    body = (
        b'{"inputs": [{"name": "n", "datatype": "INT64", "shape": [1], "data": [6]},'
        b' {"name": "delay_s", "datatype": "FP64", "shape": [1], "data": [0.15]}]}'
    )
    stream = await trio.open_tcp_stream("127.0.0.1", info.http_port)
    async with stream:
        await stream.send_all(
            b"POST /v2/models/token-streamer/generate_stream HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        received = b""
        with trio.fail_after(10):
            while not received.endswith(b"0\r\n\r\n"):  # the chunked body's end
                data = await stream.receive_some()
                assert data, received  # not closed under the stream
                received += data
        assert received.startswith(b"HTTP/1.1 200") and received.count(b"data: ") == 6
        await stream.send_all(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        with trio.fail_after(5):
            assert (await _read_response(stream)).startswith(b"HTTP/1.1 200")
            assert await stream.receive_some() == b""  # then idle: closed


def _listening_sockets_on(port: int) -> int:
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    count += 1
    return count


@pytest.mark.skipif(sys.platform != "linux", reason="SO_REUSEPORT spreads connections on Linux")
async def test_the_rest_port_accepts_on_several_sockets_and_is_not_shared(
    start_server: StartServer,
) -> None:
    """trio accepts one connection per round and socket: the REST port has several
    sockets (server.ACCEPTING_SOCKETS), each accepting; yet a second server on the same
    port still fails, as without SO_REUSEPORT, instead of silently sharing it."""
    port = free_port()
    await start_server(DEMO, http_port=port)
    assert _listening_sockets_on(port) == ACCEPTING_SOCKETS
    with pytest.raises(OSError) as raised:
        await start_server(DEMO, http_port=port)
    assert raised.value.errno == errno.EADDRINUSE
    answered = 0

    async def one() -> None:
        nonlocal answered
        async with httpx.AsyncClient(timeout=30) as client:
            r = await client.get(f"http://127.0.0.1:{port}/v2/health/live")
            answered += r.status_code == 200

    async with trio.open_nursery() as nursery:
        for _ in range(200):
            nursery.start_soon(one)
    assert answered == 200


def test_an_unexpected_exception_is_a_logged_500_with_its_type(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One answer for anything that is not our error, on both halves of the REST API
    (the inference route and Quart): a bug of ours, never a model's or a client's."""
    from streamwise.errors import ModelOverloaded
    from streamwise.rest.errors import answer_for

    with caplog.at_level("ERROR", logger="streamwise.rest.errors"):
        status, headers, body = answer_for(ValueError("oops"))
    assert (status, headers) == (500, [])
    assert body == b'{"error": "internal error: ValueError: oops"}'
    assert caplog.records[-1].exc_info is not None  # with its traceback
    status, headers, _ = answer_for(ModelOverloaded("busy"))
    assert status == 503 and ("Retry-After", "1") in headers


@pytest.mark.parametrize("route", ["infer_stream", "generate_stream"])
async def test_a_bug_before_a_stream_starts_is_a_json_500_and_the_server_goes_on(
    demo: ServerInfo,
    client: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    route: str,
) -> None:
    import streamwise.runtime.dataplane

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug of ours")

    url = f"{demo.http_url}/v2/models/text-model/{route}"
    body = {"inputs": [{"name": "prompt", "shape": [1], "datatype": "BYTES", "data": ["hi"]}]}
    with monkeypatch.context() as patch, caplog.at_level("ERROR", logger="streamwise.rest.errors"):
        patch.setattr(streamwise.runtime.dataplane, "open_stream", broken)
        r = await client.post(url, json=body)
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"error": "internal error: RuntimeError: a bug of ours"}
    assert any(rec.exc_info is not None for rec in caplog.records)  # logged, with traceback
    r = await client.post(url, json=body)  # the bug was one request's: the next streams
    assert r.status_code == 200 and r.text.startswith("data: ") and "event: error" not in r.text
