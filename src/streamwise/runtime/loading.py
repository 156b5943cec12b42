"""Loading and unloading models: importing their code, calling their ``load`` and
``unload`` on their backend, and firing the registry's lifecycle events
(:data:`~streamwise.registry.TRANSITIONS`).

The loader also owns the models' lifetime nursery (:meth:`ModelLoader.serving`, opened by
``serve()``): a model's tasks that outlive any one request, its adaptive batcher, run
there, from its load to its unload."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import pathlib
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from ..errors import ConfigError, ModelLoadError, ModelNotReady, StreamwiseError
from ..model import MLModel
from ..registry import Event, ModelRegistry, ModelSlot, ModelState
from ..runtimes import ALIASES
from ..settings import ModelSettings
from .backends import Backends
from .batching import Batcher, batching_enabled

__all__ = ["ModelLoader", "import_implementation"]

log = logging.getLogger(__name__)


def _import_from_folder(path: pathlib.Path, folder: pathlib.Path, module_name: str) -> Any:
    """Import ``path`` under a name of its own, so that two models' ``model.py`` never
    collide; its folder is on ``sys.path`` meanwhile, so that it can import its siblings."""
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    unique = f"_streamwise_model_{digest}_{module_name.replace('.', '_')}"
    if unique in sys.modules:
        return sys.modules[unique]
    spec = importlib.util.spec_from_file_location(unique, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[unique] = module
    sys.path.insert(0, str(folder))
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[unique]
        raise
    finally:
        sys.path.remove(str(folder))
    return module


def import_implementation(settings: ModelSettings) -> type[MLModel]:
    """The class named by ``implementation``, looked up in the model's folder first (a
    model from the environment: the repository's folder), then on ``sys.path``. MLServer's
    runtimes (``mlserver_sklearn.SKLearnModel``...) name ours (``runtimes.ALIASES``)."""
    implementation = ALIASES.get(settings.implementation, settings.implementation)
    module_name, _, class_name = implementation.rpartition(".")
    where = settings.origin
    if not module_name:
        raise ConfigError(f"{where}: field 'implementation': expected module.Class")
    folder = settings.folder
    try:
        candidate = folder / (module_name.replace(".", "/") + ".py") if folder else None
        if candidate is not None and folder is not None and candidate.is_file():
            module = _import_from_folder(candidate, folder, module_name)
        else:
            module = importlib.import_module(module_name)
        cls = getattr(module, class_name)
    except Exception as exc:
        raise ConfigError(
            f"{where}: field 'implementation': cannot import {settings.implementation!r}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, MLModel)):
        raise ConfigError(
            f"{where}: field 'implementation': {settings.implementation!r} is not an MLModel"
        )
    return cls


class ModelLoader:
    """Loads and unloads the models of ``registry`` on their ``backends``."""

    def __init__(
        self, registry: ModelRegistry, backends: Backends, *, metrics: bool = False
    ) -> None:
        self._registry = registry
        self._backends = backends
        self._metrics = metrics
        self._nursery: trio.Nursery | None = None

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[None]:
        """The models' lifetime nursery, for the block: batchers start in it as their
        models load, end as they unload; any left are cancelled when the block ends (their
        requests failed, never left waiting)."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                try:
                    yield
                finally:
                    self._nursery = None
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:  # the block's own exception, alone in a group
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise

    async def _start_batcher(self, slot: ModelSlot, model: MLModel) -> Batcher | None:
        settings = slot.settings
        size, wait = settings.max_batch_size, settings.max_batch_time
        if not batching_enabled(size, wait):
            if size > 1:
                log.warning(
                    "model %s: max_batch_size %d with max_batch_time %g: no batching (it "
                    "needs max_batch_time > 0)", slot.name, size, wait,
                )  # fmt: skip
            return None
        if self._nursery is None:
            log.warning("model %s: not batched: no running server (ModelLoader.serving)", slot.name)
            return None
        running = settings.max_concurrent_batches
        batcher = Batcher(
            model, self._backends.of(model), size, wait,
            max_concurrent_batches=running, metrics=self._metrics,
        )  # fmt: skip
        await self._nursery.start(batcher.run, name=f"batcher:{slot.name}")
        log.info(
            "model %s: adaptive batching, up to %d requests or %g s, %s at once",
            slot.name, size, wait, "any number" if running is None else running,
        )  # fmt: skip
        return batcher

    async def load(self, slot: ModelSlot) -> None:
        """Load one version; a failure leaves it FAILED with the reason, and is raised."""
        if slot.state in (ModelState.READY, ModelState.LOADING):
            return
        slot.fire(Event.LOAD)
        try:
            cls = import_implementation(slot.settings)
            model = cls(slot.settings)
            ok = await self._backends.of(model).call(model.load)
            if ok is False:
                raise ModelLoadError(f"model {slot.name!r}: load() returned False")
        except Exception as exc:
            reason = (
                str(exc) if isinstance(exc, StreamwiseError) else f"{type(exc).__name__}: {exc}"
            )
            slot.fire(Event.FAILED, reason)
            log.error("model %s failed to load: %s", slot.name, reason)
            raise ModelLoadError(reason) from exc
        except BaseException:
            slot.fire(Event.FAILED, "load cancelled")
            raise
        model.ready = True
        slot.model = model
        slot.batcher = await self._start_batcher(slot, model)
        slot.fire(Event.LOADED)
        log.info("model %s%s ready", slot.name, f" ({slot.version})" if slot.version else "")

    async def load_all(self) -> None:
        """Load every unloaded version concurrently; failures stay in their slots."""

        async def one(slot: ModelSlot) -> None:
            try:
                await self.load(slot)
            except ModelLoadError:
                pass  # recorded in the slot (state FAILED, reason) and logged

        async with trio.open_nursery() as nursery:
            for slot in self._registry.slots():
                if slot.state is ModelState.UNLOADED:
                    nursery.start_soon(one, slot)

    async def unload(self, slot: ModelSlot) -> None:
        if slot.state in (ModelState.UNLOADED, ModelState.UNLOADING):
            return
        if slot.state is ModelState.FAILED:
            slot.fire(Event.UNLOAD)
            return
        if slot.state is ModelState.LOADING:
            raise ModelNotReady(f"model {slot.name!r} is loading; unload it once it is ready")
        slot.fire(Event.UNLOAD)
        batcher = slot.batcher
        if batcher is not None:
            batcher.close()  # the batches forming run now, not at their max_batch_time
        await slot.drained()
        model, slot.model = slot.model, None
        if batcher is not None:  # drained: nobody waits in it; it has ended or ends now
            slot.batcher = None
            await batcher.aclose()
        try:
            if model is not None:
                model.ready = False
                await self._backends.of(model).call(model.unload)
        except Exception as exc:
            slot.fire(Event.FAILED, f"unload failed: {type(exc).__name__}: {exc}")
            raise
        slot.fire(Event.UNLOADED)
        log.info("model %s%s unloaded", slot.name, f" ({slot.version})" if slot.version else "")

    async def unload_all(self) -> None:
        async with trio.open_nursery() as nursery:
            for slot in self._registry.slots():
                nursery.start_soon(self._unload_quietly, slot)

    async def _unload_quietly(self, slot: ModelSlot) -> None:
        try:
            await self.unload(slot)
        except Exception as exc:  # shutting down: log and go on with the others
            log.error("model %s failed to unload: %s", slot.name, exc)
