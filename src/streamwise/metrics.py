"""Prometheus metrics (docs/observability.md): MLServer's names, and the streams'.

The metric objects live in prometheus_client's default registry, made once per process
(several in-process servers share them, as they share the process). In a worker process
(``parallel_workers``) prometheus_client's multiprocess mode is on
(``PROMETHEUS_MULTIPROC_DIR``, set by the supervisor): each worker writes its values to
files there, and the supervisor serves their sum (``workers.py``).

The listener is a small trio server of its own on ``metrics_port``: one ``GET`` of
``metrics_endpoint`` per connection, answered with the exposition text.

:func:`register` and :func:`log` are MLServer's ``mlserver.register`` / ``mlserver.log``:
a model's own histograms, labelled with the model whose call is running.
"""

from __future__ import annotations

import logging
import time
from bisect import bisect_left
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Literal

import trio
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from .errors import (
    ModelOverloaded,
    RequestTimeout,
    ServerShuttingDown,
    StreamwiseError,
)

__all__ = ["register", "log", "Metrics", "serve_metrics", "LATENCY_BUCKETS"]

logger = logging.getLogger(__name__)

Transport = Literal["rest", "grpc", "openai"]

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip
"""Seconds, from half a millisecond (a token's gap on a fast stream) to five minutes (a
long generation's whole run); the same for every latency histogram."""

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
"""Requests per batch (adaptive batching): powers of two up to MLServer-sized batches."""

MODEL = ("model", "version")  # MLServer's labels on model_infer_request_*
STREAM = ("model", "version", "transport")

# -- MLServer's (handlers/dataplane.py): unary inference ----------------------------------
INFER_SUCCESS = Counter("model_infer_request_success", "Model infer request success count", MODEL)
INFER_FAILURE = Counter("model_infer_request_failure", "Model infer request failure count", MODEL)
INFER_DURATION = Histogram(
    "model_infer_request_duration",
    "Model infer request duration (seconds)",
    MODEL,
    buckets=LATENCY_BUCKETS,
)

# -- py-grpc-prometheus's (MLServer's gRPC interceptor) -----------------------------------
GRPC_STARTED = Counter(
    "grpc_server_started",
    "Total number of RPCs started on the server.",
    ("grpc_type", "grpc_service", "grpc_method"),
)
GRPC_HANDLED = Counter(
    "grpc_server_handled",
    "Total number of RPCs completed on the server, regardless of success or failure.",
    ("grpc_type", "grpc_service", "grpc_method", "grpc_code"),
)

# -- streams: ours -----------------------------------------------------------------------
STREAM_TTFR = Histogram(
    "streamwise_stream_time_to_first_response_seconds",
    "From the stream's start to its first response, taken to be written",
    STREAM,
    buckets=LATENCY_BUCKETS,
)
STREAM_GAP = Histogram(
    "streamwise_stream_response_gap_seconds",
    "Between two responses of one stream, as they are taken to be written (0 within one write)",
    STREAM,
    buckets=LATENCY_BUCKETS,
)
STREAM_RESPONSES = Counter(
    "streamwise_stream_responses", "Responses of the models' streams, taken to be written", STREAM
)
STREAMS_OPEN = Gauge(
    "streamwise_streams_open", "Streams running now", STREAM, multiprocess_mode="livesum"
)
STREAMS_ENDED = Counter("streamwise_streams_ended", "Streams ended, by how", (*STREAM, "outcome"))
BATCH_SIZE = Histogram(
    "streamwise_batch_size",
    "Requests merged into one predict call by adaptive batching (max_batch_size)",
    MODEL,
    buckets=BATCH_BUCKETS,
)
REQUESTS_REFUSED = Counter(
    "streamwise_requests_refused",
    "Inference requests refused before their model ran, by why",
    (*STREAM, "reason"),
)

_rest: dict[str, tuple[Counter, Histogram, Gauge]] = {}


