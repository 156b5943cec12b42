"""The V2 data plane: what both transports call. No transport, no asyncio.

A request is checked once, here, when a transport calls :meth:`DataPlane.prepare`: model
lookup, readiness, validation against the model's metadata, the request id. What comes
back is a :class:`Call`, whose :meth:`Call.stamp` is all the per-response work the hot
path does (id, model name and version, requested outputs).

The data plane's state (guards, counts, the registry) is touched by one thread, the trio
run's: every method here is called from trio tasks, but :meth:`DataPlane.follow`, which
gRPC's request reader calls from asyncio code (on the asyncio loop, in that same thread)
and which touches only its call. Where a model runs is its backend's business
(``backends.py``).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

import trio

from .. import tracing
from ..errors import (
    ConfigError,
    InvalidRequest,
    ModelLoadError,
    ModelOverloaded,
    ServerShuttingDown,
    StreamwiseError,
)
from ..metrics import Metrics, StreamMeter, Transport, model_context, outcome_of
from ..model import MLModel
from ..protocol import generate, model_config
from ..protocol.validation import validate_request
from ..registry import ModelRegistry, ModelSlot, ModelState
from ..settings import (
    ModelSettings,
    Settings,
    find_model_settings,
    load_model_settings,
    model_settings_paths,
)
from ..types import (
    InferenceRequest,
    InferenceResponse,
    MetadataModelResponse,
    MetadataServerResponse,
    RepositoryIndexResponseItem,
)
from . import calls
from .backends import Backends, Requests
from .calls import Guard
from .loading import ModelLoader, import_implementation
from .pipeline import Stream, open_stream

log = logging.getLogger(__name__)

T = TypeVar("T")

__all__ = ["DataPlane", "Call", "Guard", "Peers"]  # Guard: from calls.py, where it lives

RepositoryOp = Literal["load", "unload"]

BUILTIN_EXTENSIONS = ("binary_tensor_data",)
"""Listed in the server metadata before the ``extensions`` setting's: the REST API's
binary tensor data extension (``protocol/binary.py``)."""


class Peers(Protocol):
    """The other worker processes serving the same ports (``parallel_workers``)."""

    async def everywhere(self, op: RepositoryOp, name: str) -> None:
        """Run ``op`` on ``name`` in every worker, this one included (each calls its
        :meth:`DataPlane.here`); the first failure is raised."""


@dataclass(slots=True)
class Call:
    """One validated request, bound to the model version that will serve it.

    On a bidirectional stream, ``request_id`` follows the request the model pulled last
    (:meth:`DataPlane.follow`), so that each response carries the id of the request it
    answers.
    """

    slot: ModelSlot
    request: InferenceRequest
    request_id: str
    outputs: frozenset[str] | None
    """Requested output names to keep, when the request names some. A response holding
    none of them is left whole: the model ignored the names, and dropping everything it
    said would lose data."""
    transport: Transport = "rest"
    context: Any = None
    """The client's trace context (W3C ``traceparent``), when tracing is on."""

    @property
    def labels(self) -> tuple[str, str, str]:
        """The metrics' model, version and transport labels."""
        return self.slot.name, self.slot.version or "", self.transport

    def stamp(self, response: InferenceResponse) -> InferenceResponse:
        response.id = self.request_id
        if response.model_version is None and self.slot.version is not None:
            response.model_version = self.slot.version
        if self.outputs is not None:
            wanted = self.outputs
            if any(o.name not in wanted for o in response.outputs):
                kept = [o for o in response.outputs if o.name in wanted]
                if kept:
                    response.outputs = kept
        return response

    @contextmanager
    def model(self) -> Iterator[MLModel]:
        with self.slot.call() as model:
            yield model


