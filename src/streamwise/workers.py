"""``parallel_workers``: several serving processes on the same ports, and their supervisor.

::

    streamwise serve  (the supervisor: binds the ports, serves no request, loads no model)
    ├── the listening sockets, bound once: REST (ACCEPTING_SOCKETS of them) and gRPC
    ├── worker 0   python -c "...worker_main()"   its own trio run, asyncio loop, models;
    ├── worker 1   ...                            each accepts on the shared sockets
    └── one socketpair per worker (the control channel): "ready", and the repository
        API's loads and unloads, which every worker runs, in the same order

Every worker inherits the same listening sockets and accepts on them: a connection goes to
whichever worker takes it first, so a busy worker takes fewer (docs/performance.md,
"Worker processes", has the measurement against a socket group per worker with
``SO_REUSEPORT``). A connection, and every stream on it, belongs to the worker that
accepted it; a worker that dies takes its connections with it (their clients see the
connection cut, never a clean end) and the supervisor starts another in its place, with
a growing pause if it keeps dying. Connections waiting to be accepted are not lost: the
sockets are the supervisor's.

The first SIGINT or SIGTERM is passed on to every worker (each drains as a lone server
would), a second one too (each stops at once); the supervisor returns once all have
exited. Workers run in sessions of their own, so a terminal's Ctrl-C reaches the
supervisor alone, and a worker whose supervisor is gone (its channel closes) drains.

State is per worker: models, limits (``model_max_concurrency`` is per worker), health.
A load or unload through the repository API is run by every worker before it is
answered, and a worker started later replays them, so the index tells one story.

Metrics (docs/observability.md) are the supervisor's to serve: it makes a fresh folder for
prometheus_client's multiprocess mode, where every worker writes its values
(``PROMETHEUS_MULTIPROC_DIR`` in their environment), and answers ``metrics_endpoint`` on
``metrics_port`` with their sum. A worker that exits is marked dead there: its live gauges
go, its counts stay (a replacement's add to them).
"""

from __future__ import annotations

import errno
import logging
import os
import pickle
import shutil
import signal
import socket
import struct
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import count
from typing import Any

import trio

from . import logs
from . import server as _server
from .errors import ConfigError, PortInUse, StreamwiseError, find_error
from .runtime.dataplane import DataPlane, RepositoryOp
from .settings import Settings, find_model_settings
from .signals import until_signalled

__all__ = ["worker_count", "supervise", "SupervisorInfo", "worker_main"]

log = logging.getLogger(__name__)

BACKLOG = 1024
"""The listening sockets' queue: connections wait there while every worker is busy or
one is being replaced."""
RESTART_PAUSE_S = 0.5
"""A worker that died is replaced after this pause, doubled each time the replacement
dies within :data:`STABLE_S` as well, up to :data:`RESTART_PAUSE_MAX_S`."""
RESTART_PAUSE_MAX_S = 10.0
STABLE_S = 30.0
STOP_NOW_S = 3.0

WORKER_MAIN = "from streamwise.workers import worker_main; worker_main()"


def worker_count(parallel_workers: int | str | None) -> int:
    """Serving processes for a ``parallel_workers`` value: ``"auto"`` is one per core;
    None, 0 and 1 are one, the server itself (no supervisor)."""
    if parallel_workers == "auto":
        return os.cpu_count() or 1
    if isinstance(parallel_workers, int) and parallel_workers > 1:
        return parallel_workers
    return 1


