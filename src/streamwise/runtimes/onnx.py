"""ONNX models through onnxruntime: one ``InferenceSession`` per model, run in a worker
thread (onnxruntime's sessions serve concurrent runs).

The model's graph is its metadata: its inputs and outputs, their datatypes and shapes
(-1 for a dimension the graph leaves open). A request gives the graph's inputs by name
(a model of one input takes a request of one input whatever its name); each is cast to
the graph's type when NumPy can do so without changing its kind (FP64 data into an FP32
input, INT32 into INT64; not text into numbers). The outputs are those requested, else
all of the graph's. A sequence of maps (skl2onnx's ``ZipMap`` of class probabilities)
becomes a 2-D tensor, one column per key in the keys' order.
"""

from __future__ import annotations

import pathlib
from types import ModuleType
from typing import Any

import numpy as np

from ..codecs import NumpyCodec
from ..codecs.numpy import to_dtype
from ..errors import InferenceError
from ..types import Datatype, InferenceRequest, MetadataTensor, RequestOutput, ResponseOutput
from ._files import FileModel, tensor

__all__ = ["OnnxModel"]

_DATATYPES = {
    "tensor(float)": Datatype.FP32,
    "tensor(double)": Datatype.FP64,
    "tensor(float16)": Datatype.FP16,
    "tensor(int8)": Datatype.INT8,
    "tensor(int16)": Datatype.INT16,
    "tensor(int32)": Datatype.INT32,
    "tensor(int64)": Datatype.INT64,
    "tensor(uint8)": Datatype.UINT8,
    "tensor(uint16)": Datatype.UINT16,
    "tensor(uint32)": Datatype.UINT32,
    "tensor(uint64)": Datatype.UINT64,
    "tensor(bool)": Datatype.BOOL,
    "tensor(string)": Datatype.BYTES,
}


def _datatype(onnx_type: str) -> Datatype:
    """The V2 datatype of an ONNX type; a sequence of maps: its values'."""
    if onnx_type in _DATATYPES:
        return _DATATYPES[onnx_type]
    if onnx_type.startswith("seq(map("):  # seq(map(int64,tensor(float)))
        return _DATATYPES.get(onnx_type[len("seq(map(") :].split(",", 1)[1][:-2], Datatype.BYTES)
    return Datatype.BYTES


def _shape(shape: Any, onnx_type: str) -> list[int]:
    if onnx_type.startswith("seq(map("):
        return [-1, -1]
    return [d if isinstance(d, int) and d >= 0 else -1 for d in (shape or [])]


def _table(value: Any) -> Any:
    """A sequence of maps as a 2-D array (rows, keys in order); anything else as it is."""
    if isinstance(value, list) and value and isinstance(value[0], dict):
        keys = list(value[0])
        return np.array([[row[k] for k in keys] for row in value])
    return value


class OnnxModel(FileModel):
    """An ONNX model from ``model.onnx``, run by onnxruntime on the CPU."""

    library = ("onnxruntime",)
    package = "onnxruntime"
    extra = "onnx"
    format = "an ONNX model"
    wellknown = ("model.onnx",)
    runtime = "OnnxModel"

    def _load_file(self, path: pathlib.Path, *modules: ModuleType) -> None:
        (ort,) = modules
        self._session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self._graph_inputs = {i.name: i for i in self._session.get_inputs()}
        self._graph_outputs = [o.name for o in self._session.get_outputs()]
        errors = ort.capi.onnxruntime_pybind11_state
        self._bad_input = (errors.InvalidArgument, errors.Fail, ValueError, TypeError)

    def _forget(self) -> None:
        self._session = None

    def _describe(self) -> tuple[list[MetadataTensor], list[MetadataTensor]]:
        def describe(node: Any) -> MetadataTensor:
            return tensor(node.name, _datatype(node.type), _shape(node.shape, node.type))

        session = self._session
        return [describe(i) for i in session.get_inputs()], [
            describe(o) for o in session.get_outputs()
        ]

    def _feed(self, payload: InferenceRequest) -> dict[str, Any]:
        graph = self._graph_inputs
        lone = len(graph) == 1 and len(payload.inputs) == 1
        feeds: dict[str, Any] = {}
        for request_input in payload.inputs:
            name = next(iter(graph)) if lone else request_input.name
            node = graph.get(name)
            if node is None:
                raise InferenceError(
                    f"model {self.name!r}: unexpected input {request_input.name!r}; the "
                    f"model takes {sorted(graph)}"
                )
            value = np.asarray(self.decode(request_input, default_codec=NumpyCodec))
            feeds[name] = self._cast(name, value, _datatype(node.type))
        missing = sorted(set(graph) - set(feeds))
        if missing:
            raise InferenceError(f"model {self.name!r}: missing input(s) {missing}")
        return feeds

    def _cast(self, name: str, value: Any, datatype: Datatype) -> Any:
        if datatype is Datatype.BYTES:  # onnxruntime takes str elements
            return np.array(
                [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in value.ravel()],
                dtype=object,
            ).reshape(value.shape)
        dtype = to_dtype(datatype.value)
        if value.dtype == dtype:
            return value
        if not np.can_cast(value.dtype, dtype, casting="same_kind") and not (
            value.dtype.kind in "biu" and dtype.kind in "biuf"
        ):
            raise InferenceError(
                f"model {self.name!r}: input {name!r} takes {datatype.value}, "
                f"which {value.dtype} data does not convert to"
            )
        return value.astype(dtype)

    def _predict(self, payload: InferenceRequest) -> list[ResponseOutput]:
        requested = payload.outputs or []
        names = [o.name for o in requested] or list(self._graph_outputs)
        unknown = [n for n in names if n not in self._graph_outputs]
        if unknown:
            raise InferenceError(
                f"model {self.name!r}: unknown output(s) {unknown}; the model gives "
                f"{self._graph_outputs}"
            )
        feeds = self._feed(payload)
        results = self._session.run(names, feeds)
        by_name = {o.name: o for o in requested}
        outputs = []
        for name, value in zip(names, results, strict=True):
            request_output = by_name.get(name)
            if request_output is None:
                request_output = RequestOutput(name=name)
            outputs.append(self.encode(_table(value), request_output, default_codec=NumpyCodec))
        return outputs