class DataPlane:
    def __init__(
        self,
        settings: Settings,
        registry: ModelRegistry,
        backends: Backends,
        peers: Peers | None = None,
    ) -> None:
        self.settings = settings
        self.peers = peers
        """Set in a worker process: the repository API's loads and unloads reach all."""
        self.registry = registry
        self.backends = backends
        self.metrics = Metrics() if settings.metrics_endpoint else None
        """None: metrics are off (``metrics_endpoint`` null)."""
        self.loader = ModelLoader(registry, backends, metrics=self.metrics is not None)
        self.started = trio.Event()
        """Set once the models to load at startup have been loaded (or have failed)."""
        self.shutdown_requested = trio.Event()
        """Set to start a graceful shutdown (``serve()`` drains, then returns)."""
        self.draining = False
        """New requests are refused (503 / UNAVAILABLE); those in flight go on."""
        self._guards: set[Guard] = set()
        self._idle = trio.Event()

    # -- draining --
    @property
    def in_flight(self) -> int:
        """Model calls running now (unary calls and streams)."""
        return len(self._guards)

    def start_draining(self) -> None:
        self.draining = True
        if not self._guards:
            self._idle.set()

    async def wait_idle(self) -> None:
        """Once draining: until no model call is left."""
        await self._idle.wait()

    def end_all(self, reason: StreamwiseError) -> int:
        """End every model call still running (the grace period is over); how many."""
        guards = list(self._guards)
        for guard in guards:
            guard.end(reason)
        return len(guards)

    @contextmanager
    def _guarded(self, call: Call) -> Iterator[Guard]:
        """The call's guard; it is counted from here until it ends. Checked again here,
        with no checkpoint before the count: a call prepared while room was left may
        start when there is none (SSE streams start once their response is under way)."""
        try:
            if self.draining:
                raise ServerShuttingDown()
            self._check_capacity(call.slot)
        except StreamwiseError as exc:
            if self.metrics is not None:
                self.metrics.refused(call.labels, exc)
            raise
        timeout = call.slot.settings.request_timeout_s or self.settings.request_timeout_s
        scope = trio.CancelScope()
        if timeout is not None:
            scope.deadline = trio.current_time() + timeout
        guard = Guard(scope, timeout)
        self._guards.add(guard)
        try:
            yield guard
        finally:
            self._guards.discard(guard)
            if self.draining and not self._guards:
                self._idle.set()

    # -- health and metadata --
    def ready(self) -> bool:
        """Startup is over and at least one model is READY (see docs/architecture.md)."""
        return (
            self.started.is_set()
            and not self.draining
            and any(s.state is ModelState.READY for s in self.registry.slots())
        )

    def server_metadata(self) -> MetadataServerResponse:
        return MetadataServerResponse(
            name=self.settings.server_name,
            version=self.settings.version,
            extensions=[*BUILTIN_EXTENSIONS, *self.settings.extensions],
        )

    async def model_metadata(self, name: str, version: str | None) -> MetadataModelResponse:
        slot = self.registry.find(name, version)
        model = slot.model
        if model is not None and slot.state is ModelState.READY:
            return await self.backends.of(model).call(model.metadata)
        return await MLModel(slot.settings).metadata()

    def model_config(self, name: str, version: str | None) -> dict[str, Any]:
        """Triton's configuration of the model (``protocol/model_config.py``), in its JSON
        form. Whether it streams is read from its class: the loaded model's, else the class
        its settings name, imported (not instantiated) as a load would; a class that cannot
        be imported is taken not to stream."""
        slot = self.registry.find(name, version)
        if slot.model is not None:
            decoupled = model_config.streams(type(slot.model))
        else:
            try:
                decoupled = model_config.streams(import_implementation(slot.settings))
            except ConfigError:
                decoupled = False
        return model_config.model_config(slot.settings, decoupled)

    def model_ready(self, name: str, version: str | None) -> ModelSlot:
        """The slot (raises ModelNotFound); the caller reads its state."""
        return self.registry.find(name, version)

    # -- inference --
    def prepare(
        self,
        name: str,
        version: str | None,
        request: InferenceRequest | generate.FlatRequest,
        transport: Transport = "rest",
        headers: Any = None,
    ) -> Call:
        """``transport``: the one the request came on, for the metrics' labels.
        ``headers``: the request's (an ASGI scope's, or gRPC metadata), read for its trace
        context only when tracing is on. A :class:`~..protocol.generate.FlatRequest`
        (Triton's generate dialect) is converted here, once the model, whose declared
        inputs say which keys are tensors, is known to be ready."""
        slot: ModelSlot | None = None
        try:
            if self.draining:
                raise ServerShuttingDown()
            slot = self.registry.find(name, version)
            slot.check_ready()  # 503 before anything else is done
            self._check_capacity(slot)
        except StreamwiseError as exc:
            if self.metrics is not None:
                if slot is not None:
                    name, version = slot.name, slot.version
                self.metrics.refused((name, version or "", transport), exc)
            raise
        if not isinstance(request, InferenceRequest):
            request = generate.to_request(request, slot.settings.inputs)
        self._validate(slot, request)
        keep = frozenset(o.name for o in request.outputs) if request.outputs else None
        context = (
            tracing.extract(headers) if headers is not None and tracing.tracer is not None else None
        )
        return Call(slot, request, request.id or str(uuid.uuid4()), keep, transport, context)

    def _check_capacity(self, slot: ModelSlot) -> None:
        limit = slot.settings.max_concurrency or self.settings.model_max_concurrency
        if slot.in_flight >= limit:
            raise ModelOverloaded(
                f"model {slot.name!r} is serving {limit} requests, its limit "
                "(max_concurrency): retry later"
            )

    def _validate(self, slot: ModelSlot, request: InferenceRequest) -> None:
        settings = slot.settings
        validate_request(
            request, settings.inputs, settings.outputs, self.settings.max_tensor_elements
        )

    def follow(self, call: Call, request: InferenceRequest) -> InferenceRequest:
        """Check the next request of a bidirectional stream; its id becomes the call's."""
        self._validate(call.slot, request)
        if request.id is None:
            request.id = str(uuid.uuid4())
        call.request_id = request.id
        return request

    async def infer(self, call: Call) -> InferenceResponse:
        if tracing.tracer is None:
            return await self._infer_metered(call)
        span = tracing.start("infer", call.labels, call.request_id, call.context)
        try:
            response = await self._infer_metered(call)
        except BaseException as exc:
            outcome, detail = _outcome_of_exception(exc)
            tracing.end(span, outcome, detail=detail)
            raise
        tracing.end(span, tracing.COMPLETED)
        return response

    async def _infer_metered(self, call: Call) -> InferenceResponse:
        metrics = self.metrics
        if metrics is None:
            return await self._infer(call)
        with self._guarded(call) as guard:
            started = time.monotonic()
            ok = False
            try:
                response = await self._infer(call, guard)
                ok = True
                return response
            finally:
                name, version, _ = call.labels
                metrics.unary(name, version, time.monotonic() - started, ok)

    async def _infer(self, call: Call, guard: Guard | None = None) -> InferenceResponse:
        with (
            self._guarded(call) if guard is None else _given(guard) as guard,
            call.model() as model,
            model_context(*call.labels[:2]),
        ):
            with guard.scope:
                batcher = call.slot.batcher
                if batcher is None:
                    response = await calls.infer(self.backends.of(model), model, call.request)
                else:  # adaptive batching: this request's rows of a batch's answer
                    response = await batcher.infer(call.request)
                return call.stamp(response)
            raise guard.failure()  # the scope was cancelled: timeout or shutdown

    @asynccontextmanager
    async def stream(
        self,
        call: Call,
        encode: Callable[[InferenceResponse], T],
        requests: Requests | None = None,
    ) -> AsyncIterator[Stream[T]]:
        """Open the model's stream for ``call``: items are ``encode(stamped response)``,
        in batches, then ``stream.failure``. ``requests``: a bidirectional stream's (its
        first is ``call.request``); else ``call.request`` alone."""
        stamp = call.stamp
        metrics = self.metrics
        meter: StreamMeter | None = None
        traced: tracing.StreamSpan | None = None
        seen: Callable[[int], None] | None = None

        def finish(response: InferenceResponse) -> T:
            return encode(stamp(response))

        if tracing.tracer is not None:
            span = tracing.start("infer_stream", call.labels, call.request_id, call.context)
            traced = tracing.StreamSpan(span)
        outcome = "client_disconnect"
        failure: BaseException | None = None
        opened = False
        try:
            with self._guarded(call) as guard, call.model() as model:
                opened = True
                if metrics is not None:
                    meter = metrics.stream_opened(call.labels)
                    seen = meter.seen
                if traced is not None and traced.span.is_recording():
                    seen = traced.seen if seen is None else _both(seen, traced.seen)
                try:
                    with model_context(*call.labels[:2]):  # the pump task copies the context
                        async with open_stream(
                            self.backends.of(model),
                            model,
                            requests or Requests(call.request),
                            finish,
                            guard,
                            buffer=self.settings.stream_buffer_size,
                            seen=seen,
                        ) as stream:
                            try:
                                yield stream
                            except BaseException as exc:  # the transport left early...
                                if exc is stream.failure:  # ...or passed the failure on
                                    outcome = outcome_of(stream.failure)
                                    failure = exc
                                raise
                            outcome = outcome_of(stream.failure)
                            failure = stream.failure
                finally:
                    if metrics is not None and meter is not None:
                        metrics.stream_closed(call.labels, meter, outcome)
        except StreamwiseError as exc:
            if not opened:  # refused before the model's stream started
                outcome, failure = outcome_of(exc), exc
            raise
        finally:
            if traced is not None:
                traced.close(outcome, None if failure is None else str(failure))

    # -- repository --
    def repository_index(self, ready: bool | None = None) -> list[RepositoryIndexResponseItem]:
        items = []
        for slot in self.registry.slots():
            if ready is not None and (slot.state is ModelState.READY) != ready:
                continue
            items.append(
                RepositoryIndexResponseItem(
                    name=slot.name, version=slot.version, state=slot.state.value, reason=slot.reason
                )
            )
        return items

    def _repository_slots(self, name: str) -> list[ModelSlot]:
        if not self.settings.repository_api_enabled:
            raise InvalidRequest("the repository API is switched off (repository_api_enabled)")
        return self.registry.versions_of(name)

    async def load(self, name: str) -> None:
        """Load every version of ``name`` (in every worker) as the repository folder holds
        it now (a model folder copied there after startup loads); the first failure is
        raised, with its reason."""
        await self._everywhere("load", name)

    def _rescan(self, name: str) -> list[ModelSettings]:
        """The settings of ``name`` in the repository folder now. Another model's file that
        does not load is logged and passed over; if ``name`` is not found, the first such
        error is raised (it may be the file meant)."""
        root = self.settings.model_repository_root
        paths = model_settings_paths(root)
        if not paths:  # the model from the environment, if there is one
            return [s for s in find_model_settings(root) if s.name == name]
        found: list[ModelSettings] = []
        errors: list[ConfigError] = []
        for path in paths:
            try:
                settings = load_model_settings(path)
            except ConfigError as exc:
                errors.append(exc)
                continue
            if settings.name == name:
                found.append(settings)
        if errors and not found:
            raise errors[0]
        for error in errors:
            log.warning("repository: %s (passed over)", error)
        return found

    async def unload(self, name: str) -> None:
        await self._everywhere("unload", name)

    async def _everywhere(self, op: RepositoryOp, name: str) -> None:
        if not self.settings.repository_api_enabled:
            raise InvalidRequest("the repository API is switched off (repository_api_enabled)")
        if op == "unload":
            self.registry.versions_of(name)  # unknown: answered here, at once
        if self.peers is None:
            await self.here(op, name)
        else:
            await self.peers.everywhere(op, name)

    async def here(self, op: RepositoryOp, name: str) -> None:
        """``op`` on every version of ``name`` in this process (a load reads the folder
        again first)."""
        if op == "load":
            try:
                found = self._rescan(name)
            except ConfigError as exc:  # the model's file, or the folder, is wrong
                raise ModelLoadError(str(exc)) from exc
            self.registry.refresh(name, found)
        for slot in self._repository_slots(name):
            if op == "load":
                await self.loader.load(slot)
            else:
                await self.loader.unload(slot)


@contextmanager
def _given(guard: Guard) -> Iterator[Guard]:
    yield guard


def _both(first: Callable[[int], None], second: Callable[[int], None]) -> Callable[[int], None]:
    def both(n: int) -> None:
        first(n)
        second(n)

    return both


def _outcome_of_exception(exc: BaseException) -> tuple[str, str | None]:
    """A unary call's outcome (as a stream's, :func:`~..metrics.outcome_of`) and message."""
    if isinstance(exc, StreamwiseError):
        return outcome_of(exc), str(exc)
    if isinstance(exc, Exception):
        return "model_error", f"{type(exc).__name__}: {exc}"
    return "client_disconnect", None  # cancelled: the client went away