# -- the control channel: length-prefixed pickles over a socketpair ------------------------
class _Channel:
    """Messages (tuples) both ways between the supervisor and one worker. Pickle: the
    two ends are this program, on a socketpair nobody else holds."""

    def __init__(self, sock: socket.socket) -> None:
        self._stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
        self._sending = trio.Lock()
        self._buffer = bytearray()

    async def send(self, message: tuple[Any, ...]) -> None:
        data = pickle.dumps(message)
        async with self._sending:
            await self._stream.send_all(struct.pack("!I", len(data)) + data)

    async def receive(self) -> tuple[Any, ...] | None:
        """The next message; None once the other end has closed (or died)."""
        while True:
            if len(self._buffer) >= 4:
                (size,) = struct.unpack_from("!I", self._buffer)
                if len(self._buffer) >= 4 + size:
                    data = bytes(self._buffer[4 : 4 + size])
                    del self._buffer[: 4 + size]
                    return pickle.loads(data)  # type: ignore[no-any-return]
            try:
                chunk = await self._stream.receive_some(65536)
            except trio.BrokenResourceError:  # reset: it died with our message unread
                return None
            if not chunk:
                return None
            self._buffer += chunk

    async def aclose(self) -> None:
        await self._stream.aclose()


class _Relayed(StreamwiseError):
    """A worker's error, told by another worker: same message, same statuses."""

    def __init__(self, message: str, http_status: int, grpc_status: str) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.grpc_status = grpc_status


def _described(exc: Exception) -> tuple[str, int, str]:
    if isinstance(exc, StreamwiseError):
        return str(exc), exc.http_status, exc.grpc_status
    return f"{type(exc).__name__}: {exc}", 500, "INTERNAL"


@dataclass(frozen=True)
class WorkerConfig:
    """What a worker is told first, on its channel."""

    index: int
    settings: Settings
    rest_fds: tuple[int, ...]
    grpc_fd: int | None
    replay: tuple[tuple[RepositoryOp, str], ...]
    """The repository API's loads and unloads so far, to run once started."""


# -- the supervisor ------------------------------------------------------------------------
@dataclass
class SupervisorInfo:
    """What ``nursery.start(supervise, ...)`` returns, once every worker is ready."""

    host: str
    http_port: int
    grpc_port: int | None
    workers: int
    _supervisor: _Supervisor
    metrics_port: int | None = None
    """Where the supervisor serves the workers' metrics; None when they are off."""

    @property
    def http_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.http_port}"

    @property
    def shutting_down(self) -> bool:
        return self._supervisor.stopping

    def shutdown(self) -> None:
        """Drain every worker (SIGTERM each); ``supervise`` returns when all have exited.
        Called again: each worker stops at once."""
        self._supervisor.signal_all(signal.SIGTERM)

    def pids(self) -> list[int]:
        """The workers' process ids now (a replaced worker has a new one)."""
        return [link.process.pid for link in self._supervisor.links.values()]


@dataclass(eq=False)
class _Link:
    """The supervisor's end of one running worker."""

    index: int
    process: trio.Process
    channel: _Channel
    ready: trio.Event = field(default_factory=trio.Event)


@dataclass(eq=False)
class _Job:
    """One repository operation, run by every worker."""

    waiting_for: set[int]
    error: tuple[str, int, str] | None = None
    finished: trio.Event = field(default_factory=trio.Event)

    def done(self, index: int, error: tuple[str, int, str] | None) -> None:
        self.waiting_for.discard(index)
        if error is not None and self.error is None:
            self.error = error
        if not self.waiting_for:
            self.finished.set()


