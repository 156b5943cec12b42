"""Adaptive batching: MLServer's ``max_batch_size`` / ``max_batch_time``, trio-native.

A model whose settings say ``max_batch_size > 1`` and ``max_batch_time > 0`` gets a
:class:`Batcher` when it loads. Its concurrent unary requests are merged along their first
dimension into one ``predict`` call, and the response is split back by rows::

    request task (one per client)                batcher task (the models' nursery)
    ─────────────────────────────                ──────────────────────────────────
    DataPlane._infer -> Batcher.infer:           run(): take each request from the channel,
      send a Pending into the channel              group it with those it can merge with; a
      wait until it is answered                    group leaves when it holds max_batch_size
      (cancelled: the client left, or its          requests, or max_batch_time after its first
       timeout: the Pending is marked gone;        (with max_concurrent_batches running, it
       its batch runs on for the others)           waits, taking more, until one ends); each
                                                   batch: a task of the batcher's own nursery:
                                                   merge -> predict -> split -> each Pending
                                                   answered (or all failed alike)

The batch is owned by the batcher, never by one request, so a client going away does not
cancel the others' batch: its rows are computed and dropped (when every client of a batch
has gone, the batch is cancelled, as a lone request's model call would be). Requests run
apart when they cannot be merged (:func:`merge_key`). Streams are never batched.

The merge and split are MLServer's (``mlserver/batching/requests.py``), with what it
leaves undefined decided here (docs/batching.md): each request keeps its own rows, its own
id (the data plane stamps it) and only the outputs it asked for.
"""

from __future__ import annotations

import copy
import json
import logging
import math
from collections import deque
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from ..codecs.lists import flatten
from ..errors import ModelFailed, ModelNotReady, StreamwiseError
from ..metrics import BATCH_SIZE, model_context, register
from ..model import MLModel
from ..protocol.validation import element_count
from ..types import (
    InferenceRequest,
    InferenceResponse,
    Parameters,
    RequestInput,
    RequestOutput,
    ResponseOutput,
    TensorData,
)
from .backends import Backend
from .calls import as_failure, infer

__all__ = ["Batcher", "merge_key", "merge", "split", "batching_enabled"]

log = logging.getLogger(__name__)

BATCH_QUEUE = "batch_request_queue"
"""MLServer's histogram (registered as a model metric, ``mlserver.register``): requests
waiting in the batcher's queue when one more arrives."""

_SHARED = ("content_type", "headers")
"""Parameters that describe a whole tensor (or request), never one value per request."""


def batching_enabled(max_batch_size: int, max_batch_time: float) -> bool:
    """MLServer's rule: on when ``max_batch_size > 1`` and ``max_batch_time > 0``."""
    return max_batch_size > 1 and max_batch_time > 0


# -- merge and split (sans-IO) -----------------------------------------------------------
def _canonical(params: Parameters | None, drop: tuple[str, ...] = ()) -> str:
    if params is None:
        return ""
    values = {k: v for k, v in params.model_dump().items() if k not in drop}
    return json.dumps(values, sort_keys=True, default=repr) if values else ""


def merge_key(request: InferenceRequest) -> Hashable | None:
    """Requests merge only when their keys are equal; None: the request runs alone.

    Alone: a request without inputs, an input without a dimension (a scalar has no rows),
    or inputs of different first dimensions (which rows go together is then unknown).
    Equal keys: the same input names, each with the same datatype, the same shape beyond
    the first dimension, the same ``content_type`` and the same names of other parameters
    (whose values are gathered per request, as MLServer does); the same request
    parameters but ``headers`` (they apply to the whole request: a different
    ``content_type`` or a model's own switch decodes or computes differently); and the
    same parameters for any requested output that has some.
    """
    inputs = request.inputs
    if not inputs:
        return None
    rows = -1
    parts = []
    for inp in inputs:
        shape = inp.shape
        if not shape or (rows != -1 and shape[0] != rows):
            return None
        rows = shape[0]
        values = inp.parameters.model_dump() if inp.parameters is not None else {}
        own = tuple(sorted(k for k in values if k not in _SHARED))
        kind = (values.get("content_type"), own)
        parts.append((inp.name, inp.datatype, tuple(shape[1:]), kind))
    outputs: frozenset[tuple[str, str]] = frozenset()
    if request.outputs:
        outputs = frozenset(
            (o.name, _canonical(o.parameters)) for o in request.outputs if o.parameters
        )
    return tuple(sorted(parts)), _canonical(request.parameters, ("headers",)), outputs


