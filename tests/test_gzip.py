"""gzip (``gzip_enabled``): a REST response of 1 KiB or more is compressed for a client
that accepts gzip; server-sent events never are, and each goes out as it comes."""

from __future__ import annotations

import gzip
import json

import pytest
import trio

from streamwise import ServerInfo
from streamwise.rest.gzip import accepts_gzip
from tests.support import DEMO, StartServer, rawhttp
from tests.test_sse import tokens

INFER = "/v2/models/identity/infer"
BIG = {
    "id": "big",
    "inputs": [
        {"name": "x", "shape": [4000], "datatype": "FP32", "data": [i / 7 for i in range(4000)]}
    ],
}
GZIP = {"Accept-Encoding": "gzip, deflate"}


async def body_of(response: rawhttp.RawResponse) -> bytes:
    try:
        return await response.read_body()
    finally:
        await response.stream.aclose()


@pytest.fixture
async def demo(start_server: StartServer) -> ServerInfo:
    """The demo repository with gzip on (its settings.json switches it off)."""
    return await start_server(DEMO, gzip_enabled=True)


async def test_a_large_response_is_gzipped_for_a_client_that_accepts_it(demo: ServerInfo) -> None:
    plain = await rawhttp.request(demo.http_port, "POST", INFER, BIG)
    plain_body = await body_of(plain)
    assert plain.status == 200 and "content-encoding" not in plain.headers
    assert len(plain_body) > 1024

    zipped = await rawhttp.request(demo.http_port, "POST", INFER, BIG, GZIP)
    body = await body_of(zipped)
    assert zipped.status == 200 and zipped.headers["content-encoding"] == "gzip"
    assert zipped.headers["vary"].lower() == "accept-encoding"
    assert int(zipped.headers["content-length"]) == len(body) < len(plain_body)
    assert zipped.headers["content-type"] == "application/json"
    assert json.loads(gzip.decompress(body)) == json.loads(plain_body)


async def test_small_responses_and_refusals_are_not_gzipped(demo: ServerInfo) -> None:
    small = await rawhttp.request(demo.http_port, "GET", "/v2", headers=GZIP)
    assert "content-encoding" not in small.headers and json.loads(await body_of(small))
    refused = await rawhttp.request(
        demo.http_port, "POST", INFER, BIG, {"Accept-Encoding": "gzip;q=0"}
    )
    assert "content-encoding" not in refused.headers
    assert json.loads(await body_of(refused))["id"] == "big"


async def test_gzip_disabled(start_server: StartServer) -> None:
    info = await start_server(DEMO, gzip_enabled=False)
    r = await rawhttp.request(info.http_port, "POST", INFER, BIG, GZIP)
    assert "content-encoding" not in r.headers
    assert json.loads(await body_of(r))["id"] == "big"


async def test_events_are_neither_gzipped_nor_held_back(demo: ServerInfo) -> None:
    path = "/v2/models/token-streamer/generate_stream"
    r = await rawhttp.request(demo.http_port, "POST", path, tokens(3, delay_s=0.3), GZIP)
    assert r.status == 200 and "content-encoding" not in r.headers
    assert r.headers["content-type"].startswith("text/event-stream")
    arrivals = []
    while (chunk := await r.read_chunk()) is not None:
        if chunk:
            arrivals.append((trio.current_time(), chunk))
    await r.stream.aclose()
    events = [chunk for _, chunk in arrivals if chunk.startswith(b"data:")]
    assert len(events) == 3  # each a plain event of its own, as the model made it
    # the first event was read while the model had two more to make, 0.3 s apart
    first, last = arrivals[0][0], arrivals[-1][0]
    assert last - first >= 0.4


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("gzip", True),
        ("GZIP", True),
        ("deflate, gzip;q=0.5", True),
        ("br, gzip ; q=1.0", True),
        ("gzip;q=0", False),
        ("gzip; q=0.000", False),
        ("deflate", False),
        ("", False),
        (None, False),
        ("identity, *", False),
    ],
)
def test_accept_encoding(value: str | None, accepted: bool) -> None:
    assert accepts_gzip(value) is accepted