class _Supervisor:
    def __init__(self, settings: Settings, workers: int, metrics_dir: str | None = None) -> None:
        self.settings = settings
        self.workers = workers
        self.metrics_dir = metrics_dir
        """prometheus_client's multiprocess folder; None when metrics are off."""
        self.links: dict[int, _Link] = {}
        self.stop_requested = trio.Event()
        self.replay: dict[str, RepositoryOp] = {}
        self.repository = trio.Lock()
        """Held while a repository operation runs in the workers, and while a worker is
        started: each sees every operation once, in one order."""
        self._jobs: dict[int, _Job] = {}
        self._ids = count()

    @property
    def stopping(self) -> bool:
        return self.stop_requested.is_set()

    def signal_all(self, signum: int) -> None:
        self.stop_requested.set()
        for link in self.links.values():
            if link.process.returncode is None:
                link.process.send_signal(signum)

    async def keep(
        self, index: int, config: Callable[[int], WorkerConfig], first_ready: trio.Event
    ) -> None:
        """Run worker ``index``; start another in its place when it dies, until stopping."""
        pause = RESTART_PAUSE_S
        while True:
            started = trio.current_time()
            code = await self._run(index, config, first_ready)
            if self.stopping:
                if code != 0:
                    log.warning("worker %d exited with status %s", index, code)
                return
            if not first_ready.is_set():  # it never served: another would fail the same way
                self.stop_requested.set()
                self.signal_all(signal.SIGTERM)
                raise ConfigError(
                    f"worker {index} exited with status {code} during start-up (its log "
                    "says why): stopping"
                )
            if trio.current_time() - started > STABLE_S:
                pause = RESTART_PAUSE_S
            log.error(
                "worker %d exited with status %s: starting another in %g s", index, code, pause
            )
            with trio.move_on_after(pause):
                await self.stop_requested.wait()
            if self.stopping:  # during the pause: the ports may be closed already
                return
            pause = min(pause * 2, RESTART_PAUSE_MAX_S)

    async def _run(
        self, index: int, config: Callable[[int], WorkerConfig], first_ready: trio.Event
    ) -> int:
        ours, theirs = socket.socketpair()
        with ours:
            conf = config(index)
            fds = (theirs.fileno(), *conf.rest_fds) + (
                (conf.grpc_fd,) if conf.grpc_fd is not None else ()
            )
            try:
                process = await trio.lowlevel.open_process(
                    [sys.executable, "-c", WORKER_MAIN, str(theirs.fileno())],
                    pass_fds=fds,
                    start_new_session=True,  # a terminal's Ctrl-C: for the supervisor only
                    env=_worker_environment(self.metrics_dir),
                )
            finally:
                theirs.close()
            link = _Link(index, process, _Channel(ours))
            try:
                async with trio.open_nursery() as nursery:
                    async with self.repository:  # the replay and later operations, in order
                        replay = tuple((op, name) for name, op in self.replay.items())
                        try:
                            await link.channel.send(("config", _with_replay(conf, replay)))
                            self.links[index] = link
                        except (trio.BrokenResourceError, trio.ClosedResourceError):
                            pass  # it died at once: its exit status tells the rest
                    if self.stopping:  # a signal came while it started: it gets it too
                        process.send_signal(signal.SIGTERM)
                    nursery.start_soon(self._listen, link, first_ready)
                    code = await process.wait()
                    nursery.cancel_scope.cancel()
                if self.metrics_dir is not None:
                    from prometheus_client import multiprocess

                    multiprocess.mark_process_dead(process.pid, self.metrics_dir)  # type: ignore[no-untyped-call]
                return code
            finally:
                if self.links.get(index) is link:
                    del self.links[index]
                for job in list(self._jobs.values()):
                    job.done(index, None)  # a dead worker holds no operation up
                if process.returncode is None:  # cancelled: the supervisor stops at once
                    await _stop_now(process)

    async def _listen(self, link: _Link, first_ready: trio.Event) -> None:
        async with trio.open_nursery() as nursery:
            while (message := await link.channel.receive()) is not None:  # None: it died
                kind = message[0]
                if kind == "ready":
                    if first_ready.is_set():
                        log.info("worker %d ready (pid %d)", link.index, link.process.pid)
                    link.ready.set()
                elif kind == "ask":
                    _, ask, op, name = message
                    nursery.start_soon(self._everywhere, link, ask, op, name)
                elif kind == "done":
                    _, job_id, error = message
                    job = self._jobs.get(job_id)
                    if job is not None:
                        job.done(link.index, error)

    async def _everywhere(self, asker: _Link, ask: int, op: RepositoryOp, name: str) -> None:
        async with self.repository:
            self.replay.pop(name, None)
            self.replay[name] = op  # the latest operation on a name is the one to replay
            job_id = next(self._ids)
            job = self._jobs[job_id] = _Job(set(self.links))
            try:
                for link in list(self.links.values()):
                    try:
                        await link.channel.send(("do", job_id, op, name))
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        job.done(link.index, None)  # it died: it will replay when replaced
                if job.waiting_for:
                    await job.finished.wait()
            finally:
                del self._jobs[job_id]
        try:
            await asker.channel.send(("answer", ask, job.error))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the asking worker died meanwhile: nobody waits for the answer