def rows_of(request: InferenceRequest) -> int:
    """The rows of a request that has a :func:`merge_key`: its inputs' first dimension."""
    return request.inputs[0].shape[0]


def _merge_input_parameters(given: list[Parameters | None]) -> Parameters | None:
    """MLServer's merge of an input's parameters: ``content_type`` and ``headers`` as the
    first request has them, every other one a list of each request's value."""
    first = given[0]
    if first is None:
        return None
    values = first.model_dump()
    dumps = [p.model_dump() if p is not None else {} for p in given]
    for name in values:
        if name not in _SHARED:
            values[name] = [d.get(name) for d in dumps]
    return Parameters(**values)


def _merged_headers(requests: Sequence[InferenceRequest]) -> Any:
    """The headers every request of the batch carries alike, else None (gRPC metadata
    reaches a model as ``parameters.headers``; one client's are not another's)."""
    first = requests[0].parameters.headers if requests[0].parameters else None
    for r in requests[1:]:
        if (r.parameters.headers if r.parameters else None) != first:
            return None
    return first


def merge(requests: Sequence[InferenceRequest]) -> tuple[InferenceRequest, list[int]]:
    """One request holding the rows of ``requests`` (all of one :func:`merge_key`), in
    order; and each request's number of rows, for :func:`split`."""
    first = requests[0]
    rows = [rows_of(r) for r in requests]
    total = sum(rows)
    inputs = []
    for position, inp in enumerate(first.inputs):
        parts = []
        for r in requests:  # the same names (the key); in the first request's order
            same = r.inputs[position] if r.inputs[position].name == inp.name else None
            parts.append(same or next(i for i in r.inputs if i.name == inp.name))
        data: list[Any] = []
        for part in parts:
            data.extend(flatten(part.data.root))
        fields: dict[str, Any] = {
            "name": inp.name,
            "shape": [total, *inp.shape[1:]],
            "datatype": inp.datatype,
            "data": TensorData.model_construct(root=data),
        }
        params = _merge_input_parameters([p.parameters for p in parts])
        if params is not None:
            fields["parameters"] = params
        inputs.append(RequestInput.model_construct(**fields))
    merged: dict[str, Any] = {"inputs": inputs}
    if all(r.outputs for r in requests):  # else one of them wants every output
        wanted: dict[str, RequestOutput] = {}
        for r in requests:
            for out in r.outputs or ():
                wanted.setdefault(out.name, out)
        merged["outputs"] = list(wanted.values())
    if first.parameters is not None:
        params = first.parameters.model_copy()
        params.headers = _merged_headers(requests)
        merged["parameters"] = params
    return InferenceRequest.model_construct(**merged), rows


def _split_parameters(params: Parameters | None, rows: list[int]) -> list[Parameters | None]:
    """An output's parameters for each request: a list of one value per row of the batch
    is split by rows (one row: its value; several: the list of theirs; no row: left out),
    as MLServer splits them; anything else is every request's."""
    if params is None:
        return [None] * len(rows)
    values = params.model_dump()
    total = sum(rows)
    split = {k: v for k, v in values.items() if k not in _SHARED and isinstance(v, list)}
    if not split:
        return [params] * len(rows)
    out: list[Parameters | None] = []
    offset = 0
    for n in rows:
        own = {k: v for k, v in values.items() if k not in split}
        for k, v in split.items():
            if len(v) != total:
                own[k] = v
            elif n == 1:
                own[k] = v[offset]
            elif n > 1:
                own[k] = v[offset : offset + n]
        out.append(Parameters(**own))
        offset += n
    return out


def split(response: InferenceResponse, rows: list[int], model: str) -> list[InferenceResponse]:
    """``response`` to a :func:`merge` of requests of ``rows`` rows: each request's rows of
    every output. An output whose first dimension is not the batch's cannot be split:
    :class:`ModelFailed`, for every request of the batch."""
    total = sum(rows)
    per: list[list[ResponseOutput]] = [[] for _ in rows]
    for out in response.outputs:
        shape = out.shape
        if not shape or shape[0] != total:
            raise ModelFailed(
                f"model {model!r} answered a batch of {total} rows with output {out.name!r} "
                f"of shape {shape}: adaptive batching needs outputs whose first dimension is "
                "the batch's (max_batch_size)"
            )
        data = flatten(out.data.root)
        size = element_count(shape[1:])
        if len(data) != total * size:
            raise ModelFailed(
                f"model {model!r}: output {out.name!r} of shape {shape} holds {len(data)} "
                "elements: it cannot be split by rows"
            )
        params = _split_parameters(out.parameters, rows)
        offset = 0
        for i, n in enumerate(rows):
            fields: dict[str, Any] = {
                "name": out.name,
                "shape": [n, *shape[1:]],
                "datatype": out.datatype,
                "data": TensorData.model_construct(root=data[offset * size : (offset + n) * size]),
            }
            if params[i] is not None:
                fields["parameters"] = params[i]
            per[i].append(ResponseOutput.model_construct(**fields))
            offset += n
    responses = []
    for outputs in per:
        fields = {"model_name": response.model_name, "outputs": outputs}
        if response.model_version is not None:
            fields["model_version"] = response.model_version
        if response.parameters is not None:
            fields["parameters"] = response.parameters
        responses.append(InferenceResponse.model_construct(**fields))
    return responses


