"""Server and model settings: typed, validated, immutable.

Field names are MLServer's, so its ``settings.json`` and ``model-settings.json`` load as
they are. Where a value comes from, lowest precedence first::

    defaults < settings.json < MLSERVER_<FIELD> < STREAMWISE_<FIELD> < command-line flags

A repository with no ``model-settings.json`` serves the one model that the environment
describes, as MLServer does (``MLSERVER_MODEL_<FIELD>`` < ``STREAMWISE_MODEL_<FIELD>``;
:func:`model_settings_from_environment`): how KServe's MLServer runtime configures it.

A malformed file or an unknown or invalid field is a :class:`~streamwise.errors.ConfigError`
that names the file (or the environment variable) and the field.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import pydantic
from pydantic import ConfigDict, Field, PrivateAttr

from .errors import ConfigError
from .types import MetadataTensor

__all__ = [
    "Settings",
    "ModelSettings",
    "ModelParameters",
    "load_settings",
    "find_model_settings",
    "model_settings_from_environment",
]

log = logging.getLogger(__name__)

SETTINGS_FILE = "settings.json"
MODEL_SETTINGS_FILE = "model-settings.json"
ENV_PREFIXES = ("MLSERVER_", "STREAMWISE_")  # later ones win
# a model from the environment alone (a repository without model-settings.json): MLServer's
# ModelSettings and ModelParameters both read MLSERVER_MODEL_<FIELD>
MODEL_ENV_PREFIXES = tuple(prefix + "MODEL_" for prefix in ENV_PREFIXES)


class _Frozen(pydantic.BaseModel):
    # a field's docstring is its description: the docs' settings reference is built from them
    model_config = ConfigDict(
        frozen=True, extra="forbid", protected_namespaces=(), use_attribute_docstrings=True
    )


class Settings(_Frozen):
    """Server-wide settings (``settings.json``)."""

    # -- ours and MLServer's --
    debug: bool = False
    """Log at DEBUG level, whatever ``log_level`` says (the ``streamwise`` command; an
    application embedding ``serve()`` configures its own logging)."""
    host: str = "127.0.0.1"
    """Address both transports listen on. MLServer listens on ``0.0.0.0``; a new server is
    not exposed to the network by default."""
    http_port: int = Field(8080, ge=0, le=65535)
    """REST (and server-sent events) port; 0 picks a free port, and the bound address is
    logged."""
    grpc_port: int = Field(8081, ge=0, le=65535)
    """gRPC port; 0 picks a free port."""
    root_path: str = ""
    """ASGI root path, when the server is mounted below a URL prefix: the prefix is removed
    from request paths before routing."""
    model_repository_root: str = "."
    """Folder searched for ``model-settings.json`` files at startup. Settings loaded from a
    folder (``streamwise serve MODEL_DIR``, ``load_settings(folder)``) default to that
    folder."""
    load_models_at_startup: bool = True
    """Load every model before the server reports ready; False leaves them unloaded, to be
    loaded through the repository API. A repository with no ``model-settings.json`` serves
    the one model its environment describes (``MLSERVER_MODEL_IMPLEMENTATION``, ...; see
    docs/running.md)."""
    server_name: str = "streamwise"
    """The name in the server metadata (``GET /v2``, gRPC ``ServerMetadata``)."""
    server_version: str | None = None
    """The version in the server metadata; None: the package's version."""
    extensions: tuple[str, ...] = ()
    """Extensions listed in the server metadata, after the built-in ``binary_tensor_data``."""
    grpc_max_message_length: int | None = Field(None, gt=0)
    """gRPC message size limit, both ways: ``RESOURCE_EXHAUSTED`` over it (None: 64 MiB)."""
    grpc_enabled: bool = True
    """Serve gRPC on ``grpc_port``; False: REST only."""

    # -- ours --
    grpc_stream_wrapper: Literal["mlserver", "triton"] = "mlserver"
    """What gRPC ``ModelStreamInfer`` is (one method path, two protocols; docs/grpc.md):
    ``"mlserver"``, MLServer's: the requests of a stream are one model call, each response a
    bare ``ModelInferResponse``, and a failure ends the stream with its status.
    ``"triton"``, Triton's (``tritonclient.grpc``'s ``start_stream``): each request is its
    own model call, each response a ``ModelStreamInferResponse``, and a request's failure
    is sent as its ``error_message`` while the stream goes on with the next request."""
    grpc_max_concurrent_streams: int | None = Field(None, ge=1)
    """Streams (calls) one gRPC connection may have open at once, advertised to clients in
    HTTP/2 SETTINGS; None: no limit, as grpcio. A client past it is refused that stream
    alone (RST_STREAM REFUSED_STREAM); grpcio clients queue calls until one ends."""
    grpc_max_connections: int | None = Field(10_000, ge=1)
    """Open gRPC connections; past it a new connection is closed at once (the open ones
    are served as before). None: no limit. Mind the process's open-files limit
    (``ulimit -n``)."""
    grpc_max_connection_idle_s: float | None = Field(300.0, gt=0)
    """A gRPC connection without a call for this long gets GOAWAY (NO_ERROR) and is closed,
    as gRPC's MAX_CONNECTION_IDLE; clients reconnect at their next call. None: never."""
    grpc_keepalive_time_s: float | None = Field(7200.0, gt=0)
    """While a gRPC connection has calls open, the server pings it this often; a peer that
    does not answer within ``grpc_keepalive_timeout_s`` is gone: its connection is closed
    and its calls (their models) cancelled. gRPC's KEEPALIVE_TIME (2 hours by default, as
    gRPC servers); None: no pings."""
    grpc_keepalive_timeout_s: float = Field(20.0, gt=0)
    """How long a ping may go unanswered (gRPC's KEEPALIVE_TIMEOUT)."""
    grpc_max_connection_age_s: float | None = Field(None, gt=0)
    """A gRPC connection this old gets a graceful GOAWAY: its calls go on, new ones go to
    a new connection (behind a load balancer: to any replica). gRPC's MAX_CONNECTION_AGE.
    None: no maximum age."""
    grpc_max_connection_age_grace_s: float | None = Field(None, gt=0)
    """After ``grpc_max_connection_age_s``, how long the calls still open may take before
    the connection is closed under them. None: as long as they take."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    """Logging level of the ``streamwise`` command (``debug`` overrides it)."""
    log_format: Literal["text", "json"] = "text"
    """How the ``streamwise`` command writes its log: ``text`` lines, or ``json``, one JSON
    object per record (``--log-format``; MLServer's ``use_structured_logging: true`` also
    selects it). See docs/running.md, "Request logs"."""
    access_log: bool = True
    """One INFO line per REST request and gRPC call (a stream's when it ends) on the logger
    ``streamwise.access``; False: none."""
    max_request_body_bytes: int = Field(64 * 1024 * 1024, gt=0)
    """Largest REST request body (64 MiB); a larger one gets 413."""
    stream_buffer_size: int = Field(64, ge=1)
    """Responses a model may run ahead of its client before it waits (backpressure)."""
    repository_api_enabled: bool = True
    """The repository extension's load and unload; False refuses them (400 /
    ``INVALID_ARGUMENT``), the index stays. Load looks in ``model_repository_root`` again
    for the model it names, so a model folder copied there after startup loads (as Seldon
    Core's agent does); the index lists the models found at startup and those loaded
    since."""

    openai_enabled: bool = True
    """The OpenAI-compatible API (``GET /v1/models``, ``POST /v1/completions``,
    ``POST /v1/chat/completions``; docs/openai.md) on the REST port, over the same models;
    False: not served (404)."""
    openai_route_prefix: str = Field("", pattern=r"^(/[^/?#]+)*$")
    """Where the OpenAI-compatible API is mounted: ``""`` serves ``/v1/...``,
    ``"/openai"`` serves ``/openai/v1/...`` (as KServe's ``KSERVE_OPENAI_ROUTE_PREFIX``).
    Empty, or a path starting with ``/`` and not ending with one."""

    # -- limits and shutdown (docs/reliability.md) --
    graceful_timeout: float = Field(30.0, ge=0)
    """Seconds in-flight requests get to finish after SIGTERM/SIGINT before they are ended
    with "server shutting down"."""
    model_max_concurrency: int = Field(1024, ge=1)
    """Requests and streams a model serves at once (per model, overridable in its
    model-settings ``max_concurrency``); beyond it: 503 + ``Retry-After: 1`` /
    ``RESOURCE_EXHAUSTED``."""
    request_timeout_s: float | None = Field(None, gt=0)
    """Longest a request (or a whole stream) may run before its model is cancelled and the
    client gets 504 (``event: error`` on a stream) / ``DEADLINE_EXCEEDED``; None: no limit.
    Per model: model-settings ``request_timeout_s``."""
    write_timeout_s: float = Field(60.0, gt=0)
    """A streaming client that reads nothing for this long is dropped (REST: its connection
    closed; gRPC: ``RESOURCE_EXHAUSTED``) and its model cancelled."""
    keep_alive_timeout_s: float = Field(5.0, gt=0)
    """An HTTP/1.1 connection idle this long between requests (or before its first) is
    closed."""
    max_tensor_elements: int = Field(64 * 1024 * 1024, ge=1)
    """Elements one input tensor may declare (its shape's product); over it: 413 /
    ``RESOURCE_EXHAUSTED``."""
    auth_token: pydantic.SecretStr | None = None
    """When set, every endpoint but health (``/v2/health/*``; gRPC ``ServerLive``,
    ``ServerReady``) needs ``Authorization: Bearer <token>`` (REST) or
    ``authorization: Bearer <token>`` metadata (gRPC); else 401 / ``UNAUTHENTICATED``. Set it
    through ``STREAMWISE_AUTH_TOKEN`` rather than a file."""
    gc_tuning: bool = True
    """While serving: what startup allocated (modules, loaded models) is frozen out of the
    cyclic garbage collector's scans (``gc.freeze()``), and its youngest generation is
    collected every :data:`~streamwise.server.GC_YOUNG_THRESHOLD` (20,000) allocations
    instead of Python's 700; restored when ``serve()`` returns. With 1,000 open streams the
    defaults cost a third of the server's CPU (docs/performance.md). False leaves the
    process's collector alone (an application embedding ``serve()`` that tunes its own)."""
    event_loop_watchdog_s: float | None = Field(1.0, gt=0)
    """Log a warning with the stack when the event loop is blocked this long; None: off."""

    parallel_workers: Annotated[int, Field(ge=0)] | Literal["auto"] | None = None
    """Serving processes (``streamwise serve`` only): N >= 2 runs N worker processes that
    share the REST and gRPC ports, each with its own models, under a supervisor that
    replaces a worker that dies; ``"auto"`` is one per core; None, 0 or 1 is one process,
    the server itself. Limits and state are per worker (docs/running.md, "Worker
    processes")."""

    # -- MLServer's, accepted so its files load; not (yet) acted upon: see docs/running.md
    parallel_workers_timeout: int | None = None
    """MLServer's: accepted so its files load, not acted upon."""
    gzip_enabled: bool = True
    """MLServer's: gzip a REST response of 1 KiB or more for a client that sends
    ``Accept-Encoding: gzip`` (never server-sent events). True, as MLServer."""
    metrics_endpoint: str | None = "/metrics"
    """Where Prometheus scrapes the metrics, on :attr:`metrics_port` (docs/observability.md);
    None turns metrics off (nothing recorded, nothing listens)."""
    metrics_port: int = Field(8082, ge=0, le=65535)
    """The metrics listener's port (on :attr:`host`), apart from the REST port, as MLServer's;
    0 picks a free one (``ServerInfo.metrics_port`` says which)."""
    metrics_rest_server_prefix: str = "rest_server"
    """The prefix of the REST request metrics (``rest_server_requests_total``...), as
    MLServer's."""
    metrics_dir: str | None = None
    """MLServer's: accepted so its files load, not acted upon."""
    cors_settings: dict[str, Any] | None = None
    """MLServer's: accepted so its files load, not acted upon."""
    logging_settings: str | dict[str, Any] | None = None
    """MLServer's: accepted so its files load, not acted upon."""
    use_structured_logging: bool | None = None
    """MLServer's: true selects ``log_format: json``."""
    environments_dir: str | None = None
    """MLServer's: accepted so its files load, not acted upon."""
    model_repository_implementation: str | None = None
    """MLServer's: accepted so its files load, not acted upon."""
    model_repository_implementation_args: dict[str, Any] | None = None
    """MLServer's: accepted so its files load, not acted upon."""
    kafka_enabled: bool | None = None
    """MLServer's: accepted so its files load, not acted upon."""
    kafka_servers: str | None = None
    """MLServer's: accepted so its files load, not acted upon."""
    kafka_topic_input: str | None = None
    """MLServer's: accepted so its files load, not acted upon."""
    kafka_topic_output: str | None = None
    """MLServer's: accepted so its files load, not acted upon."""
    tracing_server: str | None = None
    """MLServer's: accepted so its files load, not acted upon."""
    cache_enabled: bool | None = None
    """MLServer's: accepted so its files load, not acted upon."""
    cache_size: int | None = None
    """MLServer's: accepted so its files load, not acted upon."""

    @property
    def version(self) -> str:
        from . import __version__

        return self.server_version or __version__


class ModelParameters(_Frozen):
    """A model's ``parameters`` (in ``model-settings.json``)."""

    uri: str | None = None
    """Where the model's file is, relative to the folder of its ``model-settings.json``;
    the runtimes read it as MLServer's do (a folder: its well-known file names; none: the
    model's folder; docs/runtimes.md). A model of your own reads it itself
    (``self._settings.parameters.uri``)."""
    version: str | None = None
    """The model's version: ``/v2/models/NAME/versions/VERSION``, and in its metadata."""
    format: str | None = None
    """For the model to read; streamwise does not."""
    content_type: str | None = None
    """The model's default content type: its codec decodes an input (or a whole request)
    whose own parameters and the model's metadata name none. Given in the model's metadata."""
    extra: dict[str, Any] | None = None
    """Free-form settings for the model to read (``self._settings.parameters.extra``); the
    scikit-learn runtime reads ``predict_fn``, its default output (docs/runtimes.md)."""
    environment_path: str | None = None
    """MLServer's (a custom environment): accepted so its files load, not acted upon."""
    environment_tarball: str | None = None
    """MLServer's (a custom environment): accepted so its files load, not acted upon."""
    inference_pool_gid: str | None = None
    """MLServer's (inference pools): accepted so its files load, not acted upon."""
    autogenerate_inference_pool_gid: bool | None = None
    """MLServer's (inference pools): accepted so its files load, not acted upon."""


class ModelSettings(_Frozen):
    """One model's settings (``model-settings.json``)."""

    name: str = Field(min_length=1)
    """The model's name (``/v2/models/NAME``); missing or empty in ``model-settings.json``:
    the name of the file's folder."""
    implementation: str = Field(min_length=1)
    """Dotted path of the MLModel subclass (``module.Class``), resolved relative to the
    model's folder first (for a model from the environment: the repository's folder), then
    on ``sys.path``."""
    platform: str = ""
    """Given in the model's metadata."""
    versions: tuple[str, ...] = ()
    """More versions the model answers to (``/v2/models/NAME/versions/V``), each with a
    leading ``NAME/`` removed (``text-model/v1.2.3`` answers as ``v1.2.3``); given in its
    metadata."""
    inputs: tuple[MetadataTensor, ...] = ()
    """The inputs the model takes: when declared, every input of a request must be declared,
    of its datatype, and every declared input present unless its ``parameters`` say
    ``"optional": true`` (shapes are not enforced). Given in the model's metadata."""
    outputs: tuple[MetadataTensor, ...] = ()
    """The outputs the model gives: when declared, a request may only ask for these. Given
    in the model's metadata."""
    parameters: ModelParameters | None = None
    """The model's parameters: version, content type, and values for the model itself."""
    max_batch_size: int = 0
    """Adaptive batching (MLServer's): the most unary requests merged into one ``predict``
    call along their first dimension. On when over 1 and ``max_batch_time`` is over 0;
    streams are never batched (docs/batching.md)."""
    max_batch_time: float = 0.0
    """Adaptive batching (MLServer's): seconds a batch waits, from its first request, for
    more requests before it runs (when not full before: ``max_batch_size``)."""
    max_concurrent_batches: int | None = Field(None, ge=1)
    """Adaptive batching: the most batches of this model running at once (None: no bound,
    as MLServer). A batch due while that many run waits for one to end, taking more
    requests meanwhile (up to ``max_batch_size``), as Triton's dynamic batcher waits for a
    free model instance."""
    max_concurrency: int | None = Field(None, ge=1)
    """This model's limit of requests at once (default: the server's model_max_concurrency)."""
    request_timeout_s: float | None = Field(None, gt=0)
    """This model's request timeout (default: the server's request_timeout_s)."""
    warm_workers: bool | None = None
    """MLServer's: accepted so its files load, not acted upon."""
    parallel_workers: int | None = None
    """MLServer's: accepted so its files load, not acted upon."""
    cache_enabled: bool | None = None
    """MLServer's: accepted so its files load, not acted upon."""

    source: pathlib.Path | None = Field(None, exclude=True)
    """The file these settings came from, set by the loader (a value in the file is
    ignored); relative paths resolve against its folder."""

    # the repository folder of a model from the environment (it has no source file)
    _environment_folder: pathlib.Path | None = PrivateAttr(None)

    @property
    def version(self) -> str | None:
        return self.parameters.version if self.parameters else None

    @property
    def folder(self) -> pathlib.Path | None:
        """The folder the model's code is looked up in first: its file's, or, for a model
        from the environment, the repository's."""
        return self.source.parent if self.source else self._environment_folder

    @property
    def origin(self) -> str:
        """Where these settings came from, for messages."""
        if self.source is not None:
            return str(self.source)
        if self._environment_folder is not None:
            return f"model {self.name!r} from the environment (MLSERVER_MODEL_*)"
        return self.name


def _describe_errors(exc: pydantic.ValidationError, source_of: Mapping[str, str]) -> str:
    lines = []
    for err in exc.errors():
        loc = err["loc"]
        field = ".".join(str(p) for p in loc) or "(root)"
        where = source_of.get(str(loc[0]), "settings") if loc else "settings"
        msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"{where}: field {field!r}: {msg}")
    return "; ".join(lines)


def _read_json_object(path: pathlib.Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _env_values(
    fields: Mapping[str, Any],
    environ: Mapping[str, str],
    prefixes: tuple[str, ...] = ENV_PREFIXES,
) -> dict[str, tuple[Any, str]]:
    found: dict[str, tuple[Any, str]] = {}
    for prefix in prefixes:
        for name in fields:
            var = prefix + name.upper()
            if var in environ:
                raw = environ[var]
                try:  # lists, objects, numbers and booleans are JSON; anything else is a string
                    value: Any = json.loads(raw)
                    if isinstance(value, (int, float)) and not isinstance(value, bool):
                        value = raw  # let pydantic coerce "8080" itself, keeping "1.10" a str
                except json.JSONDecodeError:
                    value = raw
                found[name] = (value, f"environment {var}")
    return found


def load_settings(
    folder: str | os.PathLike[str] | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Settings from ``folder/settings.json`` (if any), the environment, and ``overrides``."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    source_of: dict[str, str] = {}
    if folder is not None:
        path = pathlib.Path(folder) / SETTINGS_FILE
        if path.is_file():
            for key, value in _read_json_object(path).items():
                values[key] = value
                source_of[key] = str(path)
        values.setdefault("model_repository_root", str(folder))
    for key, (value, where) in _env_values(Settings.model_fields, environ).items():
        values[key] = value
        source_of[key] = where
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = value
            source_of[key] = "command line"
    try:
        return Settings.model_validate(values)
    except pydantic.ValidationError as exc:
        raise ConfigError(_describe_errors(exc, source_of)) from None


def load_model_settings(path: pathlib.Path) -> ModelSettings:
    data = _read_json_object(path)
    data.pop("source", None)
    if not data.get("name"):
        data["name"] = path.parent.name  # MLServer names a nameless model after its folder
    try:
        return ModelSettings.model_validate({**data, "source": path})
    except pydantic.ValidationError as exc:
        raise ConfigError(_describe_errors(exc, {k: str(path) for k in data})) from None


def model_settings_paths(root: str | os.PathLike[str]) -> list[pathlib.Path]:
    """Every ``model-settings.json`` below ``root``, in a stable order."""
    root = pathlib.Path(root)
    if not root.is_dir():
        raise ConfigError(f"{root}: model repository is not a folder")
    return sorted(p for p in root.rglob(MODEL_SETTINGS_FILE) if p.is_file())


def find_model_settings(
    root: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None
) -> list[ModelSettings]:
    """The models of the repository ``root``: every ``model-settings.json`` below it, in a
    stable order; when there is none, the one model the environment describes (see
    :func:`model_settings_from_environment`), if it describes one."""
    paths = model_settings_paths(root)
    if paths:
        return [load_model_settings(p) for p in paths]
    from_environment = model_settings_from_environment(root, environ=environ)
    return [from_environment] if from_environment is not None else []


# set on the one model as a whole (parameters from their own variables; source by the loader)
_NOT_FROM_ENVIRONMENT = frozenset({"parameters", "source"})


def model_settings_from_environment(
    root: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None
) -> ModelSettings | None:
    """The one model MLServer serves from a repository without ``model-settings.json``:
    its fields from ``MLSERVER_MODEL_<FIELD>`` (``STREAMWISE_MODEL_<FIELD>`` wins), those of
    its ``parameters`` likewise (``MLSERVER_MODEL_URI`` is ``parameters.uri``,
    ``MLSERVER_MODEL_VERSION`` ``parameters.version``). None unless an ``implementation`` is
    given (MLServer's rule: its only required field). The name defaults to the repository
    folder's; the implementation is looked up in that folder first."""
    environ = os.environ if environ is None else environ
    fields = {k: v for k, v in ModelSettings.model_fields.items() if k not in _NOT_FROM_ENVIRONMENT}
    top = _env_values(fields, environ, MODEL_ENV_PREFIXES)
    if "implementation" not in top:
        if top:
            log.warning(
                "%s set but no MLSERVER_MODEL_IMPLEMENTATION: no model from the environment",
                ", ".join(where.removeprefix("environment ") for _, where in top.values()),
            )
        return None
    params = _env_values(ModelParameters.model_fields, environ, MODEL_ENV_PREFIXES)
    try:
        parameters = ModelParameters.model_validate({k: v for k, (v, _) in params.items()})
    except pydantic.ValidationError as exc:
        raise ConfigError(_describe_errors(exc, {k: w for k, (_, w) in params.items()})) from None
    folder = pathlib.Path(root).resolve()
    values: dict[str, Any] = {k: v for k, (v, _) in top.items()}
    if not values.get("name"):
        values["name"] = folder.name  # as a nameless model-settings.json is named
    try:
        settings = ModelSettings.model_validate({**values, "parameters": parameters})
    except pydantic.ValidationError as exc:
        raise ConfigError(_describe_errors(exc, {k: w for k, (_, w) in top.items()})) from None
    settings._environment_folder = folder
    return settings
