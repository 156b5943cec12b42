"""Logging: the ``streamwise`` command's setup (text or JSON lines) and the access log.

The access log is the logger ``streamwise.access``: one INFO record per REST request and
per gRPC call (a stream's when it ends), built once at its end from an :class:`Access`
that the transport fills as the request goes (``rest/access.py``, ``grpc/service.py``).
Its fields are the record's ``access`` attribute, so that :class:`JsonFormatter` writes
them as fields rather than a message to parse.
"""

from __future__ import annotations

import datetime
import json
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .settings import Settings

__all__ = ["ACCESS", "Access", "JsonFormatter", "configure"]

ACCESS = logging.getLogger("streamwise.access")


class Access:
    """What one request's access line says; the transport fills it as the request goes."""

    __slots__ = ("model", "request_id", "responses", "outcome")

    def __init__(self, model: str | None = None) -> None:
        self.model = model
        self.request_id: str | None = None
        self.responses: int | None = None
        """Responses streamed (a stream only; None for a unary request)."""
        self.outcome: str | None = None
        """How a stream ended: completed, its error's message, client disconnect."""

    def fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"model": self.model, "request_id": self.request_id}
        if self.responses is not None:
            fields["responses"] = self.responses
            fields["outcome"] = self.outcome or "incomplete"
        return fields

    def tail(self) -> str:
        """The text line's part after the status and duration."""
        text = f" model={self.model or '-'} id={self.request_id or '-'}"
        if self.responses is not None:
            text += f" responses={self.responses} outcome={self.outcome or 'incomplete'}"
        return text


def log_rest(
    access: Access, method: str, path: str, status: int | None, ms: float, client: str
) -> None:
    ACCESS.info(
        '%s "%s %s" %s %.1fms%s',
        client,
        method,
        path,
        status or "-",
        ms,
        access.tail(),
        extra={
            "access": {
                "protocol": "rest",
                "method": method,
                "path": path,
                "status": status,
                "duration_ms": round(ms, 3),
                **access.fields(),
                "client": client,
            }
        },
    )


def log_grpc(access: Access, rpc: str, code: str, ms: float, peer: str) -> None:
    ACCESS.info(
        '%s "%s" %s %.1fms%s',
        peer,
        rpc,
        code,
        ms,
        access.tail(),
        extra={
            "access": {
                "protocol": "grpc",
                "rpc": rpc,
                "status": code,
                "duration_ms": round(ms, 3),
                **access.fields(),
                "peer": peer,
            }
        },
    )


class JsonFormatter(logging.Formatter):
    """Every record as one JSON object per line: ``time`` (UTC, ISO 8601), ``level``,
    ``logger``, ``message``, the access fields of an access record, ``worker`` in a worker
    process, ``exc_info`` (the traceback) when there is one."""

    def __init__(self, worker: int | None = None) -> None:
        super().__init__()
        self.worker = worker

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        line: dict[str, Any] = {
            "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        access = getattr(record, "access", None)
        if isinstance(access, dict):
            line.update(access)
        if self.worker is not None:
            line["worker"] = self.worker
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc_info"] = record.exc_text
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str)


def configure(settings: Settings, worker: int | None = None) -> None:
    """The ``streamwise`` command's logging (``logging.basicConfig``): ``log_level`` (DEBUG
    with ``debug``), text lines or JSON lines (``log_format: json``, or MLServer's
    ``use_structured_logging: true``); ``worker``: a worker process's index, in every line."""
    handler = logging.StreamHandler()
    if settings.log_format == "json" or settings.use_structured_logging:
        handler.setFormatter(JsonFormatter(worker))
    else:
        prefix = "" if worker is None else f"[worker {worker}] "
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s %(levelname)s {prefix}%(name)s: %(message)s")
        )
    level = logging.DEBUG if settings.debug else settings.log_level
    logging.basicConfig(level=level, handlers=[handler])
