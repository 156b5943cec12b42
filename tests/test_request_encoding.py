"""Compressed request bodies (``Content-Encoding``, ``rest/encoding.py``) over real
sockets with httpx: gzip and deflate (zlib and raw) bodies are answered as plain ones on
the V2 and OpenAI routes; an unknown coding is 415, a corrupt body 400, a body that
decompresses past ``max_request_body_bytes`` 413, and the server goes on serving. The
decoder's round trip is a hypothesis property. Triton's own client compressing its
requests is in tests/test_triton_http.py."""

from __future__ import annotations

import gzip
import json
import zlib

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamwise import ServerInfo
from streamwise.errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from streamwise.rest import encoding
from tests.support import StartServer

BODY = {
    "id": "c1",
    "inputs": [{"name": "x", "shape": [3], "datatype": "FP32", "data": [1.0, 2.5, -3.0]}],
}


def raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


CODED = {
    "gzip": gzip.compress,
    "x-gzip": gzip.compress,
    "deflate": zlib.compress,  # the zlib format, as RFC 9110 and Triton's client say
    "deflate-raw": raw_deflate,  # sent as "deflate" by some clients
}


async def post(info: ServerInfo, path: str, body: bytes, coding: str) -> httpx.Response:
    headers = {"content-type": "application/json", "content-encoding": coding}
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(f"{info.http_url}{path}", content=body, headers=headers)


@pytest.mark.parametrize("name", sorted(CODED))
async def test_a_compressed_infer_is_answered_as_a_plain_one(demo: ServerInfo, name: str) -> None:
    body = CODED[name](json.dumps(BODY).encode())
    r = await post(demo, "/v2/models/identity/infer", body, name.removesuffix("-raw"))
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["id"] == "c1"
    assert answer["outputs"][0]["data"] == [1.0, 2.5, -3.0]


async def test_codings_listed_in_turn_and_identity(demo: ServerInfo) -> None:
    body = gzip.compress(zlib.compress(json.dumps(BODY).encode()))  # deflate, then gzip
    r = await post(demo, "/v2/models/identity/infer", body, "identity, deflate, gzip")
    assert r.status_code == 200, r.text
    r = await post(demo, "/v2/models/identity/infer", json.dumps(BODY).encode(), "identity")
    assert r.status_code == 200, r.text


async def test_a_compressed_stream_request(demo: ServerInfo) -> None:
    body = {"inputs": [{"name": "n", "shape": [1], "datatype": "INT64", "data": [3]}]}
    coded = gzip.compress(json.dumps(body).encode())
    r = await post(demo, "/v2/models/token-streamer/generate_stream", coded, "gzip")
    assert r.status_code == 200, r.text
    assert r.text.count("data: ") == 3


@pytest.mark.parametrize(
    ("coding", "body", "status", "words"),
    [
        ("br", b"\x0b\x02\x80{}\x03", 415, "Content-Encoding 'br' is not supported"),
        ("gzip", b"not gzip at all", 400, "not valid gzip data"),
        ("deflate", b"not deflate either", 400, "not valid deflate data"),
        ("gzip", gzip.compress(json.dumps(BODY).encode())[:-12], 400, "not valid gzip data"),
    ],
    ids=["unknown", "not-gzip", "not-deflate", "truncated"],
)
async def test_bad_codings_are_refused_clearly(
    demo: ServerInfo, coding: str, body: bytes, status: int, words: str
) -> None:
    r = await post(demo, "/v2/models/identity/infer", body, coding)
    assert r.status_code == status, r.text
    assert list(r.json()) == ["error"] and words in r.json()["error"]
    ok = await post(demo, "/v2/models/identity/infer", json.dumps(BODY).encode(), "identity")
    assert ok.status_code == 200  # and the server goes on


async def test_a_body_that_decompresses_past_the_limit_is_413(start_server: StartServer) -> None:
    info = await start_server(max_request_body_bytes=100_000)
    bomb = gzip.compress(b" " * 10_000_000)  # 10 MB of spaces: about 10 kB sent
    assert len(bomb) < 100_000
    r = await post(info, "/v2/models/identity/infer", bomb, "gzip")
    assert r.status_code == 413
    assert (
        "once decompressed" in r.json()["error"] and "max_request_body_bytes" in r.json()["error"]
    )
    ok = await post(
        info, "/v2/models/identity/infer", gzip.compress(json.dumps(BODY).encode()), "gzip"
    )
    assert ok.status_code == 200, ok.text


async def test_openai_routes_take_compressed_bodies(models: ServerInfo) -> None:
    body = {"model": "openai-words", "prompt": "a b c"}
    r = await post(models, "/v1/completions", gzip.compress(json.dumps(body).encode()), "gzip")
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["text"] == "a b c"
    r = await post(models, "/v1/completions", b"{}", "zstd")
    assert r.status_code == 415
    assert "zstd" in r.json()["error"]["message"]


# -- the decoder ---------------------------------------------------------------------------
def _encode(data: bytes, codings: list[str]) -> bytes:
    for coding in codings:
        data = CODED[coding](data) if coding != "identity" else data
    return data


@given(
    data=st.binary(max_size=5000),
    codings=st.lists(st.sampled_from([*CODED, "identity"]), min_size=1, max_size=3),
)
def test_decode_undoes_what_was_applied(data: bytes, codings: list[str]) -> None:
    header = ", ".join(c.removesuffix("-raw") for c in codings)
    assert encoding.decode(_encode(data, codings), header, limit=10**6) == data


@given(data=st.binary(min_size=1, max_size=5000), coding=st.sampled_from(sorted(CODED)))
def test_the_limit_is_on_what_a_body_decompresses_to(data: bytes, coding: str) -> None:
    coded, header = CODED[coding](data), coding.removesuffix("-raw")
    assert encoding.decode(coded, header, limit=len(data)) == data
    with pytest.raises(PayloadTooLarge):
        encoding.decode(coded, header, limit=len(data) - 1)


def test_gzip_members_are_concatenated_and_unknowns_named() -> None:
    assert encoding.decode(gzip.compress(b"ab") + gzip.compress(b"cd"), "gzip", 10) == b"abcd"
    with pytest.raises(UnsupportedMediaType, match="'compress'"):
        encoding.decode(b"x", "compress", 10)
    with pytest.raises(InvalidRequest, match="not valid deflate"):
        encoding.decode(zlib.compress(b"ab") + b"tail", "deflate", 10)