# -- the batcher (trio) ------------------------------------------------------------------
@dataclass(eq=False, slots=True)
class _Batch:
    pendings: list[Pending]
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    gone: int = 0


@dataclass(eq=False, slots=True)
class Pending:
    """One request waiting for its batch's answer."""

    request: InferenceRequest
    key: Hashable | None
    done: trio.Event = field(default_factory=trio.Event)
    response: InferenceResponse | None = None
    error: StreamwiseError | None = None
    gone: bool = False
    """Its client left (or its timeout passed): nobody reads the answer."""
    batch: _Batch | None = None

    def answer(self, response: InferenceResponse) -> None:
        if not self.done.is_set():
            self.response = response
            self.done.set()

    def fail(self, error: StreamwiseError) -> None:
        if not self.done.is_set():
            self.error = error
            self.done.set()

    def leave(self) -> None:
        """The client went away: its batch runs on for the others, or, when nobody of it
        is left, is cancelled."""
        if self.gone:
            return
        self.gone = True
        batch = self.batch
        if batch is not None and not self.done.is_set():
            batch.gone += 1
            if batch.gone == len(batch.pendings):
                batch.scope.cancel()


@dataclass(eq=False, slots=True)
class _Forming:
    deadline: float
    pendings: list[Pending] = field(default_factory=list)


def _fresh(error: StreamwiseError) -> StreamwiseError:
    """A copy of a batch's error for each of its requests (one exception object raised in
    several tasks would gather all their tracebacks)."""
    try:
        return copy.copy(error)
    except Exception:  # an error class that cannot be rebuilt from its state
        return error


