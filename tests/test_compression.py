"""Compressed requests (``protocol/compression.py``) over real sockets.

REST, with httpx: gzip and deflate (zlib and raw) bodies (``Content-Encoding``) are
answered as plain ones on the V2 and OpenAI routes; an unknown coding is 415, a corrupt
body 400, a body that decompresses past ``max_request_body_bytes`` 413, and the server goes
on serving. gRPC, with grpcio (``compression=``) and tritonclient
(``compression_algorithm``): compressed messages (``grpc-encoding``) on ModelInfer and
ModelStreamInfer, and one that decompresses past ``grpc_max_message_length``. The
decoder's round trip is a hypothesis property. Triton's HTTP client compressing its
requests is in tests/test_triton_http.py."""

from __future__ import annotations

import gzip
import json
import sys
import zlib
from typing import Any

import grpc
import httpx
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from streamwise import ServerInfo
from streamwise.errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from streamwise.protocol import compression
from streamwise.types import InferenceRequest
from tests.support import ROOT, StartServer
from tests.support.grpc_stubs import code_of, from_pb2, in_thread, to_pb2

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


# -- gRPC ----------------------------------------------------------------------------------
ZEROS = InferenceRequest.model_validate(
    {
        "id": "z",
        "inputs": [{"name": "x", "shape": [50_000], "datatype": "FP32", "data": [0.0] * 50_000}],
    }
)
"""200 kB of zeros as raw contents: grpcio sends a message compressed only when that makes
it smaller (a few hundred bytes here)."""


@pytest.mark.parametrize("algorithm", [grpc.Compression.Gzip, grpc.Compression.Deflate])
async def test_grpc_compressed_messages_unary_and_stream(
    demo: ServerInfo, algorithm: grpc.Compression
) -> None:
    message = to_pb2(ZEROS, "identity", raw=True)
    streamed = to_pb2(
        InferenceRequest.model_validate(
            {"parameters": {"note": "a" * 100_000},  # compressible
             "inputs": [{"name": "n", "shape": [1], "datatype": "INT64", "data": [3]}]}
        ),
        "token-streamer",
    )  # fmt: skip

    def run(stub: Any) -> tuple[Any, list[Any]]:
        answer = stub.ModelInfer(message, compression=algorithm, timeout=30)
        responses = list(stub.ModelStreamInfer(iter([streamed]), compression=algorithm, timeout=30))
        return answer, responses

    answer, responses = await in_thread(demo, run)
    got = from_pb2(answer)
    assert got.id == "z" and got.outputs[0].shape == [50_000]
    assert len(responses) == 3  # the stream's request, read compressed, ran the model


async def test_tritonclient_grpc_compression_algorithm(demo: ServerInfo) -> None:
    """tritonclient.grpc in a process of its own (tests/support/triton_grpc_client.py)."""
    done = await trio.run_process(
        [sys.executable, "-m", "tests.support.triton_grpc_client",
         f"127.0.0.1:{demo.grpc_port}", "compressed", "gzip", "deflate"],
        cwd=ROOT, capture_stdout=True, capture_stderr=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    answers = json.loads(done.stdout)
    assert answers == {a: {"shape": [50_000], "all_zero": True} for a in ("gzip", "deflate")}


async def test_grpc_message_that_decompresses_past_the_limit(start_server: StartServer) -> None:
    info = await start_server(grpc_max_message_length=100_000)
    message = to_pb2(ZEROS, "identity", raw=True)  # 200 kB, a few hundred bytes compressed

    def run(stub: Any) -> tuple[tuple[grpc.StatusCode, str], Any]:
        refused = code_of(lambda: stub.ModelInfer(message, compression=grpc.Compression.Gzip))
        small = to_pb2(InferenceRequest.model_validate(BODY), "identity")
        return refused, stub.ModelInfer(small, compression=grpc.Compression.Gzip)

    (code, details), answer = await in_thread(info, run)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "once decompressed" in details and "grpc_max_message_length" in details
    assert from_pb2(answer).id == "c1"  # the server goes on


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
    assert compression.decode(_encode(data, codings), header, limit=10**6) == data


@given(data=st.binary(min_size=1, max_size=5000), coding=st.sampled_from(sorted(CODED)))
def test_the_limit_is_on_what_a_body_decompresses_to(data: bytes, coding: str) -> None:
    coded, header = CODED[coding](data), coding.removesuffix("-raw")
    assert compression.decode(coded, header, limit=len(data)) == data
    with pytest.raises(PayloadTooLarge):
        compression.decode(coded, header, limit=len(data) - 1)


def test_gzip_members_are_concatenated_and_unknowns_named() -> None:
    assert compression.decode(gzip.compress(b"ab") + gzip.compress(b"cd"), "gzip", 10) == b"abcd"
    with pytest.raises(UnsupportedMediaType, match="'compress'"):
        compression.decode(b"x", "compress", 10)
    with pytest.raises(UnsupportedMediaType, match="^grpc-encoding 'snappy' is not supported"):
        compression.decode(b"x", "snappy", 10, compression.MESSAGE)
    with pytest.raises(InvalidRequest, match="not valid deflate"):
        compression.decode(zlib.compress(b"ab") + b"tail", "deflate", 10)
