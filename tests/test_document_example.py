"""The document's files, served by ``python -m src serve DIR``: its REST client (httpx +
httpx-sse) and its gRPC client flow (grpcio, ModelStreamInfer) print the six words as the
model produces them, about 0.5 s apart, both against one process."""

from __future__ import annotations

import asyncio
import os
import pathlib
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import grpc
import pytest

from streamwise import types
from streamwise.codecs import StringCodec
from tests.support import DOCUMENT, served_in_subprocess
from tests.support.grpc_stubs import from_pb2, load_stubs, to_pb2

_, pb2_grpc = load_stubs()

REPO = DOCUMENT.parent.parent
WORDS = ["What", " is", " the", " capital", " of", " France?"]


@pytest.fixture
def document_server(tmp_path: pathlib.Path) -> Iterator[tuple[int, int]]:
    for name in ("settings.json", "model-settings.json", "text_model.py"):
        shutil.copy(DOCUMENT / name, tmp_path / name)
    with served_in_subprocess(tmp_path) as ports:
        yield ports


def start_rest_client(port: int, folder: pathlib.Path) -> subprocess.Popen[bytes]:
    client = (
        (DOCUMENT / "rest_client.py").read_text().replace("localhost:8080", f"localhost:{port}")
    )
    (folder / "client.py").write_text(client)
    shutil.copy(DOCUMENT / "generate-request.json", folder / "generate-request.json")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.Popen(
        [sys.executable, "-u", "client.py"], cwd=folder, stdout=subprocess.PIPE, env=env
    )


def read_lines(proc: subprocess.Popen[bytes], start: float) -> tuple[list[str], list[float]]:
    lines, arrivals = [], []
    with proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.decode().rstrip("\n"))
            arrivals.append(time.monotonic() - start)
    assert proc.returncode == 0
    return lines, arrivals


def assert_paced(arrivals: list[float]) -> None:
    # Incremental delivery, not one burst at the end: the model sleeps 0.5 s before each
    # word, so six words span at least 2.5 s, and the typical gap is near 0.5 s. (Lower
    # bounds only: a slow machine can stretch the gaps, it cannot shrink them.)
    gaps = sorted(b - a for a, b in zip(arrivals, arrivals[1:], strict=False))
    assert arrivals[-1] - arrivals[0] >= 2.0, arrivals
    assert gaps[len(gaps) // 2] >= 0.3, arrivals


def test_document_rest_client_prints_six_words_as_they_come(
    document_server: tuple[int, int], tmp_path: pathlib.Path
) -> None:
    start = time.monotonic()
    lines, arrivals = read_lines(start_rest_client(document_server[0], tmp_path), start)
    assert lines == [repr([w]) for w in WORDS]
    assert_paced(arrivals)


async def document_grpc_client(port: int) -> list[tuple[list[str], float]]:
    """The document's gRPC client flow: grpc.aio, stubs compiled from proto/, the request
    file through StringCodec, ModelStreamInfer with one request."""
    inference_request = types.InferenceRequest.parse_file(DOCUMENT / "generate-request.json")
    # need to convert from string to bytes for grpc
    inference_request.inputs[0] = StringCodec.encode_input(
        "prompt", inference_request.inputs[0].data.__root__
    )
    inference_request_g = to_pb2(inference_request, "text-model")

    async def get_inference_request_stream(inference_request):  # type: ignore[no-untyped-def]
        yield inference_request

    got = []
    start = time.monotonic()
    async with grpc.aio.insecure_channel(f"localhost:{port}") as grpc_channel:
        grpc_stub = pb2_grpc.GRPCInferenceServiceStub(grpc_channel)
        inference_request_stream = get_inference_request_stream(inference_request_g)
        async for response in grpc_stub.ModelStreamInfer(inference_request_stream):
            response = from_pb2(response)
            got.append((StringCodec.decode_output(response.outputs[0]), time.monotonic() - start))
    return got


def test_document_grpc_client_while_rest_streams_from_the_same_process(
    document_server: tuple[int, int], tmp_path: pathlib.Path
) -> None:
    http_port, grpc_port = document_server
    start = time.monotonic()
    rest = start_rest_client(http_port, tmp_path)
    # the document's client on an asyncio loop of its own, as it runs for a user
    with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
        got = runner.run(document_grpc_client(grpc_port))
    assert [words for words, _ in got] == [[w] for w in WORDS]
    assert_paced([t for _, t in got])
    lines, _ = read_lines(rest, start)
    assert lines == [repr([w]) for w in WORDS]
