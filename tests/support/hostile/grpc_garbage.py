"""gRPC: garbage bytes as the message (random bytes, random wire-format fields, mutated
valid requests)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
from hypothesis import strategies as st

from .common import ANY, Outcome, _cut, pb2, squeeze
from .grpc_messages import Grpc, _grpc_status_problem, grpc_cases


def _varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 70) - 1
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _wire_field(number: int, wire: int, payload: Any) -> bytes:
    key = _varint(number << 3 | wire)
    if wire == 0:
        return key + _varint(payload)
    if wire == 2:
        return key + _varint(len(payload)) + payload
    return key + payload


def _fields(inner: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    one = st.one_of(
        st.tuples(st.integers(1, 9), st.just(0), st.integers(0, 2**70)),
        st.tuples(st.integers(1, 9), st.just(1), st.binary(min_size=8, max_size=8)),
        st.tuples(st.integers(1, 9), st.just(5), st.binary(min_size=4, max_size=4)),
        st.tuples(
            st.integers(1, 9),
            st.just(2),
            inner
            | st.binary(max_size=12)
            | st.sampled_from(
                [b"identity", b"FP32", b"BYTES", b"\xff\xfe", b"\xc3(", b"\xed\xa0\x80"]
            ),
        ),
        st.tuples(st.integers(1, 9), st.sampled_from([3, 4, 6, 7]), st.just(b"")),
    ).map(lambda f: _wire_field(*f))
    return st.lists(one, max_size=6).map(b"".join)


WIRE_MESSAGES = st.recursive(st.just(b""), _fields, max_leaves=20)


@st.composite
def mutated_valid_message(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(grpc_cases()).message.SerializeToString())
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        how = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        if how == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif how == "cut":
            del data[i:]
        elif how == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=4))
        else:
            del data[i]
    return bytes(data)


GRPC_GARBAGE = st.one_of(st.binary(max_size=200), WIRE_MESSAGES, mutated_valid_message())
GARBAGE_RPCS = ["ModelInfer", "ModelInfer", "ModelStreamInfer", "ModelStreamInfer",
                "ModelReady", "ModelMetadata", "ServerMetadata", "ServerLive", "RepositoryIndex"]  # fmt: skip


@dataclass
class GrpcGarbage:
    method: str
    messages: list[bytes]

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))

    def __repr__(self) -> str:
        return _cut(squeeze(f"GrpcGarbage({self.method}, messages={self.messages!r})"))


@st.composite
def grpc_garbage_cases(draw: st.DrawFn) -> GrpcGarbage:
    method = draw(st.sampled_from(GARBAGE_RPCS))
    n = draw(st.integers(1, 3)) if method == "ModelStreamInfer" else 1
    messages = draw(st.lists(GRPC_GARBAGE, min_size=n, max_size=n))
    if method == "ModelStreamInfer" and draw(st.booleans()):
        # garbage after a good request: decoded inside the model's request iterator
        messages.insert(0, pb2.ModelInferRequest(model_name="identity").SerializeToString())
    return GrpcGarbage(method, messages)


def send_grpc_garbage(rpc: Grpc, case: GrpcGarbage) -> Outcome:
    try:
        if case.method == "ModelStreamInfer":
            for _ in rpc.stream(case.method)(iter(case.messages), timeout=rpc.timeout):
                pass
        else:
            rpc.unary(case.method)(case.messages[0], timeout=rpc.timeout)
    except grpc.RpcError as exc:
        code, details = exc.code(), exc.details() or ""
        return Outcome(code.name, _grpc_status_problem(code, details, ANY))
    return Outcome("OK")
