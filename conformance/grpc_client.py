"""A grpcio client for the V2 gRPC services, from protos compiled under private names.

The stubs of mlserver, tritonclient and kserve all register ``inference.*`` messages in
protobuf's default descriptor pool, and two of them in one process collide (``duplicate
symbol 'inference.ServerLiveRequest'``). So the suite compiles the protocol's ``.proto``
files (the repository's ``proto/`` folder, or ``--proto-dir``) with their *protobuf*
package renamed (``inference`` -> ``v2conformance.inference``) into a private Python
package, and calls the methods by their wire paths (``/inference.GRPCInferenceService/...``).
Message type names never travel on the wire, so the bytes are those of the protocol;
the renamed messages can live beside anyone's stubs.
"""

from __future__ import annotations

import atexit
import functools
import importlib
import importlib.util
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
from types import ModuleType
from typing import Any

import grpc
import numpy as np

PACKAGE = "_v2conformance_stubs"
PROTO_PACKAGE = "v2conformance"
SERVICE = "/inference.GRPCInferenceService/"
REPOSITORY_SERVICE = "/inference.model_repository.ModelRepositoryService/"

# method -> (request message, response message, streaming)
DATAPLANE = {
    "ServerLive": ("ServerLiveRequest", "ServerLiveResponse", False),
    "ServerReady": ("ServerReadyRequest", "ServerReadyResponse", False),
    "ModelReady": ("ModelReadyRequest", "ModelReadyResponse", False),
    "ServerMetadata": ("ServerMetadataRequest", "ServerMetadataResponse", False),
    "ModelMetadata": ("ModelMetadataRequest", "ModelMetadataResponse", False),
    "ModelInfer": ("ModelInferRequest", "ModelInferResponse", False),
    "ModelStreamInfer": ("ModelInferRequest", "ModelInferResponse", True),
    # Triton's: the configuration RPC, and ModelStreamInfer read as Triton's stream (the
    # same method path: which one a server speaks, --grpc-stream-wrapper says)
    "ModelConfig": ("ModelConfigRequest", "ModelConfigResponse", False),
    "TritonModelStreamInfer": ("ModelInferRequest", "ModelStreamInferResponse", True),
    "RepositoryIndex": ("RepositoryIndexRequest", "RepositoryIndexResponse", False),
    "RepositoryModelLoad": ("RepositoryModelLoadRequest", "RepositoryModelLoadResponse", False),
    "RepositoryModelUnload": (
        "RepositoryModelUnloadRequest",
        "RepositoryModelUnloadResponse",
        False,
    ),
}
REPOSITORY = {name: spec for name, spec in DATAPLANE.items() if name.startswith("Repository")}
PATHS = {"TritonModelStreamInfer": "ModelStreamInfer"}
"""Methods bound under another name than their path's."""

MAX_MESSAGE = 256 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
]


@functools.cache
def compile_protos(proto_dir: pathlib.Path) -> tuple[ModuleType, ModuleType | None]:
    """(dataplane messages, model-repository messages or None), compiled once a process."""
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="v2conformance-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)  # modules stay loaded
    src, out = tmp / "src", tmp / PACKAGE
    src.mkdir()
    out.mkdir()
    (out / "__init__.py").write_text("")
    names = {"dataplane.proto": "v2conformance_dataplane.proto"}
    if (proto_dir / "model_repository.proto").exists():
        names["model_repository.proto"] = "v2conformance_model_repository.proto"
    for original, private in names.items():
        text = (proto_dir / original).read_text()
        text, n = re.subn(
            r"^package\s+inference\b", f"package {PROTO_PACKAGE}.inference", text, flags=re.M
        )
        if n != 1:
            raise RuntimeError(f"{proto_dir / original}: no `package inference...;` line")
        (src / private).write_text(text)
    proc = subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{src}", f"--python_out={out}"]
        + [str(src / p) for p in names.values()],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"grpc_tools.protoc failed:\n{proc.stdout}{proc.stderr}")
    spec = importlib.util.spec_from_file_location(
        PACKAGE, out / "__init__.py", submodule_search_locations=[str(out)]
    )
    assert spec is not None and spec.loader is not None
    package = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE] = package
    spec.loader.exec_module(package)
    dataplane = importlib.import_module(f"{PACKAGE}.v2conformance_dataplane_pb2")
    repository = None
    if "model_repository.proto" in names:
        repository = importlib.import_module(f"{PACKAGE}.v2conformance_model_repository_pb2")
    return dataplane, repository


class Client:
    """``client.ModelInfer(pb.ModelInferRequest(...), timeout=...)`` and so on, for every
    RPC of GRPCInferenceService; ``client.repository.RepositoryIndex(...)`` for MLServer's
    separate ModelRepositoryService. ``client.pb`` holds the message classes. A method
    whose messages the protos lack (``--proto-dir`` without Triton's) is not bound."""

    def __init__(self, target: str, proto_dir: pathlib.Path) -> None:
        self.target = target
        self.pb, self.repository_pb = compile_protos(proto_dir)
        self.channel = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
        self._bind(self, self.pb, SERVICE, DATAPLANE)
        self.repository: Any = None
        if self.repository_pb is not None:
            self.repository = type("RepositoryService", (), {})()
            self._bind(self.repository, self.repository_pb, REPOSITORY_SERVICE, REPOSITORY)

    def _bind(
        self, obj: Any, pb: ModuleType, prefix: str, methods: dict[str, tuple[str, str, bool]]
    ) -> None:
        for method, (req, resp, streaming) in methods.items():
            if not (hasattr(pb, req) and hasattr(pb, resp)):
                continue
            factory = self.channel.stream_stream if streaming else self.channel.unary_unary
            setattr(
                obj,
                method,
                factory(
                    prefix + PATHS.get(method, method),
                    request_serializer=getattr(pb, req).SerializeToString,
                    response_deserializer=getattr(pb, resp).FromString,
                ),
            )

    def close(self) -> None:
        self.channel.close()


