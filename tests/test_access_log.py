"""The access log (``streamwise.access``): one line per REST request and gRPC call, a
stream's when it ends, in text or JSON lines; off with ``access_log: false``."""

from __future__ import annotations

import json
import logging
from typing import Any

import grpc
import httpx
import pytest
import trio

from streamwise import ServerInfo
from streamwise.logs import JsonFormatter
from streamwise.types import InferenceRequest
from tests.support import DEMO, StartServer, rawhttp
from tests.support.grpc_stubs import code_of, in_thread, load_stubs, to_pb2
from tests.test_rest_api import IDENTITY_BODY
from tests.test_sse import tokens

pb2, _ = load_stubs()


async def lines(caplog: pytest.LogCaptureFixture, count: int) -> list[logging.LogRecord]:
    """The access records, once there are ``count`` of them (a line is written when the
    server is done with the request, which may be just after the client has its answer)."""
    with trio.fail_after(10):
        while len(access_records(caplog)) < count:  # noqa: ASYNC110 (no event to wait on)
            await trio.sleep(0.01)
    await trio.sleep(0.05)  # and no more
    return access_records(caplog)


def request(body: dict[str, Any]) -> InferenceRequest:
    return InferenceRequest.model_validate(body)


def access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "streamwise.access"]


def fields(record: logging.LogRecord) -> dict[str, Any]:
    value = record.__dict__["access"]
    assert isinstance(value, dict)
    return value


async def test_a_client_error_is_one_line_with_its_status(
    demo: ServerInfo, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="streamwise.access"):
        r = await client.post(demo.http_url + "/v2/models/identity/infer", content=b"{not json")
        assert r.status_code == 400
        [record] = await lines(caplog, 1)
    assert record.levelno == logging.INFO
    line = record.getMessage()
    assert '"POST /v2/models/identity/infer" 400 ' in line and "model=identity" in line
    f = fields(record)
    assert (f["protocol"], f["method"], f["path"], f["status"]) == (
        "rest",
        "POST",
        "/v2/models/identity/infer",
        400,
    )
    assert f["model"] == "identity" and f["duration_ms"] >= 0
    assert f["client"].startswith("127.0.0.1:")
    assert "responses" not in f  # not a stream


async def test_a_unary_request_has_its_id_or_the_generated_one(
    demo: ServerInfo, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    url = demo.http_url + "/v2/models/identity/infer"
    with caplog.at_level(logging.INFO, logger="streamwise.access"):
        mine = await client.post(url, json=IDENTITY_BODY)
        generated = await client.post(url, json={**IDENTITY_BODY, "id": None})
        records = await lines(caplog, 2)
    assert [fields(r)["status"] for r in records] == [200, 200]
    assert fields(records[0])["request_id"] == "abc" == mine.json()["id"]
    assert fields(records[1])["request_id"] == generated.json()["id"]


async def test_a_completed_stream_is_one_line_with_its_responses(
    demo: ServerInfo, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    url = demo.http_url + "/v2/models/token-streamer/generate_stream"
    with caplog.at_level(logging.INFO, logger="streamwise.access"):
        r = await client.post(url, json=tokens(4, id="s-1"))
        assert r.status_code == 200 and r.text.count("data:") == 4
        [record] = await lines(caplog, 1)
    f = fields(record)
    assert (f["status"], f["responses"], f["outcome"], f["request_id"]) == (
        200,
        4,
        "completed",
        "s-1",
    )
    assert "responses=4 outcome=completed" in record.getMessage()


async def test_a_client_that_leaves_a_stream(
    demo: ServerInfo, caplog: pytest.LogCaptureFixture
) -> None:
    path = "/v2/models/token-streamer/generate_stream"
    with caplog.at_level(logging.INFO, logger="streamwise.access"):
        r = await rawhttp.request(demo.http_port, "POST", path, tokens(100, delay_s=0.05))
        assert r.status == 200 and (await r.read_chunk() or b"").startswith(b"data:")
        await r.stream.aclose()  # one event, then gone
        [record] = await lines(caplog, 1)
    f = fields(record)
    assert f["outcome"] == "client disconnect" and 1 <= f["responses"] < 100


async def test_grpc_calls_are_one_line_each(
    demo: ServerInfo, caplog: pytest.LogCaptureFixture
) -> None:
    def calls(stub: Any) -> Any:
        stub.ModelInfer(to_pb2(request(IDENTITY_BODY), "identity"))
        missing = code_of(lambda: stub.ModelInfer(to_pb2(request(IDENTITY_BODY), "no-such-model")))
        streamed = list(stub.ModelStreamInfer(iter([to_pb2(request(tokens(3)), "token-streamer")])))
        return missing, streamed

    with caplog.at_level(logging.INFO, logger="streamwise.access"):
        (missing, _), streamed = await in_thread(demo, calls)
        records = await lines(caplog, 3)
    assert missing == grpc.StatusCode.NOT_FOUND
    ok, not_found, stream = (fields(r) for r in records)
    rpc = "/inference.GRPCInferenceService/"
    assert (ok["protocol"], ok["rpc"], ok["status"]) == ("grpc", rpc + "ModelInfer", "OK")
    assert (ok["model"], ok["request_id"]) == ("identity", "abc")
    assert ok["peer"].startswith("127.0.0.1:") and "responses" not in ok
    assert (not_found["rpc"], not_found["status"]) == (rpc + "ModelInfer", "NOT_FOUND")
    assert not_found["model"] == "no-such-model"
    assert (stream["rpc"], stream["status"], stream["outcome"]) == (
        rpc + "ModelStreamInfer",
        "OK",
        "completed",
    )
    assert stream["responses"] == len(streamed) == 3 and stream["model"] == "token-streamer"
    assert f'"{rpc}ModelInfer" NOT_FOUND ' in records[1].getMessage()


async def test_json_lines_carry_the_fields(
    demo: ServerInfo, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="streamwise.access"):
        await client.post(demo.http_url + "/v2/models/identity/infer", content=b"[")
        [record] = await lines(caplog, 1)
    line = json.loads(JsonFormatter(worker=3).format(record))
    assert line["level"] == "INFO" and line["logger"] == "streamwise.access"
    assert (line["status"], line["path"], line["worker"]) == (400, "/v2/models/identity/infer", 3)
    assert line["message"] == record.getMessage() and line["time"].endswith("Z")
    other = logging.LogRecord("streamwise.server", logging.WARNING, "", 0, "a %s", ("b",), None)
    plain = json.loads(JsonFormatter().format(other))
    assert plain.pop("time").endswith("Z")
    assert plain == {"level": "WARNING", "logger": "streamwise.server", "message": "a b"}


async def test_access_log_off(
    start_server: StartServer, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    info = await start_server(DEMO, access_log=False)
    with caplog.at_level(logging.INFO, logger="streamwise.access"):
        r = await client.post(info.http_url + "/v2/models/identity/infer", content=b"[")
        assert r.status_code == 400
        await in_thread(
            info,
            lambda stub: code_of(lambda: stub.ModelInfer(pb2.ModelInferRequest(model_name="nope"))),
        )
        await trio.sleep(0.1)
    assert access_records(caplog) == []