async def _stop_now(process: trio.Process) -> None:
    """A worker, at once: a signal (after the first, a worker stops at once and tells its
    clients so), then SIGKILL if it has not exited within :data:`STOP_NOW_S`."""
    with trio.CancelScope(shield=True):
        process.send_signal(signal.SIGTERM)
        with trio.move_on_after(STOP_NOW_S):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()


def _with_replay(
    config: WorkerConfig, replay: tuple[tuple[RepositoryOp, str], ...]
) -> WorkerConfig:
    return WorkerConfig(config.index, config.settings, config.rest_fds, config.grpc_fd, replay)


def _worker_environment(metrics_dir: str | None = None) -> dict[str, str]:
    """This process's environment, with the folder ``streamwise`` was imported from first
    on the workers' ``PYTHONPATH`` (``python -m src`` from a checkout installs nothing), and
    ``metrics_dir`` as prometheus_client's multiprocess folder."""
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    paths = [package_parent, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    if metrics_dir is not None:
        env["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    return env


def _grpc_socket(settings: Settings) -> socket.socket:
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((settings.host, settings.grpc_port))
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse("grpc_port", settings.host, settings.grpc_port) from None
        raise
    return sock


async def supervise(
    settings: Settings,
    workers: int,
    *,
    task_status: trio.TaskStatus[SupervisorInfo] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``settings`` with ``workers`` worker processes on shared ports until they have
    all exited after :meth:`SupervisorInfo.shutdown` (cancelled: they are killed)."""
    find_model_settings(settings.model_repository_root)  # a ConfigError here, once, plainly
    rest = _server.rest_sockets(settings)
    grpc = None
    metrics_dir = None
    try:
        for sock in rest:
            sock.listen(BACKLOG)
        grpc = _grpc_socket(settings) if settings.grpc_enabled else None
        http_port = rest[0].getsockname()[1]
        grpc_port = grpc.getsockname()[1] if grpc is not None else None
        shared = settings.model_copy(update={"http_port": http_port, "grpc_port": grpc_port})
        fds = tuple(sock.fileno() for sock in rest)
        grpc_fd = grpc.fileno() if grpc is not None else None

        def config(index: int) -> WorkerConfig:
            return WorkerConfig(index, shared, fds, grpc_fd, ())

        if settings.metrics_endpoint:
            metrics_dir = tempfile.mkdtemp(prefix="streamwise-metrics-")
        supervisor = _Supervisor(shared, workers, metrics_dir)
        first_ready = trio.Event()
        async with trio.open_nursery() as listener:
            metrics_port = None
            if settings.metrics_endpoint and metrics_dir is not None:
                metrics_port = await listener.start(
                    _serve_workers_metrics, settings.host, settings.metrics_port,
                    settings.metrics_endpoint, metrics_dir,
                )  # fmt: skip
            async with trio.open_nursery() as nursery:
                for index in range(workers):
                    nursery.start_soon(supervisor.keep, index, config, first_ready)
                while not (
                    len(supervisor.links) == workers
                    and all(link.ready.is_set() for link in supervisor.links.values())
                ):
                    if supervisor.stopping:
                        break
                    await trio.sleep(0.05)
                first_ready.set()
                info = SupervisorInfo(
                    settings.host, http_port, grpc_port, workers, supervisor, metrics_port
                )
                log.info(
                    "streamwise %s serving with %d worker processes on %s, gRPC on port %s",
                    settings.version,
                    workers,
                    info.http_url,
                    grpc_port,
                )
                task_status.started(info)
                await supervisor.stop_requested.wait()
                # no new worker from here on: the ports close once the workers stop accepting
                for sock in (*rest, *((grpc,) if grpc is not None else ())):
                    sock.close()
            listener.cancel_scope.cancel()  # the workers have exited
    finally:
        for sock in (*rest, *((grpc,) if grpc is not None else ())):
            sock.close()
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


async def _serve_workers_metrics(
    host: str,
    port: int,
    endpoint: str,
    metrics_dir: str,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The sum of the workers' metrics (prometheus_client's multiprocess collector)."""
    from prometheus_client import CollectorRegistry, multiprocess

    from .metrics import serve_metrics

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=metrics_dir)  # type: ignore[no-untyped-call]
    await serve_metrics(host, port, endpoint, registry, task_status=task_status)


# -- a worker ------------------------------------------------------------------------------
class _WorkerPeers:
    """The repository API's operations, through the supervisor, to every worker."""

    def __init__(self, channel: _Channel) -> None:
        self._channel = channel
        self._ids = count()
        self._asks: dict[int, tuple[trio.Event, list[tuple[str, int, str] | None]]] = {}

    async def everywhere(self, op: RepositoryOp, name: str) -> None:
        ask = next(self._ids)
        answered, error = self._asks[ask] = (trio.Event(), [])
        try:
            await self._channel.send(("ask", ask, op, name))
            await answered.wait()
        finally:
            del self._asks[ask]
        if error[0] is not None:
            raise _Relayed(*error[0])

    async def serve(self, dataplane: DataPlane) -> None:
        """Run what the supervisor sends, in order, until it closes the channel."""
        todo_in, todo_out = trio.open_memory_channel[tuple[int, RepositoryOp, str]](1000)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._do, dataplane, todo_out)
            async with todo_in:
                while (message := await self._channel.receive()) is not None:
                    if message[0] == "do":
                        todo_in.send_nowait(message[1:])
                    elif message[0] == "answer":
                        _, ask, error = message
                        if ask in self._asks:
                            answered, slot = self._asks[ask]
                            slot.append(error)
                            answered.set()

    async def _do(
        self,
        dataplane: DataPlane,
        todo: trio.MemoryReceiveChannel[tuple[int, RepositoryOp, str]],
    ) -> None:
        async for job_id, op, name in todo:
            error = None
            try:
                await dataplane.here(op, name)
            except Exception as exc:  # told to the asker; trio.Cancelled is no Exception
                error = _described(exc)
            await self._channel.send(("done", job_id, error))


async def _replay(dataplane: DataPlane, replay: tuple[tuple[RepositoryOp, str], ...]) -> None:
    for op, name in replay:
        try:
            await dataplane.here(op, name)
        except StreamwiseError as exc:
            log.warning("repository %s of %s, replayed: %s", op, name, exc)


async def _worker(fd: int) -> None:
    channel = _Channel(socket.socket(fileno=fd))
    message = await channel.receive()
    assert message is not None and message[0] == "config", message
    config: WorkerConfig = message[1]
    settings = config.settings
    logs.configure(settings, worker=config.index)
    rest = [socket.socket(fileno=fd) for fd in config.rest_fds]
    grpc = socket.socket(fileno=config.grpc_fd) if config.grpc_fd is not None else None
    peers = _WorkerPeers(channel)

    async def run(*, task_status: trio.TaskStatus[_server.ServerInfo]) -> None:
        await _server.serve_on(
            settings, rest, grpc, peers=peers, metrics_listener=False, task_status=task_status
        )

    async def started(info: _server.ServerInfo) -> None:
        await _replay(info.dataplane, config.replay)
        await channel.send(("ready", os.getpid()))
        await peers.serve(info.dataplane)
        if not info.shutting_down:
            log.warning("the supervisor is gone: shutting down")
            info.shutdown()

    await until_signalled(run, settings.graceful_timeout, started)


def worker_main() -> None:
    """A worker process: ``python -c WORKER_MAIN FD`` (FD: its end of the channel)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # until trio's receiver takes over
    try:
        trio.run(_worker, int(sys.argv[1]))
    except BaseException as exc:
        config_error = find_error(exc, ConfigError)
        if config_error is None:
            raise
        print(f"streamwise: {config_error}", file=sys.stderr)
        sys.exit(2)