def code_of(error: grpc.RpcError) -> grpc.StatusCode:
    return error.code()  # type: ignore[attr-defined, no-any-return]


def details_of(error: grpc.RpcError) -> str:
    return str(error.details() or "")  # type: ignore[attr-defined]


# -- tensor contents --
# datatype -> (the InferTensorContents field that carries it, or None: raw only; numpy dtype)
CONTENTS: dict[str, tuple[str | None, str]] = {
    "BOOL": ("bool_contents", "?"),
    "UINT8": ("uint_contents", "<u1"),
    "UINT16": ("uint_contents", "<u2"),
    "UINT32": ("uint_contents", "<u4"),
    "UINT64": ("uint64_contents", "<u8"),
    "INT8": ("int_contents", "<i1"),
    "INT16": ("int_contents", "<i2"),
    "INT32": ("int_contents", "<i4"),
    "INT64": ("int64_contents", "<i8"),
    "FP16": (None, "<f2"),
    "FP32": ("fp32_contents", "<f4"),
    "FP64": ("fp64_contents", "<f8"),
    "BYTES": ("bytes_contents", "O"),
}


def encode_raw(datatype: str, values: list[Any]) -> bytes:
    """Values as one ``raw_*_contents`` entry: little-endian, BYTES elements each behind a
    4-byte little-endian length."""
    if datatype == "BYTES":
        return b"".join(len(v).to_bytes(4, "little") + v for v in values)
    return np.array(values, dtype=CONTENTS[datatype][1]).tobytes()


def decode_raw(datatype: str, raw: bytes) -> list[Any]:
    if datatype != "BYTES":
        return np.frombuffer(raw, dtype=CONTENTS[datatype][1]).tolist()  # type: ignore
    values, at = [], 0
    while at < len(raw):
        if at + 4 > len(raw):
            raise ValueError(f"BYTES raw contents cut inside a length prefix: {raw[at:]!r}")
        size = int.from_bytes(raw[at : at + 4], "little")
        if at + 4 + size > len(raw):
            raise ValueError(f"BYTES raw contents cut inside an element of {size} bytes")
        values.append(raw[at + 4 : at + 4 + size])
        at += 4 + size
    return values


def output_values(response: Any, index: int) -> list[Any]:
    """The flat values of ``response.outputs[index]``, from ``raw_output_contents`` when
    the response uses it, else from the typed field of the output's datatype."""
    output = response.outputs[index]
    if response.raw_output_contents:
        return decode_raw(output.datatype, response.raw_output_contents[index])
    field = CONTENTS[output.datatype][0]
    if field is None:
        raise ValueError(f"{output.datatype} output {output.name!r} has no raw contents")
    return list(getattr(output.contents, field))


# -- statuses --
CLIENT_ERRORS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
}


def attempt(method: Any, request: Any, timeout: float = 10) -> tuple[Any, grpc.RpcError | None]:
    """(reply, None) or (None, the error) of one unary call."""
    try:
        return method(request, timeout=timeout), None
    except grpc.RpcError as error:
        return None, error


def describe(error: grpc.RpcError | None) -> str:
    return "OK" if error is None else f"{code_of(error).name} {details_of(error)[:200]!r}"


def expect_client_error(
    error: grpc.RpcError | None,
    deviation: Any,
    what: str,
    preferred: grpc.StatusCode = grpc.StatusCode.NOT_FOUND,
) -> None:
    """A client mistake must end with ``preferred``; another client-error status is a
    deviation; OK (accepted), UNKNOWN, INTERNAL and the rest fail: they hide the mistake."""
    assert error is not None, f"{what}: accepted (OK), not {preferred.name}"
    code = code_of(error)
    assert code in CLIENT_ERRORS, f"{what}: {describe(error)}, not a client error status"
    if code != preferred:
        deviation(f"{what}: {code.name}, not {preferred.name}")


def expect_model_error(error: grpc.RpcError | None, deviation: Any, what: str) -> None:
    """A model that raised: a non-OK status with a message; INTERNAL is the status of a
    server-side fault (UNKNOWN and others are deviations), OK hides the failure."""
    assert error is not None, f"{what}: ended OK, the failure hidden"
    assert details_of(error).strip(), f"{what}: {code_of(error).name} with no message"
    if code_of(error) != grpc.StatusCode.INTERNAL:
        deviation(f"{what}: {describe(error)}, not INTERNAL")


def still_live(client: Client, live: Any) -> None:
    """``live()`` (REST) and gRPC ServerLive both still answer."""
    live()
    reply, error = attempt(client.ServerLive, client.pb.ServerLiveRequest())
    assert error is None, f"gRPC ServerLive afterwards: {describe(error)}"
    assert reply.live is True, "gRPC ServerLive false afterwards"
