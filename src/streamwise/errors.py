"""The one error tree. Each error knows its HTTP status and its gRPC status code name.

Transports map these once, at their edge (``rest/errors.py``; the gRPC service likewise):
the REST API answers ``{"error": str(exc)}`` with ``exc.http_status``; gRPC answers
``exc.grpc_status`` with ``str(exc)`` as the message. Any other exception that escapes a
model is a model failure: 500 / INTERNAL with the model's message.

    StreamwiseError                 500  INTERNAL
    ├── ConfigError                      (startup: a settings file or field is wrong)
    ├── InvalidRequest              400  INVALID_ARGUMENT
    │   ├── InferenceError          400  INVALID_ARGUMENT  (raised by models and codecs)
    │   ├── PayloadTooLarge         413  RESOURCE_EXHAUSTED
    │   └── UnsupportedMediaType    415  UNIMPLEMENTED     (an unknown Content-Encoding)
    ├── NotFound                    404  NOT_FOUND
    │   └── ModelNotFound           404  NOT_FOUND
    ├── Unauthenticated             401  UNAUTHENTICATED   (auth_token set, no/wrong token)
    ├── ModelNotReady               503  UNAVAILABLE
    ├── ModelOverloaded             503  RESOURCE_EXHAUSTED (+ Retry-After: max_concurrency)
    ├── ServerShuttingDown          503  UNAVAILABLE       (draining, or the grace ran out)
    ├── RequestTimeout              504  DEADLINE_EXCEEDED (request_timeout_s)
    ├── ClientTooSlow               ---  RESOURCE_EXHAUSTED (write_timeout_s; REST: closed)
    ├── MethodNotImplemented        501  UNIMPLEMENTED
    │   └── ExtraNotInstalled       501  UNIMPLEMENTED     (pip install "streamwise[EXTRA]")
    ├── ModelFailed                 500  INTERNAL          (the model raised)
    └── ModelLoadError              500  INTERNAL          (load() raised or returned False)

gRPC codes are names (``"NOT_FOUND"``) so that the core imports no gRPC library.
"""

from __future__ import annotations

import errno
from typing import Any, TypeVar

__all__ = [
    "StreamwiseError",
    "ConfigError",
    "PortInUse",
    "InvalidRequest",
    "InferenceError",
    "PayloadTooLarge",
    "UnsupportedMediaType",
    "find_error",
    "NotFound",
    "ModelNotFound",
    "ModelNotReady",
    "ModelOverloaded",
    "ServerShuttingDown",
    "RequestTimeout",
    "ClientTooSlow",
    "Unauthenticated",
    "MethodNotImplemented",
    "ExtraNotInstalled",
    "ModelFailed",
    "ModelLoadError",
    "cut",
    "show",
]


def cut(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, ``...`` marking the cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def show(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, for quoting client input in a message.

    Messages travel as a gRPC status message, an HTTP/2 trailer: a model name of 200,000
    characters there costs seconds of HPACK encoding and exceeds clients' metadata limits.
    """
    try:
        return cut(repr(value), limit)
    except ValueError:  # holds an int beyond sys.get_int_max_str_digits()
        return f"<{type(value).__name__} too large to show>"


class StreamwiseError(Exception):
    http_status: int = 500
    grpc_status: str = "INTERNAL"
    retry_after: int | None = None
    """Seconds, sent as REST ``Retry-After`` when set."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(StreamwiseError):
    """A settings file, a model-settings file or a settings field is wrong."""


class PortInUse(ConfigError, OSError):
    """A port the settings name is taken (by another server, often another streamwise).
    An ``OSError`` with ``errno.EADDRINUSE`` too, as the bind's own error was."""

    def __init__(self, setting: str, host: str, port: int) -> None:
        ConfigError.__init__(
            self,
            f"{setting} {port} on {host}: address already in use (another server is on it? "
            f"choose another port: {setting} in settings.json, STREAMWISE_{setting.upper()}, "
            f"or --{setting.replace('_', '-')})",
        )
        self.errno = errno.EADDRINUSE


class InvalidRequest(StreamwiseError):
    http_status = 400
    grpc_status = "INVALID_ARGUMENT"


class InferenceError(InvalidRequest):
    """Raised by a model or a codec when a request cannot be served as sent.

    The same name and meaning as ``mlserver.errors.InferenceError`` (a 400).
    """


class PayloadTooLarge(InvalidRequest):
    http_status = 413
    grpc_status = "RESOURCE_EXHAUSTED"


class UnsupportedMediaType(InvalidRequest):
    """A request in a form not taken (an unknown ``Content-Encoding`` or
    ``grpc-encoding``)."""

    http_status = 415
    grpc_status = "UNIMPLEMENTED"


class NotFound(StreamwiseError):
    http_status = 404
    grpc_status = "NOT_FOUND"


class ModelNotFound(NotFound):
    def __init__(self, name: str, version: str | None = None) -> None:
        what = f"model {show(name)}"
        if version is not None:
            what += f" version {show(version)}"
        super().__init__(f"{what} not found")
        self.name = name
        self.version = version


class ModelNotReady(StreamwiseError):
    http_status = 503
    grpc_status = "UNAVAILABLE"


class ModelOverloaded(StreamwiseError):
    """The model is serving as many requests as it may (``max_concurrency``): retry later,
    rather than wait in an unbounded queue."""

    http_status = 503
    grpc_status = "RESOURCE_EXHAUSTED"
    retry_after = 1


class ServerShuttingDown(StreamwiseError):
    """The server is draining (new requests) or its grace period ran out (requests still
    running then)."""

    http_status = 503
    grpc_status = "UNAVAILABLE"
    retry_after = 1

    def __init__(self, message: str = "server shutting down") -> None:
        super().__init__(message)


class ClientTooSlow(StreamwiseError):
    """A streaming client read nothing for ``write_timeout_s``: it is dropped, its model
    cancelled. (REST closes the connection; gRPC ends the call with this status.)"""

    http_status = 503
    grpc_status = "RESOURCE_EXHAUSTED"


class RequestTimeout(StreamwiseError):
    """The request ran longer than its model's ``request_timeout_s``; the model was
    cancelled."""

    http_status = 504
    grpc_status = "DEADLINE_EXCEEDED"


class Unauthenticated(StreamwiseError):
    http_status = 401
    grpc_status = "UNAUTHENTICATED"


class MethodNotImplemented(StreamwiseError):
    http_status = 501
    grpc_status = "UNIMPLEMENTED"


class ExtraNotInstalled(MethodNotImplemented):
    """Something asked for needs an optional extra this server does not have (pandas for
    the ``pd`` content type...); the message names the ``pip install`` that fixes it."""

    def __init__(self, what: str, module: str, extra: str) -> None:
        super().__init__(
            f'{what} needs {module}, which is not installed: pip install "streamwise[{extra}]"'
        )
        self.module = module
        self.extra = extra


class ModelFailed(StreamwiseError):
    """The model raised while serving a request; the message is the model's."""

    @classmethod
    def from_exception(cls, exc: BaseException) -> ModelFailed:
        text = str(exc) or type(exc).__name__
        return cls(f"model failed: {type(exc).__name__}: {text}")


class ModelLoadError(StreamwiseError):
    """A model's ``load()`` raised or returned False."""


E = TypeVar("E", bound=BaseException)


def find_error(exc: BaseException, kind: type[E]) -> E | None:
    """The first ``kind`` in ``exc``, looking inside exception groups (a startup error
    raised in a nursery reaches ``trio.run``'s caller inside one)."""
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = find_error(inner, kind)
            if found is not None:
                return found
    return None
