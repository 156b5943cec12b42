"""Standard protobuf + grpcio stubs for proto/dataplane.proto, built on demand.

Tests use these as an independent reference implementation of the wire format
and as a stock grpcio client for the server::

    from tests.support.grpc_stubs import load_stubs
    dataplane_pb2, dataplane_pb2_grpc = load_stubs()
    stub = dataplane_pb2_grpc.GRPCInferenceServiceStub(channel)

The stubs are compiled with grpc_tools.protoc once per process into a
tempfile.mkdtemp() folder and imported as the submodules of a private package
(`_streamwise_grpc_stubs`), so nothing named `dataplane_pb2` lands on sys.path
or in sys.modules. Compiling once matters: protobuf registers `dataplane.proto`
in its default descriptor pool on import, and a second registration of the
same file from another copy would raise.
"""

from __future__ import annotations

import atexit
import functools
import importlib
import importlib.util
import pathlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar

import grpc
import pytest
import trio

from streamwise import ServerInfo
from streamwise._proto import inference as bp
from streamwise.grpc.convert import request_to_proto, response_from_proto
from streamwise.types import InferenceRequest, InferenceResponse

from .paths import ROOT

T = TypeVar("T")

PROTO_DIR = ROOT / "proto"
PACKAGE = "_streamwise_grpc_stubs"


@functools.cache
def load_stubs() -> tuple[ModuleType, ModuleType]:
    """Return (dataplane_pb2, dataplane_pb2_grpc), compiling them on first use."""
    if PACKAGE in sys.modules:  # e.g. the module itself was imported twice
        return (
            importlib.import_module(f"{PACKAGE}.dataplane_pb2"),
            importlib.import_module(f"{PACKAGE}.dataplane_pb2_grpc"),
        )

    tmp = tempfile.mkdtemp(prefix="streamwise-grpc-stubs-")
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)  # modules stay loaded
    out = pathlib.Path(tmp) / PACKAGE
    out.mkdir()
    (out / "__init__.py").write_text("")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTO_DIR}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            str(PROTO_DIR / "dataplane.proto"),
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"grpc_tools.protoc failed:\n{proc.stdout}{proc.stderr}")

    # grpc_python_out writes `import dataplane_pb2 as dataplane__pb2`; make it
    # relative so it resolves inside our private package.
    grpc_py = out / "dataplane_pb2_grpc.py"
    source = grpc_py.read_text()
    absolute = "import dataplane_pb2 as dataplane__pb2"
    if absolute not in source:
        raise RuntimeError(f"unexpected import layout in {grpc_py}")
    grpc_py.write_text(source.replace(absolute, "from . import dataplane_pb2 as dataplane__pb2"))

    spec = importlib.util.spec_from_file_location(
        PACKAGE, out / "__init__.py", submodule_search_locations=[str(out)]
    )
    assert spec is not None and spec.loader is not None
    package = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE] = package
    spec.loader.exec_module(package)

    return (
        importlib.import_module(f"{PACKAGE}.dataplane_pb2"),
        importlib.import_module(f"{PACKAGE}.dataplane_pb2_grpc"),
    )


async def in_thread(info: ServerInfo, fn: Callable[[Any], T], **channel_options: Any) -> T:
    """Run ``fn(stub)`` with a blocking grpcio stub in a worker thread."""
    _, pb2_grpc = load_stubs()

    def run() -> T:
        options = list(channel_options.items())
        with grpc.insecure_channel(f"127.0.0.1:{info.grpc_port}", options=options) as channel:
            return fn(pb2_grpc.GRPCInferenceServiceStub(channel))

    return await trio.to_thread.run_sync(run)


def code_of(fn: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    """The status code and details of the RpcError ``fn()`` raises."""
    with pytest.raises(grpc.RpcError) as info:
        fn()
    return info.value.code(), info.value.details()


def to_pb2(request: InferenceRequest, model: str, raw: bool = False) -> Any:
    """``request`` for ``model`` as a stock ModelInferRequest (written by streamwise's
    encoder, parsed by protobuf's)."""
    pb2, _ = load_stubs()
    return pb2.ModelInferRequest.FromString(bytes(request_to_proto(request, model, raw=raw)))


def from_pb2(msg: Any) -> InferenceResponse:
    """A stock ModelInferResponse as streamwise's InferenceResponse."""
    return response_from_proto(bp.ModelInferResponse.parse(msg.SerializeToString()))
