"""The model registry: every model and version the server knows, and their lifecycles.

The registry holds state only; the code that loads and unloads models (calling them, on
their backend) is ``runtime/loading.py``, which fires the events of this table.

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
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from .errors import ConfigError, ModelNotFound, ModelNotReady
from .model import MLModel
from .settings import ModelSettings
from .types import State

if TYPE_CHECKING:
    from .runtime.batching import Batcher

__all__ = ["ModelState", "Event", "TRANSITIONS", "ModelSlot", "ModelRegistry"]


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
    batcher: Batcher | None = None
    """The model's adaptive batcher while it is loaded, when its settings batch."""
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

    async def drained(self) -> None:
        """Until no call holds the model (see :meth:`call`)."""
        while self.in_flight:
            await self._idle.wait()

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

    def refresh(self, name: str, found: Sequence[ModelSettings]) -> None:
        """``name``'s versions as the repository holds them now (``found``, all of that
        name): a version not in use (UNLOADED or FAILED) that came from the repository takes
        its settings as found, or goes if it is no longer there; a new version is added.
        A version in use, or given in code (no file, not from the environment), stays."""
        slots = self._slots.get(name, [])
        for slot in list(slots):
            not_in_use = slot.state in (ModelState.UNLOADED, ModelState.FAILED)
            if not_in_use and slot.settings.folder is not None:
                slots.remove(slot)
        kept = {slot.version for slot in slots}
        for settings in found:
            if settings.version not in kept:
                self.add(settings)
        if not self._slots.get(name):
            self._slots.pop(name, None)

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
