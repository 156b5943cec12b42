"""What every file runtime shares: finding the model file as MLServer does, importing its
library (or saying which extra to install), loading and predicting in a worker thread, and
the metadata read from the file.

Libraries like scikit-learn or onnxruntime compute for milliseconds to seconds without
awaiting: called on the event loop they would stop every other request and stream. So a
runtime is a trio model whose ``load`` and ``predict`` hand the work to
``trio.to_thread.run_sync``; the loop stays free, and the call still belongs to the task
(and the cancel scope) of its request. A cancelled call (timeout, client gone, drain)
waits for the thread's computation to end: a thread cannot be interrupted, and an
abandoned one would compute for nobody with the model unloaded under it.

Models load at once, each in its thread, but their imports do not: Python's per-module
import locks raise ``_DeadlockError`` in one of two threads whose imports cross (lightgbm
importing parts of scikit-learn while a scikit-learn pickle loads in another thread did,
in CI). So a runtime imports its library, and unpickles (which imports the classes a
pickle names), holding one process-wide lock; reading other formats runs in parallel.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import os
import pathlib
import threading
import urllib.parse
from collections.abc import Sequence
from types import ModuleType
from typing import Any, ClassVar

import trio

from ..errors import InferenceError, ModelLoadError
from ..model import MLModel
from ..types import (
    Datatype,
    InferenceRequest,
    InferenceResponse,
    MetadataTensor,
    RequestOutput,
)

__all__ = ["FileModel", "model_path", "tensor"]

_IMPORTING = threading.Lock()
"""Held while a runtime imports modules (see the module's docstring)."""


def model_path(settings: Any, wellknown: Sequence[str] = ()) -> pathlib.Path:
    """The model file, as MLServer's ``get_model_uri`` finds it: ``parameters.uri``
    (default: the model's folder) relative to the model-settings file's folder (a model
    from the environment: the repository's; neither: the working directory); a folder is
    searched for the ``wellknown`` file names, in order."""
    params = settings.parameters
    uri: str | None = params.uri if params is not None and params.uri else None
    base = settings.folder if settings.folder is not None else pathlib.Path.cwd()
    name = settings.name
    if uri is None:
        path = pathlib.Path(base)
    else:
        parsed = urllib.parse.urlparse(uri)
        if parsed.scheme not in ("", "file"):
            raise ModelLoadError(
                f"model {name!r}: parameters.uri {uri!r}: only local files are served; copy "
                "the model next to its model-settings.json (KServe's storage initializer "
                "does, into /mnt/models)"
            )
        path = pathlib.Path(urllib.parse.unquote(parsed.path) if parsed.scheme else uri)
        if not path.is_absolute():
            path = pathlib.Path(base) / path
    path = pathlib.Path(os.path.normpath(path))  # as MLServer's
    if path.is_file():
        return path
    if path.is_dir():
        for filename in wellknown:
            if (path / filename).is_file():
                return path / filename
        raise ModelLoadError(
            f"model {name!r}: no model file in the folder {path} (looked for "
            f"{', '.join(wellknown)}); name the file in parameters.uri"
        )
    given = f"parameters.uri {uri!r}" if uri is not None else "no parameters.uri"
    raise ModelLoadError(f"model {name!r}: model file not found: {path} ({given})")


def tensor(name: str, datatype: Datatype | str, shape: list[int]) -> MetadataTensor:
    return MetadataTensor(name=name, datatype=Datatype(datatype), shape=shape)


class FileModel(MLModel):
    """A model served from a file by a library. Subclasses say which library (``library``,
    its ``package`` on PyPI and our ``extra``), the ``format`` (for messages), the
    ``wellknown`` file names, and implement ``_load_file``, ``_predict`` and ``_describe``."""

    async_backend = "trio"

    library: ClassVar[tuple[str, ...]] = ()
    """The modules to import (the first one is the library)."""
    package: ClassVar[str] = ""
    extra: ClassVar[str] = ""
    format: ClassVar[str] = ""
    wellknown: ClassVar[tuple[str, ...]] = ()
    runtime: ClassVar[str] = ""
    """The class's name in messages (MLServer's: SKLearnModel...)."""
    unpickles: ClassVar[bool] = False
    """Loading the file imports modules (a pickle imports the classes it names): it holds
    the import lock too."""

    _bad_input: tuple[type[BaseException], ...] = ()
    """What the library raises for input it cannot take (wrong feature count...): 400."""

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self.path: pathlib.Path | None = None
        self._file_inputs: list[MetadataTensor] = []
        self._file_outputs: list[MetadataTensor] = []

    # -- metadata: declared in model-settings.json, else read from the file --
    @property
    def inputs(self) -> list[MetadataTensor]:
        return list(self._settings.inputs) or list(self._file_inputs)

    @property
    def outputs(self) -> list[MetadataTensor]:
        return list(self._settings.outputs) or list(self._file_outputs)

    # -- lifecycle --
    async def load(self) -> bool:
        path = model_path(self._settings, self.wellknown)
        await trio.to_thread.run_sync(self._load_in_thread, path)
        self.path = path
        return True

    def _import(self, path: pathlib.Path) -> list[ModuleType]:
        modules = []
        for module in self.library:
            try:
                modules.append(importlib.import_module(module))
            except ImportError as exc:
                raise ModelLoadError(
                    f"model {self.name!r}: cannot load {path} ({self.format}): "
                    f"{self.package} is not installed ({exc}): "
                    f'pip install "streamwise[{self.extra}]"'
                ) from exc
            except Exception as exc:  # installed, and broken (a native library missing...)
                raise ModelLoadError(
                    f"model {self.name!r}: cannot load {path} ({self.format}): {module} "
                    f"cannot be imported: {type(exc).__name__}: {exc}"
                ) from exc
        return modules

    def _load_in_thread(self, path: pathlib.Path) -> None:
        with _IMPORTING:
            modules = self._import(path)
        try:
            with _IMPORTING if self.unpickles else contextlib.nullcontext():
                self._load_file(path, *modules)
        except Exception as exc:
            try:
                version = f" {importlib.metadata.version(self.package)}"
            except importlib.metadata.PackageNotFoundError:  # e.g. installed as xgboost-cpu
                found = getattr(modules[0], "__version__", None) if modules else None
                version = f" {found}" if isinstance(found, str) else ""
            raise ModelLoadError(
                f"model {self.name!r}: cannot load {path} as {self.format} "
                f"({self.package}{version}): "
                f"{type(exc).__name__}: {str(exc).strip() or '(no message)'}"
            ) from exc
        self._file_inputs, self._file_outputs = self._describe()

    def _load_file(self, path: pathlib.Path, *modules: ModuleType) -> None:
        raise NotImplementedError

    def _describe(self) -> tuple[list[MetadataTensor], list[MetadataTensor]]:
        """The inputs and outputs the loaded file tells of (metadata only: requests are
        checked against the declared ones alone)."""
        return [], []

    async def unload(self) -> bool:
        self._forget()
        return True

    def _forget(self) -> None:
        """Let the loaded model go."""

    # -- inference --
    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        return await trio.to_thread.run_sync(self._predict_in_thread, payload)

    def _predict_in_thread(self, payload: InferenceRequest) -> InferenceResponse:
        try:
            outputs = self._predict(payload)
        except self._bad_input as exc:
            raise InferenceError(
                f"model {self.name!r}: {type(exc).__name__}: {str(exc).strip()}"
            ) from exc
        return InferenceResponse(model_name=self.name, model_version=self.version, outputs=outputs)

    def _predict(self, payload: InferenceRequest) -> list[Any]:
        raise NotImplementedError

    # -- helpers --
    def _requested(
        self, payload: InferenceRequest, valid: Sequence[str], default: str
    ) -> list[RequestOutput]:
        """The outputs asked for (``default`` when none), each one of ``valid``."""
        if not payload.outputs:
            return [RequestOutput(name=default)]
        for output in payload.outputs:
            if output.name not in valid:
                names = ", ".join(repr(v) for v in valid)
                raise InferenceError(
                    f"{self.runtime} only supports {names} as outputs "
                    f"({output.name!r} was requested)"
                )
        return list(payload.outputs)

    def _check_one_input(self, payload: InferenceRequest) -> None:
        """A request codec (``pd``) makes one value of many inputs; without one, these
        runtimes take a single tensor."""
        content_type = payload.parameters.content_type if payload.parameters else None
        params = self._settings.parameters
        content_type = content_type or (params.content_type if params else None)
        if len(payload.inputs) != 1 and content_type is None:
            raise InferenceError(
                f"{self.runtime} takes one input tensor, or one input per column with the "
                f'request\'s content type "pd" ({len(payload.inputs)} inputs were given)'
            )
