"""V2 / Open Inference Protocol messages, as MLServer's ``mlserver.types`` spells them.

The JSON on the wire is the same as MLServer's: the same field names, ``None`` fields and
unset fields left out when dumping. Pydantic v2 models; the v1-style helpers that MLServer's
documentation uses (``parse_file``, ``parse_raw``, ``dict``, ``json``, ``data.__root__``)
work without deprecation warnings so that its examples run unchanged.

No I/O here: these are plain values, validated once at the edge of the server.
"""

from __future__ import annotations

import enum
import pathlib
from typing import Any

import pydantic
from pydantic import ConfigDict, Field, RootModel

__all__ = [
    "Datatype",
    "Parameters",
    "TensorData",
    "RequestInput",
    "RequestOutput",
    "ResponseOutput",
    "InferenceRequest",
    "InferenceResponse",
    "InferenceErrorResponse",
    "MetadataTensor",
    "MetadataModelResponse",
    "MetadataModelErrorResponse",
    "MetadataServerResponse",
    "MetadataServerErrorResponse",
    "RepositoryIndexRequest",
    "RepositoryIndexResponse",
    "RepositoryIndexResponseItem",
    "RepositoryLoadErrorResponse",
    "RepositoryUnloadErrorResponse",
    "State",
]


class _CompatMixin:
    """MLServer's dump defaults plus pydantic-v1 spellings, without warnings."""

    def model_dump(
        self, *, exclude_unset: bool = True, exclude_none: bool = True, **kw: Any
    ) -> Any:
        return super().model_dump(  # type: ignore[misc]
            exclude_unset=exclude_unset, exclude_none=exclude_none, **kw
        )

    def model_dump_json(
        self, *, exclude_unset: bool = True, exclude_none: bool = True, **kw: Any
    ) -> str:
        return super().model_dump_json(  # type: ignore[misc, no-any-return]
            exclude_unset=exclude_unset, exclude_none=exclude_none, **kw
        )

    def dict(self, **kw: Any) -> Any:  # noqa: A003 - MLServer/pydantic-v1 spelling
        return self.model_dump(**kw)

    def json(self, **kw: Any) -> str:
        return self.model_dump_json(**kw)

    @classmethod
    def parse_obj(cls, obj: Any) -> Any:
        return cls.model_validate(obj)  # type: ignore[attr-defined]

    @classmethod
    def parse_raw(cls, b: str | bytes, **_: Any) -> Any:
        return cls.model_validate_json(b)  # type: ignore[attr-defined]

    @classmethod
    def parse_file(cls, path: str | pathlib.Path, **_: Any) -> Any:
        return cls.model_validate_json(pathlib.Path(path).read_bytes())  # type: ignore[attr-defined]


class BaseModel(_CompatMixin, pydantic.BaseModel):
    model_config = ConfigDict(use_enum_values=True, protected_namespaces=())


class Datatype(enum.StrEnum):
    BOOL = "BOOL"
    UINT8 = "UINT8"
    UINT16 = "UINT16"
    UINT32 = "UINT32"
    UINT64 = "UINT64"
    INT8 = "INT8"
    INT16 = "INT16"
    INT32 = "INT32"
    INT64 = "INT64"
    FP16 = "FP16"
    FP32 = "FP32"
    FP64 = "FP64"
    BYTES = "BYTES"
    BF16 = "BF16"
    """bfloat16 (Triton's): JSON numbers, or the upper half of a float32 as binary data
    (``protocol/binary.py``); no gRPC typed contents."""


class Parameters(BaseModel):
    """Free-form parameters; ``content_type`` and ``headers`` have a meaning of their own."""

    model_config = ConfigDict(extra="allow", use_enum_values=True, protected_namespaces=())

    content_type: str | None = None
    headers: dict[str, Any] | None = None


class TensorData(_CompatMixin, RootModel[list[Any] | Any]):
    """The ``data`` of a tensor: a (possibly nested) list, or a lone value."""

    root: list[Any] | Any = Field(..., title="TensorData")

    def __iter__(self) -> Any:
        return iter(self.root)

    def __getitem__(self, idx: Any) -> Any:
        return self.root[idx]

    def __len__(self) -> int:
        return len(self.root)


# pydantic-v1 spelling of ``root``, used by MLServer's own examples; pydantic refuses the
# name inside a class body, so it is attached afterwards.
TensorData.__root__ = property(lambda self: self.root)  # type: ignore[attr-defined]


class RequestInput(BaseModel):
    name: str
    shape: list[int]
    datatype: Datatype
    parameters: Parameters | None = None
    data: TensorData


class RequestOutput(BaseModel):
    name: str
    parameters: Parameters | None = None


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: Datatype
    parameters: Parameters | None = None
    data: TensorData


class InferenceRequest(BaseModel):
    id: str | None = None
    parameters: Parameters | None = None
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = None


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: Parameters | None = None
    outputs: list[ResponseOutput]


class InferenceErrorResponse(BaseModel):
    error: str | None = None


class MetadataTensor(BaseModel):
    name: str
    datatype: Datatype
    shape: list[int]
    parameters: Parameters | None = None


class MetadataModelResponse(BaseModel):
    name: str
    versions: list[str] | None = None
    platform: str
    inputs: list[MetadataTensor] | None = None
    outputs: list[MetadataTensor] | None = None
    parameters: Parameters | None = None


class MetadataModelErrorResponse(BaseModel):
    error: str


class MetadataServerResponse(BaseModel):
    name: str
    version: str
    extensions: list[str]


class MetadataServerErrorResponse(BaseModel):
    error: str


class State(enum.StrEnum):
    """Model states as the repository API reports them (MLServer's names)."""

    UNKNOWN = "UNKNOWN"
    READY = "READY"
    UNAVAILABLE = "UNAVAILABLE"
    LOADING = "LOADING"
    UNLOADING = "UNLOADING"
    FAILED = "FAILED"


class RepositoryIndexRequest(BaseModel):
    ready: bool | None = None


class RepositoryIndexResponseItem(BaseModel):
    name: str
    version: str | None = None
    state: State
    reason: str


class RepositoryIndexResponse(_CompatMixin, RootModel[list[RepositoryIndexResponseItem]]):
    root: list[RepositoryIndexResponseItem]


class RepositoryLoadErrorResponse(BaseModel):
    error: str | None = None


class RepositoryUnloadErrorResponse(BaseModel):
    error: str | None = None