def rest_metrics(prefix: str) -> tuple[Counter, Histogram, Gauge]:
    """starlette_exporter's three (MLServer's REST middleware), under ``prefix``."""
    if prefix not in _rest:
        labels = ("method", "path", "status_code", "app_name")
        _rest[prefix] = (
            Counter(f"{prefix}_requests", "Total HTTP requests", labels),
            Histogram(
                f"{prefix}_request_duration_seconds",
                "HTTP request duration, in seconds",
                labels,
                buckets=LATENCY_BUCKETS,
            ),
            Gauge(
                f"{prefix}_requests_in_progress",
                "Total HTTP requests currently in progress",
                ("method", "path", "app_name"),
                multiprocess_mode="livesum",
            ),
        )
    return _rest[prefix]


def outcome_of(failure: StreamwiseError | None) -> str:
    """How a stream that ran to its end ended (``streams_ended``'s ``outcome``)."""
    if failure is None:
        return "completed"
    if isinstance(failure, RequestTimeout):
        return "timeout"
    if isinstance(failure, ServerShuttingDown):
        return "shutdown"
    if isinstance(failure, ModelOverloaded):
        return "limit"
    return "model_error"


def refusal_of(exc: StreamwiseError) -> str | None:
    """``requests_refused``'s ``reason`` for an error raised before a model ran."""
    if isinstance(exc, ModelOverloaded):
        return "limit"
    if isinstance(exc, ServerShuttingDown):
        return "draining"
    return None


FLUSH_EVERY = 256
"""A stream's gaps are counted locally and added to the histogram every this many
responses, and when the stream ends."""

_BOUNDS = (*LATENCY_BUCKETS, float("inf"))


class StreamMeter:
    """One stream's timings: ``seen(n)`` is called once per batch of ``n`` responses, where
    the transport takes it to write (``Stream.take``): the time a client can first see
    them. The first response's time is the time to first response; each later batch's
    first response has the gap since the batch before, and the others of a batch a gap of
    0 (they are written with it). A histogram's ``observe`` costs about 2 us (a lock and a
    walk of its buckets), as much as a fast stream's whole response: so the gaps are
    counted here, in a list, and added to ``streamwise_stream_response_gap_seconds``
    (buckets and sum) every :data:`FLUSH_EVERY` responses and at the stream's end, through
    prometheus_client's per-bucket values (checked against prometheus-client 0.26 by
    tests/test_metrics.py)."""

    __slots__ = ("_last", "_first", "_gap", "_count", "_n", "_counts", "_sum")

    def __init__(self, labels: tuple[str, str, str]) -> None:
        self._last = time.monotonic()
        self._first: Any = STREAM_TTFR.labels(*labels)
        self._gap: Any = STREAM_GAP.labels(*labels)
        self._count = STREAM_RESPONSES.labels(*labels)
        self._n = 0
        self._counts = [0] * len(_BOUNDS)
        self._sum = 0.0

    def seen(self, n: int) -> None:
        now = time.monotonic()
        gap = now - self._last
        self._last = now
        counts = self._counts
        if self._first is not None:
            self._first.observe(gap)
            self._first = None
            self._count.inc()
            counts[0] += n - 1  # written with the first: a gap of 0
            self._n += n - 1
        else:
            counts[bisect_left(_BOUNDS, gap)] += 1
            counts[0] += n - 1
            self._sum += gap
            self._n += n
        if self._n >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        """The gaps counted so far, into the histogram; the responses, into their counter."""
        if not self._n:
            return
        buckets = self._gap._buckets
        counts = self._counts
        for i, n in enumerate(counts):
            if n:
                buckets[i].inc(n)
                counts[i] = 0
        self._gap._sum.inc(self._sum)
        self._count.inc(self._n)
        self._sum = 0.0
        self._n = 0

    close = flush