class Batcher:
    """One loaded model version's adaptive batcher. :meth:`run` is started in the models'
    nursery (``runtime/loading.py``) when the model loads; :meth:`aclose` ends it once the
    model's calls have drained, before ``unload``."""

    def __init__(
        self,
        model: MLModel,
        backend: Backend,
        max_batch_size: int,
        max_batch_time: float,
        *,
        max_concurrent_batches: int | None = None,
        metrics: bool = False,
    ) -> None:
        self.model = model
        self.backend = backend
        self.max_batch_size = max_batch_size
        self.max_batch_time = max_batch_time
        self.max_concurrent = max_concurrent_batches
        """Batches running at once, at most (None: no bound, as MLServer)."""
        self._running = 0
        self._nursery: trio.Nursery | None = None
        self._wake: trio.CancelScope | None = None
        self._labels = (model.name, model.version or "")
        self._send, self._receive = trio.open_memory_channel[Pending](max_batch_size)
        self._finished = trio.Event()
        self._sizes: Any = BATCH_SIZE.labels(*self._labels) if metrics else None
        self._queue: Any = (
            register(BATCH_QUEUE, "counter of request queue batch size").labels(*self._labels)
            if metrics
            else None
        )

    def _gone(self) -> ModelNotReady:
        return ModelNotReady(f"model {self.model.name!r} was unloaded before it answered")

    async def infer(self, request: InferenceRequest) -> InferenceResponse:
        """``request``'s own response, computed in a batch; cancelling the caller leaves
        the batch to the others."""
        pending = Pending(request, merge_key(request))
        if self._queue is not None:
            self._queue.observe(self._receive.statistics().current_buffer_used)
        try:
            await self._send.send(pending)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise self._gone() from None
        try:
            await pending.done.wait()
        except BaseException:  # cancelled: the client left, or the request's timeout
            pending.leave()
            raise
        if pending.error is not None:
            raise pending.error
        assert pending.response is not None
        return pending.response

    def _free(self) -> bool:
        """Another batch may start now (``max_concurrent_batches``)."""
        return self.max_concurrent is None or self._running < self.max_concurrent

    def _next(self, forming: dict[Hashable, _Forming], ready: deque[_Forming]) -> _Forming | None:
        """The batch to start now, if a batch may start: of the full ones and those whose
        ``max_batch_time`` has passed, the one whose first request came first."""
        if not self._free():
            return None
        due = None
        if forming:
            key, oldest = next(iter(forming.items()))
            if oldest.deadline <= trio.current_time():
                due = key
        if ready and (due is None or ready[0].deadline <= forming[due].deadline):
            return ready.popleft()
        if due is not None:
            return forming.pop(due)
        return None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Form batches until :meth:`aclose` (then the last ones run, and are awaited).

        A batch leaves when it is full or ``max_batch_time`` after its first request, and
        may start (``max_concurrent_batches``); while it may not, it goes on taking
        requests, up to ``max_batch_size``."""
        forming: dict[Hashable, _Forming] = {}  # in order of their deadlines
        ready: deque[_Forming] = deque()  # full, waiting for a running batch to end
        receive = self._receive
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                while True:
                    while (batch := self._next(forming, ready)) is not None:
                        self._start(batch.pendings)
                    wait_until = math.inf  # a request, or a running batch's end
                    if forming and self._free():
                        wait_until = next(iter(forming.values())).deadline
                    pending = None
                    try:
                        with trio.CancelScope(deadline=wait_until) as self._wake:
                            pending = await receive.receive()
                    except trio.EndOfChannel:  # aclose(): what is left runs now
                        for left in (*ready, *forming.values()):
                            self._start(left.pendings)
                        ready.clear()
                        forming.clear()
                        break
                    finally:
                        self._wake = None
                    if pending is None:
                        continue
                    if pending.key is None:  # cannot be merged: runs alone
                        ready.append(_Forming(trio.current_time(), [pending]))
                        continue
                    group = forming.get(pending.key)
                    if group is None:
                        deadline = trio.current_time() + self.max_batch_time
                        group = forming[pending.key] = _Forming(deadline)
                    group.pendings.append(pending)
                    if len(group.pendings) >= self.max_batch_size:
                        ready.append(forming.pop(pending.key))
        finally:  # also when cancelled: nobody is left waiting for an answer
            self._nursery = None
            waiting = [p for group in (*ready, *forming.values()) for p in group.pendings]
            while True:
                try:
                    waiting.append(receive.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
            receive.close()  # a request still sending: ModelNotReady
            for p in waiting:
                p.fail(self._gone())
            self._finished.set()

    def _start(self, pendings: list[Pending]) -> None:
        live = [p for p in pendings if not p.gone]
        if not live:
            return
        assert self._nursery is not None
        batch = _Batch(live)
        for p in live:
            p.batch = batch
        self._running += 1
        self._nursery.start_soon(self._run_batch, batch)

    async def _run_batch(self, batch: _Batch) -> None:
        pendings = batch.pendings
        name, version = self._labels
        if self._sizes is not None:
            self._sizes.observe(len(pendings))
        if log.isEnabledFor(logging.DEBUG):
            rows = sum(rows_of(p.request) if p.key is not None else 0 for p in pendings)
            log.debug("model %s: a batch of %d request(s), %d row(s)", name, len(pendings), rows)
        outcome: list[InferenceResponse] | StreamwiseError = self._gone()
        try:
            with batch.scope, model_context(name, version or None):
                outcome = await self._predict([p.request for p in pendings])
        except Exception as exc:  # the model's failure, or one its response makes
            outcome = as_failure(exc)
        finally:  # runs when cancelled too: every request is answered or failed
            self._running -= 1
            if self.max_concurrent is not None and self._wake is not None:
                self._wake.cancel()  # another batch may start: the batcher looks again
            if isinstance(outcome, list):
                for p, response in zip(pendings, outcome, strict=True):
                    p.answer(response)
            else:
                for p in pendings:
                    p.fail(_fresh(outcome) if len(pendings) > 1 else outcome)

    async def _predict(self, requests: list[InferenceRequest]) -> list[InferenceResponse]:
        model = self.model
        if len(requests) == 1:  # a batch of one: the request as it came, as unbatched
            return [await infer(self.backend, model, requests[0])]
        merged, rows = merge(requests)
        return split(await infer(self.backend, model, merged), rows, model.name)

    def close(self) -> None:
        """No more requests: those waiting run now (see :meth:`aclose`)."""
        self._send.close()

    async def aclose(self) -> None:
        """No more requests; return once the last batches have run."""
        self._send.close()
        await self._finished.wait()
