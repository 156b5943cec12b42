"""Prints where the memory of an open stream goes: tracemalloc and GC objects per stream.

    python -m scripts.bench_stream_memory [rest|grpc] [STREAMS]     # from the repository root

Serves ``tests/models`` in this process, opens STREAMS (default 300) streams of the
asyncio (MLServer-style) model ``slow-stream-aio`` from a client process (SSE over one
connection each, or ModelStreamInfer over one grpcio channel), waits until every model
holds its stream (two tokens sent, the next a minute away), and compares two tracemalloc
snapshots and the GC's objects: bytes per stream by package, the lines that allocate
most, and objects per stream by type. The collector is left untuned (``gc_tuning``
off) and tracemalloc starts after startup, so only what the streams hold is counted.
"""

from __future__ import annotations

import collections
import gc
import subprocess
import sys
import tracemalloc
from typing import Any

import trio

from streamwise import load_settings, serve
from tests.support import ROOT, TEST_MODELS, probe

MODEL = "slow-stream-aio"
CLIENT = r"""
import json, socket, sys
kind, n, port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if kind == "rest":
    body = json.dumps({"inputs": [{"name": "p", "shape": [1], "datatype": "BYTES", "data": ["x"]}]}).encode()
    request = (b"POST /v2/models/%s/generate_stream HTTP/1.1\r\nHost: x\r\n"
               b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (sys.argv[4].encode(), len(body)) + body)
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
    for s in held:
        s.sendall(request)
    for s in held:
        got = b""
        while got.count(b"data:") < 2:
            data = s.recv(65536)
            if not data:
                raise SystemExit(f"the server closed a stream: {got[:300]!r}")
            got += data
else:
    import grpc
    from tests.support.grpc_stubs import load_stubs  # the working directory is the root
    pb2, pb2_grpc = load_stubs()
    stub = pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
    request = pb2.ModelInferRequest(model_name=sys.argv[4], inputs=[pb2.ModelInferRequest.InferInputTensor(
        name="p", datatype="BYTES", shape=[1], contents=pb2.InferTensorContents(bytes_contents=[b"x"]))])
    held = [stub.ModelStreamInfer(iter([request])) for _ in range(n)]
    for call in held:
        next(call), next(call)
print("held", flush=True)
sys.stdin.readline()
"""


def _package(filename: str) -> str:
    if filename.startswith("<attrs generated methods "):  # attrs classes' __init__
        return filename.split()[-1].split(".")[0]
    if "site-packages/" in filename:
        return filename.split("site-packages/")[1].split("/")[0]
    if "/src/streamwise/" in filename:
        return "streamwise"
    return "/".join(filename.rsplit("/", 2)[-2:])


async def main(kind: str, streams: int) -> None:
    settings = load_settings(
        TEST_MODELS,
        overrides={
            "http_port": 0,
            "grpc_port": 0,
            "metrics_port": 0,
            "log_level": "WARNING",
            "gc_tuning": False,
        },
        environ={},
    )
    async with trio.open_nursery() as nursery:
        info = await nursery.start(serve, settings)
        port = info.http_port if kind == "rest" else info.grpc_port
        gc.collect()
        tracemalloc.start(1)
        types_before = collections.Counter(type(o).__name__ for o in gc.get_objects())
        before = tracemalloc.take_snapshot()
        argv = [sys.executable, "-c", CLIENT, kind, str(streams), str(port), MODEL]
        client = await trio.lowlevel.open_process(
            argv, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert client.stdout is not None and client.stdin is not None
        with trio.fail_after(120):
            said = b""
            while b"held" not in said:
                said += await client.stdout.receive_some()
        gc.collect()
        after = tracemalloc.take_snapshot()
        types_after = collections.Counter(type(o).__name__ for o in gc.get_objects())
        tracemalloc.stop()
        await client.stdin.send_all(b"\n")
        await client.wait()
        info.shutdown()

    stats = after.compare_to(before, "lineno")
    total = sum(s.size_diff for s in stats)
    print(f"{kind}: {streams} open streams of {MODEL}: {total / streams / 1024:.1f} KiB each")
    by_package: collections.Counter[str] = collections.Counter()
    for stat in stats:
        by_package[_package(stat.traceback[0].filename)] += stat.size_diff
    for name, size in by_package.most_common(14):
        print(f"  {size / streams:8.0f} B  {name}")
    print("lines allocating most:")
    for stat in stats[:20]:
        frame: Any = stat.traceback[0]
        where = frame.filename.split("site-packages/")[-1].split("/src/")[-1]
        print(f"  {stat.size_diff / streams:8.0f} B  {where}:{frame.lineno}")
    objects = types_after - types_before
    print(f"GC-tracked objects per stream: {sum(objects.values()) / streams:.0f}")
    for name, count in objects.most_common(15):
        print(f"  {count / streams:6.1f}  {name}")
    probe.finally_at.clear()


if __name__ == "__main__":
    trio.run(
        main,
        sys.argv[1] if len(sys.argv) > 1 else "rest",
        int(sys.argv[2]) if len(sys.argv) > 2 else 300,
    )