class Metrics:
    """What the data plane records, for one server's settings."""

    __slots__ = ()

    def refused(self, labels: tuple[str, str, str], exc: StreamwiseError) -> None:
        reason = refusal_of(exc)
        if reason is not None:
            REQUESTS_REFUSED.labels(*labels, reason).inc()

    def unary(self, name: str, version: str, seconds: float, ok: bool) -> None:
        INFER_DURATION.labels(name, version).observe(seconds)
        (INFER_SUCCESS if ok else INFER_FAILURE).labels(name, version).inc()

    def stream_opened(self, labels: tuple[str, str, str]) -> StreamMeter:
        STREAMS_OPEN.labels(*labels).inc()
        return StreamMeter(labels)

    def stream_closed(self, labels: tuple[str, str, str], meter: StreamMeter, outcome: str) -> None:
        meter.close()
        STREAMS_OPEN.labels(*labels).dec()
        STREAMS_ENDED.labels(*labels, outcome).inc()


# -- model-defined metrics: MLServer's register() and log() ------------------------------
_model_labels: ContextVar[tuple[str, str]] = ContextVar("streamwise_model_labels")
_custom: dict[str, Histogram] = {}

MODEL_NAME_LABEL = "model_name"
MODEL_VERSION_LABEL = "model_version"


@contextmanager
def model_context(name: str, version: str | None) -> Iterator[None]:
    """The model whose call runs in this context: what :func:`log` labels with."""
    token = _model_labels.set((name, version or ""))
    try:
        yield
    finally:
        _model_labels.reset(token)


def register(name: str, description: str) -> Histogram:
    """A histogram of the model's own (``mlserver.register``), labelled ``model_name`` and
    ``model_version``; registering a name again returns the same one."""
    if name not in _custom:
        _custom[name] = Histogram(
            name, description, (MODEL_NAME_LABEL, MODEL_VERSION_LABEL), buckets=LATENCY_BUCKETS
        )
    return _custom[name]


def log(**metrics: float) -> None:
    """Observe each value in its histogram (``mlserver.log``), registered on first use,
    labelled with the model whose call is running. Called outside a model's call:
    ``LookupError``, as MLServer's."""
    name, version = _model_labels.get()
    for metric, value in metrics.items():
        register(metric, f"{metric} (logged by the model)").labels(name, version).observe(value)


# -- the listener ------------------------------------------------------------------------
READ_LIMIT = 16 * 1024
READ_TIMEOUT_S = 10.0


async def serve_metrics(
    host: str,
    port: int,
    endpoint: str,
    registry: CollectorRegistry = REGISTRY,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """``GET endpoint`` on ``host:port`` answers the exposition of ``registry``; until
    cancelled. Started: the bound port. A port in use is :class:`~.errors.PortInUse`."""
    import errno

    from .errors import PortInUse

    try:
        listeners = await trio.open_tcp_listeners(port, host=host)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse("metrics_port", host, port) from None
        raise
    bound = listeners[0].socket.getsockname()[1]

    async def answer(stream: trio.SocketStream) -> None:
        try:
            with trio.move_on_after(READ_TIMEOUT_S):
                head = b""
                while b"\r\n\r\n" not in head and len(head) < READ_LIMIT:
                    chunk = await stream.receive_some(4096)
                    if not chunk:
                        return
                    head += chunk
                method, _, rest = head.partition(b" ")
                path = rest.partition(b" ")[0].partition(b"?")[0].decode("latin-1")
                if method not in (b"GET", b"HEAD"):
                    status, body, kind = b"405 Method Not Allowed", b"", b"text/plain"
                elif path != endpoint:
                    status, body, kind = b"404 Not Found", b"not found\n", b"text/plain"
                else:
                    status, kind = b"200 OK", CONTENT_TYPE_LATEST.encode()
                    body = generate_latest(registry)
                head_out = b"HTTP/1.1 %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n" % (
                    status,
                    kind,
                    len(body),
                )
                await stream.send_all(
                    head_out + b"connection: close\r\n\r\n" + (b"" if method == b"HEAD" else body)
                )
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        except Exception:  # a collector's bug: logged, never the server's end
            logger.exception("metrics: answering a scrape")
        finally:
            await trio.aclose_forcefully(stream)

    logger.info("metrics on http://%s:%d%s", host, bound, endpoint)
    async with trio.open_nursery() as nursery:
        task_status.started(bound)
        await trio.serve_listeners(answer, listeners, handler_nursery=nursery)
