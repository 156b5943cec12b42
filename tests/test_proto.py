"""The gRPC protocol code: generated code is fresh, and wire-compatible.

streamwise serves gRPC with betterproto2 messages (src/streamwise/_proto/).
Clients in the wild use stock protobuf + grpcio stubs of the same protocol
(MLServer, KServe, Triton clients), so here the betterproto2 classes are
checked against protobuf classes compiled from the very same
proto/dataplane.proto (tests/support/grpc_stubs.py): same schema, and bytes written by
either side parse into equal values on the other.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import subprocess
import sys
from types import ModuleType
from typing import Any

import betterproto2
import pytest

from streamwise._proto import inference as bp
from streamwise._proto.inference import model_repository as bp_repo
from tests.support.grpc_stubs import load_stubs

ROOT = pathlib.Path(__file__).resolve().parent.parent

U64_MAX = 2**64 - 1
I64_MIN = -(2**63)
I64_MAX = 2**63 - 1


@pytest.fixture(scope="session")
def pb() -> ModuleType:
    """protobuf classes for proto/dataplane.proto (compiled once per process)."""
    return load_stubs()[0]


@pytest.fixture(scope="session")
def pb_grpc() -> ModuleType:
    return load_stubs()[1]


# --------------------------------------------------------------------------
# generated code is up to date
# --------------------------------------------------------------------------


def test_generated_code_is_fresh(tmp_path: pathlib.Path) -> None:
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_proto.py"), "--check"],
        cwd=tmp_path,  # the script must not depend on the working directory
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --------------------------------------------------------------------------
# same schema
# --------------------------------------------------------------------------


def _pb_type_name(field: Any) -> str:
    """protobuf's FieldDescriptor.TYPE_UINT64 -> betterproto2's "uint64"."""
    descriptor_class = type(field)  # google.protobuf.descriptor.FieldDescriptor
    names = {
        getattr(descriptor_class, n): n[len("TYPE_") :].lower()
        for n in dir(descriptor_class)
        if n.startswith("TYPE_")
    }
    return names[field.type]


def _pb_is_repeated(field: Any) -> bool:
    if hasattr(field, "is_repeated"):
        return bool(field.is_repeated)
    return bool(field.label == field.LABEL_REPEATED)  # older protobuf


def _pb_messages(descriptor: Any, prefix: str = "") -> dict[str, Any]:
    """Every message descriptor by betterproto2 class name (nesting flattened)."""
    out = {}
    for msg in descriptor.message_types_by_name.values() if prefix == "" else descriptor:
        if msg.GetOptions().map_entry:
            continue
        name = prefix + msg.name
        out[name] = msg
        out.update(_pb_messages(msg.nested_types, name))
    return out


def test_schema_matches_protobuf(pb: ModuleType) -> None:
    pb_messages = _pb_messages(pb.DESCRIPTOR)
    enums = {name for name in bp.__all__ if isinstance(getattr(bp, name), type)
             and issubclass(getattr(bp, name), betterproto2.Enum)}  # fmt: skip
    assert set(pb_messages) == {
        name for name in bp.__all__ if not name.startswith("GrpcInference") and name not in enums
    }
    # the enums (Triton's DataType): the same names and numbers
    assert enums == set(pb.DESCRIPTOR.enum_types_by_name)
    for name in enums:
        values = pb.DESCRIPTOR.enum_types_by_name[name].values
        assert {m.name: m.value for m in getattr(bp, name)} == {v.name: v.number for v in values}
    for name, desc in pb_messages.items():
        cls = getattr(bp, name)
        bp_fields = {f.name: betterproto2.FieldMetadata.get(f) for f in dataclasses.fields(cls)}
        assert set(bp_fields) == {f.name for f in desc.fields}, name
        for field in desc.fields:
            meta = bp_fields[field.name]
            where = f"{name}.{field.name}"
            assert meta.number == field.number, where
            oneof = field.containing_oneof
            assert meta.group == (oneof.name if oneof else None), where
            entry = field.message_type
            if entry is not None and entry.GetOptions().map_entry:
                assert meta.proto_type == "map" and meta.map_meta is not None, where
                key, value = meta.map_meta
                assert key.proto_type == _pb_type_name(entry.fields_by_name["key"]), where
                assert value.proto_type == _pb_type_name(entry.fields_by_name["value"]), where
            else:
                assert meta.proto_type == _pb_type_name(field), where
                assert bool(meta.repeated) == _pb_is_repeated(field), where


def test_service_matches_protobuf(pb: ModuleType, pb_grpc: ModuleType) -> None:
    service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    mapping = bp.GrpcInferenceServiceBase().__mapping__()
    expected = {}
    for method in service.methods:
        path = f"/{service.full_name}/{method.name}"
        cardinality = {
            (False, False): "UNARY_UNARY",
            (True, True): "STREAM_STREAM",
        }[(method.client_streaming, method.server_streaming)]
        expected[path] = (
            cardinality,
            method.input_type.name,
            method.output_type.name,
        )
    got = {
        path: (handler.cardinality.name, handler.request_type.__name__, handler.reply_type.__name__)
        for path, handler in mapping.items()
    }
    assert got == expected
    assert "/inference.GRPCInferenceService/ModelStreamInfer" in got
    # the grpcio client stub knows the same methods
    assert hasattr(pb_grpc, "GRPCInferenceServiceStub")
    assert hasattr(pb_grpc, "add_GRPCInferenceServiceServicer_to_server")


# --------------------------------------------------------------------------
# same bytes
# --------------------------------------------------------------------------

# Exactly representable in float32, so FP32 values survive both ways unchanged.
FP32 = [0.5, -1.25, 3.0, 1024.0]
FP64 = [0.1, -2.5e300, 5e-324]
BYTES = [b"hello", b"", b"\x00\xff\x80", "naïve".encode()]
INT64 = [I64_MIN, -1, 0, I64_MAX]
RAW = [b"\x00\x00\x80\x3f\x00\x00\x00\x40", b"", bytes(range(256))]


def _bp_params() -> dict[str, bp.InferParameter]:
    return {
        "temperature": bp.InferParameter(double_param=0.25),
        "seed": bp.InferParameter(uint64_param=U64_MAX),
        "max_tokens": bp.InferParameter(int64_param=I64_MIN),
        "stream": bp.InferParameter(bool_param=True),
        "content_type": bp.InferParameter(string_param="np"),
        # zero values inside a oneof must keep their presence
        "zero_bool": bp.InferParameter(bool_param=False),
        "zero_int": bp.InferParameter(int64_param=0),
        "zero_double": bp.InferParameter(double_param=0.0),
        "empty_string": bp.InferParameter(string_param=""),
        "unset": bp.InferParameter(),
    }


def _pb_params(pb: ModuleType) -> dict[str, Any]:
    P = pb.InferParameter
    return {
        "temperature": P(double_param=0.25),
        "seed": P(uint64_param=U64_MAX),
        "max_tokens": P(int64_param=I64_MIN),
        "stream": P(bool_param=True),
        "content_type": P(string_param="np"),
        "zero_bool": P(bool_param=False),
        "zero_int": P(int64_param=0),
        "zero_double": P(double_param=0.0),
        "empty_string": P(string_param=""),
        "unset": P(),
    }


def _bp_request() -> bp.ModelInferRequest:
    return bp.ModelInferRequest(
        model_name="echo",
        model_version="v1",
        id="req-1",
        parameters=_bp_params(),
        inputs=[
            bp.ModelInferRequestInferInputTensor(
                name="x",
                datatype="FP32",
                shape=[2, 2],
                parameters={"content_type": bp.InferParameter(string_param="np")},
                contents=bp.InferTensorContents(fp32_contents=FP32),
            ),
            bp.ModelInferRequestInferInputTensor(
                name="prompt",
                datatype="BYTES",
                shape=[4],
                contents=bp.InferTensorContents(bytes_contents=BYTES),
            ),
            bp.ModelInferRequestInferInputTensor(
                name="ids",
                datatype="INT64",
                shape=[4],
                contents=bp.InferTensorContents(int64_contents=INT64, fp64_contents=FP64),
            ),
            # a set-but-empty contents message must stay present
            bp.ModelInferRequestInferInputTensor(
                name="empty", datatype="FP32", shape=[0], contents=bp.InferTensorContents()
            ),
            bp.ModelInferRequestInferInputTensor(name="raw0", datatype="FP32", shape=[2]),
        ],
        outputs=[
            bp.ModelInferRequestInferRequestedOutputTensor(
                name="y", parameters={"binary_data": bp.InferParameter(bool_param=True)}
            )
        ],
        raw_input_contents=RAW,
    )


def _pb_request(pb: ModuleType) -> Any:
    R = pb.ModelInferRequest
    return R(
        model_name="echo",
        model_version="v1",
        id="req-1",
        parameters=_pb_params(pb),
        inputs=[
            R.InferInputTensor(
                name="x",
                datatype="FP32",
                shape=[2, 2],
                parameters={"content_type": pb.InferParameter(string_param="np")},
                contents=pb.InferTensorContents(fp32_contents=FP32),
            ),
            R.InferInputTensor(
                name="prompt",
                datatype="BYTES",
                shape=[4],
                contents=pb.InferTensorContents(bytes_contents=BYTES),
            ),
            R.InferInputTensor(
                name="ids",
                datatype="INT64",
                shape=[4],
                contents=pb.InferTensorContents(int64_contents=INT64, fp64_contents=FP64),
            ),
            R.InferInputTensor(
                name="empty", datatype="FP32", shape=[0], contents=pb.InferTensorContents()
            ),
            R.InferInputTensor(name="raw0", datatype="FP32", shape=[2]),
        ],
        outputs=[
            R.InferRequestedOutputTensor(
                name="y", parameters={"binary_data": pb.InferParameter(bool_param=True)}
            )
        ],
        raw_input_contents=RAW,
    )


def _check_pb_params(params: Any) -> None:
    which = {key: p.WhichOneof("parameter_choice") for key, p in params.items()}
    assert which == {
        "temperature": "double_param",
        "seed": "uint64_param",
        "max_tokens": "int64_param",
        "stream": "bool_param",
        "content_type": "string_param",
        "zero_bool": "bool_param",
        "zero_int": "int64_param",
        "zero_double": "double_param",
        "empty_string": "string_param",
        "unset": None,
    }
    assert params["temperature"].double_param == 0.25
    assert params["seed"].uint64_param == U64_MAX
    assert params["max_tokens"].int64_param == I64_MIN
    assert params["stream"].bool_param is True
    assert params["content_type"].string_param == "np"


def _check_bp_params(params: dict[str, bp.InferParameter]) -> None:
    which = {key: betterproto2.which_one_of(p, "parameter_choice")[0] for key, p in params.items()}
    assert which == {
        "temperature": "double_param",
        "seed": "uint64_param",
        "max_tokens": "int64_param",
        "stream": "bool_param",
        "content_type": "string_param",
        "zero_bool": "bool_param",
        "zero_int": "int64_param",
        "zero_double": "double_param",
        "empty_string": "string_param",
        "unset": "",
    }
    assert params["temperature"].double_param == 0.25
    assert params["seed"].uint64_param == U64_MAX
    assert params["max_tokens"].int64_param == I64_MIN
    assert params["stream"].bool_param is True
    assert params["zero_bool"].bool_param is False
    assert params["zero_int"].int64_param == 0
    assert params["unset"].bool_param is None


def test_request_betterproto2_to_protobuf(pb: ModuleType) -> None:
    data = bytes(_bp_request())
    got = pb.ModelInferRequest.FromString(data)

    assert got == _pb_request(pb)
    # and the interesting parts spelled out
    assert (got.model_name, got.model_version, got.id) == ("echo", "v1", "req-1")
    _check_pb_params(got.parameters)
    x, prompt, ids, empty, raw0 = got.inputs
    assert (x.name, x.datatype, list(x.shape)) == ("x", "FP32", [2, 2])
    assert x.parameters["content_type"].string_param == "np"
    assert list(x.contents.fp32_contents) == FP32
    assert list(prompt.contents.bytes_contents) == BYTES
    assert list(ids.contents.int64_contents) == INT64
    assert list(ids.contents.fp64_contents) == FP64
    assert empty.HasField("contents")
    assert not raw0.HasField("contents")
    assert list(got.raw_input_contents) == RAW
    assert got.outputs[0].parameters["binary_data"].bool_param is True


def test_request_protobuf_to_betterproto2(pb: ModuleType) -> None:
    data = _pb_request(pb).SerializeToString()
    got = bp.ModelInferRequest.parse(data)

    assert got == _bp_request()
    assert bp.ModelInferRequest.FromString(data) == got  # the grpclib codec's entry point
    assert (got.model_name, got.model_version, got.id) == ("echo", "v1", "req-1")
    _check_bp_params(got.parameters)
    x, prompt, ids, empty, raw0 = got.inputs
    assert (x.name, x.datatype, x.shape) == ("x", "FP32", [2, 2])
    assert x.parameters["content_type"].string_param == "np"
    assert x.contents is not None and x.contents.fp32_contents == FP32
    assert prompt.contents is not None and prompt.contents.bytes_contents == BYTES
    assert ids.contents is not None and ids.contents.int64_contents == INT64
    assert ids.contents.fp64_contents == FP64
    assert empty.contents == bp.InferTensorContents()
    assert raw0.contents is None
    assert got.raw_input_contents == RAW
    assert got.outputs[0].parameters["binary_data"].bool_param is True


def test_request_round_trips_both_ways(pb: ModuleType) -> None:
    pb_msg = _pb_request(pb)
    via_bp = bp.ModelInferRequest.parse(pb_msg.SerializeToString())
    assert pb.ModelInferRequest.FromString(bytes(via_bp)) == pb_msg
    bp_msg = _bp_request()
    via_pb = pb.ModelInferRequest.FromString(bytes(bp_msg))
    assert bp.ModelInferRequest.parse(via_pb.SerializeToString()) == bp_msg


def _bp_response() -> bp.ModelInferResponse:
    return bp.ModelInferResponse(
        model_name="echo",
        model_version="v1",
        id="req-1",
        parameters=_bp_params(),
        outputs=[
            bp.ModelInferResponseInferOutputTensor(
                name="y",
                datatype="UINT64",
                shape=[2],
                parameters={"content_type": bp.InferParameter(string_param="np")},
                contents=bp.InferTensorContents(
                    uint64_contents=[0, U64_MAX],
                    uint_contents=[0, 2**32 - 1],
                    int_contents=[-(2**31), 2**31 - 1],
                    bool_contents=[True, False, True],
                ),
            ),
            bp.ModelInferResponseInferOutputTensor(name="raw", datatype="BF16", shape=[3]),
        ],
        raw_output_contents=RAW,
    )


def _pb_response(pb: ModuleType) -> Any:
    R = pb.ModelInferResponse
    return R(
        model_name="echo",
        model_version="v1",
        id="req-1",
        parameters=_pb_params(pb),
        outputs=[
            R.InferOutputTensor(
                name="y",
                datatype="UINT64",
                shape=[2],
                parameters={"content_type": pb.InferParameter(string_param="np")},
                contents=pb.InferTensorContents(
                    uint64_contents=[0, U64_MAX],
                    uint_contents=[0, 2**32 - 1],
                    int_contents=[-(2**31), 2**31 - 1],
                    bool_contents=[True, False, True],
                ),
            ),
            R.InferOutputTensor(name="raw", datatype="BF16", shape=[3]),
        ],
        raw_output_contents=RAW,
    )


def test_response_both_ways(pb: ModuleType) -> None:
    got_pb = pb.ModelInferResponse.FromString(bytes(_bp_response()))
    assert got_pb == _pb_response(pb)
    _check_pb_params(got_pb.parameters)
    assert list(got_pb.raw_output_contents) == RAW
    assert list(got_pb.outputs[0].contents.uint64_contents) == [0, U64_MAX]

    got_bp = bp.ModelInferResponse.parse(_pb_response(pb).SerializeToString())
    assert got_bp == _bp_response()
    _check_bp_params(got_bp.parameters)
    assert got_bp.raw_output_contents == RAW
    assert got_bp.outputs[1].contents is None


def test_metadata_and_repository_messages_both_ways(pb: ModuleType) -> None:
    bp_meta = bp.ModelMetadataResponse(
        name="echo",
        versions=["v1", "v2"],
        platform="streamwise",
        inputs=[
            bp.ModelMetadataResponseTensorMetadata(
                name="x",
                datatype="FP32",
                shape=[-1, 3],
                parameters={"content_type": bp.InferParameter(string_param="np")},
            )
        ],
        outputs=[bp.ModelMetadataResponseTensorMetadata(name="y", datatype="BYTES", shape=[-1])],
        parameters={"streaming": bp.InferParameter(bool_param=True)},
    )
    pb_meta = pb.ModelMetadataResponse(
        name="echo",
        versions=["v1", "v2"],
        platform="streamwise",
        inputs=[
            pb.ModelMetadataResponse.TensorMetadata(
                name="x",
                datatype="FP32",
                shape=[-1, 3],
                parameters={"content_type": pb.InferParameter(string_param="np")},
            )
        ],
        outputs=[pb.ModelMetadataResponse.TensorMetadata(name="y", datatype="BYTES", shape=[-1])],
        parameters={"streaming": pb.InferParameter(bool_param=True)},
    )
    assert pb.ModelMetadataResponse.FromString(bytes(bp_meta)) == pb_meta
    assert bp.ModelMetadataResponse.parse(pb_meta.SerializeToString()) == bp_meta

    bp_load = bp.RepositoryModelLoadRequest(
        repository_name="r",
        model_name="echo",
        parameters={"blob": bp.ModelRepositoryParameter(bytes_param=b"\x00\x01")},
    )
    pb_load = pb.RepositoryModelLoadRequest(
        repository_name="r",
        model_name="echo",
        parameters={"blob": pb.ModelRepositoryParameter(bytes_param=b"\x00\x01")},
    )
    assert pb.RepositoryModelLoadRequest.FromString(bytes(bp_load)) == pb_load
    assert bp.RepositoryModelLoadRequest.parse(pb_load.SerializeToString()) == bp_load

    bp_index = bp.RepositoryIndexResponse(
        models=[bp.RepositoryIndexResponseModelIndex(name="echo", version="v1", state="READY")]
    )
    pb_index = pb.RepositoryIndexResponse(
        models=[pb.RepositoryIndexResponse.ModelIndex(name="echo", version="v1", state="READY")]
    )
    assert pb.RepositoryIndexResponse.FromString(bytes(bp_index)) == pb_index
    assert bp.RepositoryIndexResponse.parse(pb_index.SerializeToString()) == bp_index


def test_legacy_model_repository_service() -> None:
    mapping = bp_repo.ModelRepositoryServiceBase().__mapping__()
    assert set(mapping) == {
        "/inference.model_repository.ModelRepositoryService/RepositoryIndex",
        "/inference.model_repository.ModelRepositoryService/RepositoryModelLoad",
        "/inference.model_repository.ModelRepositoryService/RepositoryModelUnload",
    }
    msg = bp_repo.RepositoryIndexResponse(
        models=[bp_repo.RepositoryIndexResponseModelIndex(name="a", state="READY", reason="")]
    )
    assert bp_repo.RepositoryIndexResponse.parse(bytes(msg)) == msg
    # the legacy index response has the same layout as the data plane one
    assert bp.RepositoryIndexResponse.parse(bytes(msg)).models[0].name == "a"
