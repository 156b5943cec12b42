"""The model registry: every model and version the server knows, and their lifecycles.

A model's lifecycle is one transition table, :data:`TRANSITIONS`, read by the code, the
tests and ``docs/architecture.md``::

    UNLOADED --load--> LOADING --loaded--> READY --unload--> UNLOADING --unloaded--> UNLOADED
                          |                                      |
                          +--failed--> FAILED <--failed----------+
    FAILED --load--> LOADING        FAILED --unload--> UNLOADED

A model whose load fails is FAILED with its reason visible in the repository index and on
its ready endpoint; every other model keeps serving. Unloading waits for the calls in
flight on that version to finish (a drain); new calls are refused from the moment it starts.
"""

from __future__ import annotations

import enum
import hashlib
import importlib
import importlib.util
import logging
import pathlib
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import trio

from . import runtime
from .errors import ConfigError, ModelLoadError, ModelNotFound, ModelNotReady, StreamwiseError
from .model import MLModel
from .settings import ModelSettings
from .types import State

__all__ = ["ModelState", "Event", "TRANSITIONS", "ModelSlot", "ModelRegistry"]

log = logging.getLogger(__name__)


class ModelState(enum.Enum):
    UNLOADED = State.UNAVAILABLE
    LOADING = State.LOADING
    READY = State.READY
    UNLOADING = State.UNLOADING
    FAILED = State.FAILED


class Event(enum.Enum):
    LOAD = "load"
    LOADED = "loaded"
    FAILED = "failed"
    UNLOAD = "unload"
    UNLOADED = "unloaded"


TRANSITIONS: dict[tuple[ModelState, Event], ModelState] = {
    (ModelState.UNLOADED, Event.LOAD): ModelState.LOADING,
    (ModelState.FAILED, Event.LOAD): ModelState.LOADING,
    (ModelState.LOADING, Event.LOADED): ModelState.READY,
    (ModelState.LOADING, Event.FAILED): ModelState.FAILED,
    (ModelState.READY, Event.UNLOAD): ModelState.UNLOADING,
    (ModelState.UNLOADING, Event.UNLOADED): ModelState.UNLOADED,
    (ModelState.UNLOADING, Event.FAILED): ModelState.FAILED,
    (ModelState.FAILED, Event.UNLOAD): ModelState.UNLOADED,
}


@dataclass(eq=False)
class ModelSlot:
    """One version of one model: its settings, state and (when loaded) its instance."""

    settings: ModelSettings
    state: ModelState = ModelState.UNLOADED
    reason: str = ""
    model: MLModel | None = None
    in_flight: int = 0
    _idle: trio.Event = field(default_factory=trio.Event)

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def version(self) -> str | None:
        return self.settings.version

    @property
    def aliases(self) -> frozenset[str]:
        """Version strings that address this slot: ``parameters.version`` and each entry of
        ``versions`` (with a leading ``<name>/`` removed, as in ``text-model/v1.2.3``)."""
        names = {v.removeprefix(self.name + "/") for v in self.settings.versions}
        if self.version:
            names.add(self.version)
        return frozenset(names)

    def fire(self, event: Event, reason: str = "") -> None:
        try:
            self.state = TRANSITIONS[(self.state, event)]
        except KeyError:
            raise RuntimeError(
                f"{self.name}: no transition from {self.state.name} on {event.name}"
            ) from None
        self.reason = reason

    def check_ready(self) -> MLModel:
        """The model, or :class:`ModelNotReady` with the state and its reason."""
        if self.state is not ModelState.READY or self.model is None:
            what = self.name if self.version is None else f"{self.name} version {self.version}"
            detail = f": {self.reason}" if self.reason else ""
            raise ModelNotReady(f"model {what} is not ready ({self.state.name}){detail}")
        return self.model

    @contextmanager
    def call(self) -> Iterator[MLModel]:
        """Hold the model for one call; unloading waits until every call has let go."""
        model = self.check_ready()
        self.in_flight += 1
        try:
            yield model
        finally:
            self.in_flight -= 1
            if self.in_flight == 0:
                self._idle.set()
                self._idle = trio.Event()


def _natural_key(version: str | None) -> list[tuple[int, int | str]]:
    parts = re.split(r"(\d+)", version or "")
    return [(1, int(p)) if p.isdigit() else (0, p) for p in parts if p]


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
    """The class named by ``implementation``, looked up in the model's folder first."""
    module_name, _, class_name = settings.implementation.rpartition(".")
    where = settings.source or settings.name
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


class ModelRegistry:
    """Every known model version, keyed by name; lookups, load and unload."""

    def __init__(self, settings: Sequence[ModelSettings] = ()) -> None:
        self._slots: dict[str, list[ModelSlot]] = {}
        for s in settings:
            self.add(s)

    def add(self, settings: ModelSettings) -> ModelSlot:
        slots = self._slots.setdefault(settings.name, [])
        if any(s.version == settings.version for s in slots):
            raise ConfigError(
                f"{settings.source}: model {settings.name!r} version {settings.version!r} "
                "is defined twice"
            )
        slot = ModelSlot(settings)
        slots.append(slot)
        slots.sort(key=lambda s: _natural_key(s.version))
        return slot

    def slots(self) -> list[ModelSlot]:
        return [slot for name in sorted(self._slots) for slot in self._slots[name]]

    def versions_of(self, name: str) -> list[ModelSlot]:
        try:
            return self._slots[name]
        except KeyError:
            raise ModelNotFound(name) from None

    def find(self, name: str, version: str | None = None) -> ModelSlot:
        """The slot for ``name`` (and ``version``); without a version, the newest ready one
        (or, if none is ready, the newest)."""
        slots = self.versions_of(name)
        if version is None:
            ready = [s for s in slots if s.state is ModelState.READY]
            return (ready or slots)[-1]
        for slot in slots:
            if version in slot.aliases:
                return slot
        raise ModelNotFound(name, version)

    @property
    def ready(self) -> bool:
        """True when there is at least one model and every model is READY."""
        slots = self.slots()
        return bool(slots) and all(s.state is ModelState.READY for s in slots)

    async def load(self, slot: ModelSlot) -> None:
        """Load one version; a failure leaves it FAILED with the reason, and is raised."""
        if slot.state in (ModelState.READY, ModelState.LOADING):
            return
        slot.fire(Event.LOAD)
        try:
            cls = import_implementation(slot.settings)
            model = cls(slot.settings)
            ok = await runtime.call(model, model.load)
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
            for slot in self.slots():
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
        while slot.in_flight:
            await slot._idle.wait()
        model, slot.model = slot.model, None
        try:
            if model is not None:
                model.ready = False
                await runtime.call(model, model.unload)
        except Exception as exc:
            slot.fire(Event.FAILED, f"unload failed: {type(exc).__name__}: {exc}")
            raise
        slot.fire(Event.UNLOADED)
        log.info("model %s%s unloaded", slot.name, f" ({slot.version})" if slot.version else "")

    async def unload_all(self) -> None:
        async with trio.open_nursery() as nursery:
            for slot in self.slots():
                nursery.start_soon(self._unload_quietly, slot)

    async def _unload_quietly(self, slot: ModelSlot) -> None:
        try:
            await self.unload(slot)
        except Exception as exc:  # shutting down: log and go on with the others
            log.error("model %s failed to unload: %s", slot.name, exc)
