"""Prints the server CPU one short stream costs: any V2 server, by its process id.

    python -m scripts.bench_stream_start PID [--grpc HOST:PORT | --rest URL] [-n N]
        [--model tokens] [--input n] [--value 1]

Opens N (default 2000) streams one after the other, each asking ``--model`` for a stream
with one BYTES input (``--input``, holding ``--value``), and reads the whole stream: over
REST a new connection per stream (``generate_stream``, SSE), over gRPC one channel
(``ModelStreamInfer``). The server's CPU time is read from ``/proc/PID/stat`` before and
after (Linux), after 50 streams of warm-up. The defaults fit the side-by-side harness's
``tokens`` model, whose input ``n`` is the number of tokens: a one-token stream measures
what starting and ending a stream costs (docs/performance.md, "Where the CPU of one stream
goes").
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import time
import urllib.parse


def server_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def rest_stream(url: str, model: str, name: str, value: str) -> None:
    parts = urllib.parse.urlsplit(url)
    body = json.dumps(
        {"inputs": [{"name": name, "shape": [1], "datatype": "BYTES", "data": [value]}]}
    ).encode()
    request = (
        f"POST {parts.path.rstrip('/')}/v2/models/{model}/generate_stream HTTP/1.1\r\n"
        f"Host: {parts.netloc}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with socket.create_connection((parts.hostname, parts.port or 80)) as sock:
        sock.sendall(request)
        got = b""
        while not got.endswith(b"0\r\n\r\n"):  # the chunked body's end
            data = sock.recv(65536)
            if not data:
                break
            got += data
    if not got.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"the server answered: {got[:200]!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("pid", type=int)
    parser.add_argument("--rest", default="http://127.0.0.1:8080")
    parser.add_argument("--grpc")
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--model", default="tokens")
    parser.add_argument("--input", default="n")
    parser.add_argument("--value", default="1")
    args = parser.parse_args()

    if args.grpc:
        import grpc

        from tests.support.grpc_stubs import load_stubs

        pb2, pb2_grpc = load_stubs()
        stub = pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(args.grpc))
        tensor = pb2.ModelInferRequest.InferInputTensor(
            name=args.input,
            datatype="BYTES",
            shape=[1],
            contents=pb2.InferTensorContents(bytes_contents=[args.value.encode()]),
        )
        request = pb2.ModelInferRequest(model_name=args.model, inputs=[tensor])

        def one() -> None:
            for _ in stub.ModelStreamInfer(iter([request])):
                pass

        transport = f"gRPC {args.grpc}, one channel"
    else:

        def one() -> None:
            rest_stream(args.rest, args.model, args.input, args.value)

        transport = f"REST {args.rest}, a connection per stream"

    for _ in range(50):
        one()
    cpu, wall = server_cpu_s(args.pid), time.perf_counter()
    for _ in range(args.n):
        one()
    cpu, wall = server_cpu_s(args.pid) - cpu, time.perf_counter() - wall
    print(
        f"{transport}: {args.n} streams, {wall / args.n * 1e3:.2f} ms each, "
        f"server CPU {cpu / args.n * 1e3:.2f} ms each"
    )


if __name__ == "__main__":
    main()
