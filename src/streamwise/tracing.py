"""OpenTelemetry tracing (docs/observability.md): a span per model call and per stream.

Optional: with ``opentelemetry-api`` not installed, :data:`tracer` is None and the data
plane does nothing more than that one check per call. With it installed, spans go to the
process's tracer provider, which is the user's to set up (their own SDK setup, or
``opentelemetry-instrument``, both configured by the standard ``OTEL_*`` variables); until
one is set, the API's spans are non-recording and a stream's responses are not counted.

A span is made with an explicit parent (the W3C ``traceparent`` of the request's HTTP
headers or gRPC metadata) and ended explicitly: it is never made the current span, so no
context is carried across trio tasks or the asyncio bridge. Per stream, the work is done
at its start, its first response (an event), and its end (an event, the outcome as the
span's status); per response, one count, on recording spans only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["tracer", "use", "extract", "start", "end", "StreamSpan", "COMPLETED"]

try:
    from opentelemetry import propagate as _propagate
    from opentelemetry import trace as _trace
except ImportError:  # the extra is not installed: tracing is off
    _propagate = None  # type: ignore[assignment]
    _trace = None  # type: ignore[assignment]

tracer: Any = _trace.get_tracer("streamwise") if _trace is not None else None
"""None: tracing is off (the API is not installed, or :func:`use` turned it off)."""

COMPLETED = "completed"

MODEL = "streamwise.model.name"
VERSION = "streamwise.model.version"
TRANSPORT = "streamwise.transport"
REQUEST_ID = "streamwise.request_id"
RESPONSES = "streamwise.responses"
OUTCOME = "streamwise.outcome"


def use(provider: Any) -> None:
    """Trace with ``provider``'s tracer (a ``TracerProvider``) rather than the global one;
    None: tracing off. For tests and embedders: the global provider can be set only once."""
    global tracer
    tracer = provider.get_tracer("streamwise") if provider is not None else None


def extract(headers: Any) -> Any:
    """The parent context from a request's headers: an ASGI scope's ``[(bytes, bytes)]``
    or gRPC metadata (a mapping of ``str``; binary ``-bin`` values are passed over)."""
    if _propagate is None:
        return None
    carrier: dict[str, str] = {}
    pairs: Iterable[tuple[Any, Any]] = headers.items() if isinstance(headers, Mapping) else headers
    for key, value in pairs:
        if isinstance(key, bytes):
            key = key.decode("latin-1")
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if isinstance(value, str):
            carrier[key.lower()] = value
    return _propagate.extract(carrier)


def start(name: str, labels: tuple[str, str, str], request_id: str, context: Any) -> Any:
    """A started server span (``tracer`` is set), child of ``context``."""
    model, version, transport = labels
    return tracer.start_span(
        name,
        context=context,
        kind=_trace.SpanKind.SERVER,
        attributes={MODEL: model, VERSION: version, TRANSPORT: transport, REQUEST_ID: request_id},
    )


def end(span: Any, outcome: str, responses: int | None = None, detail: str | None = None) -> None:
    """``outcome``: ``completed`` is OK, anything else an ERROR described by it (and by
    ``detail``, the failure's message, when there is one)."""
    span.set_attribute(OUTCOME, outcome)
    if responses is not None:
        span.set_attribute(RESPONSES, responses)
    if outcome == COMPLETED:
        span.set_status(_trace.StatusCode.OK)
    else:
        description = outcome if detail is None else f"{outcome}: {detail}"
        span.set_status(_trace.Status(_trace.StatusCode.ERROR, description))
    span.end()


class StreamSpan:
    """A stream's span; :meth:`seen` is called once per batch of responses, where the
    transport takes it to write (made only for a recording span)."""

    __slots__ = ("span", "responses")

    def __init__(self, span: Any) -> None:
        self.span = span
        self.responses = 0

    def seen(self, n: int) -> None:
        if not self.responses:
            self.span.add_event("first response")
        self.responses += n

    def close(self, outcome: str, detail: str | None = None) -> None:
        self.span.add_event("end")
        end(self.span, outcome, self.responses, detail)
