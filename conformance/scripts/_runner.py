"""What run_mlserver.py and run_kserve.py share: run the conformance suite against another
V2 server, started from its own virtual environment.

A peer server never shares an environment with the suite (MLServer pins protobuf<7, the
suite's grpcio-tools brings protobuf 7), so each runner

1. creates a virtual environment (``--venv``) and pip-installs the pinned server in it,
   unless that exact version is there already;
2. starts the server from it on free ports, its output going to a log file (``--log``);
3. waits until ``GET /v2/health/ready`` and ``GET /v2/models/{m}/ready`` answer 200 for
   the models it serves (``--timeout``), or fails with the log's tail;
4. runs ``python -m pytest conformance --target ... --grpc-target ...`` with the
   interpreter running the runner (``sys.executable``: the suite's environment), plus
   whatever follows ``--`` on the command line (test paths there, such as
   ``conformance/test_sse.py``, replace ``conformance``);
5. always stops the server (SIGTERM, then SIGKILL) and exits with pytest's exit code.

With ``--serve-only`` it prints the two targets and serves until Ctrl-C instead.

Standard library only; runs on any python3 >= 3.9.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFORMANCE = ROOT / "conformance"
# the reference models: one folder each, as conformance/conftest.py finds them
_SETTINGS = (CONFORMANCE / "models" / "streamwise").glob("*/model-settings.json")
REFERENCE_MODELS = tuple(sorted(p.parent.name for p in _SETTINGS))

# (argv, extra environment) that start the server, given the venv's bin folder and ports
Command = Callable[[Path, dict[str, int]], tuple[list[str], dict[str, str]]]


@dataclass
class Peer:
    """A server to check: how to install it and how to start it."""

    name: str  # "mlserver"
    distribution: str  # on PyPI
    version: str  # pinned
    command: Command
    models: Sequence[str] = REFERENCE_MODELS  # to wait for
    pytest_args: Sequence[str] = ()  # before the user's own
    drop_env_prefix: str = ""  # environment variables not to inherit ("MLSERVER_")


def main(peer: Peer, doc: str, argv: list[str] | None = None) -> int:
    """The whole run; the return value is the process's exit code."""
    own, passthrough = _split(sys.argv[1:] if argv is None else argv)
    args = _parser(peer, doc).parse_args(own)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)

    try:
        venv = Path(args.venv).resolve()
        bindir = ensure_venv(venv, peer.distribution, peer.version, args.python)
    except subprocess.CalledProcessError as exc:
        print(f"[{peer.name}] could not set up {args.venv}: {exc}", file=sys.stderr)
        return 2
    http_port, grpc_port, metrics_port = free_ports(3)
    ports = {"http": http_port, "grpc": grpc_port, "metrics": metrics_port}
    argv_, extra_env = peer.command(bindir, ports)
    env = {k: v for k, v in os.environ.items() if not _dropped(k, peer.drop_env_prefix)}
    env.update(extra_env)
    log = Path(args.log) if args.log else _temp_log(peer.name)
    http, grpc = f"http://127.0.0.1:{ports['http']}", f"127.0.0.1:{ports['grpc']}"

    print(f"[{peer.name}] starting: {shlex.join(argv_)}  (log: {log})", flush=True)
    server = Server(argv_, env, log)
    try:
        server.start()
        wait_ready(server, http, peer.models, args.timeout)
        print(f"[{peer.name}] ready: --target {http} --grpc-target {grpc}", flush=True)
        if args.serve_only:
            return server.serve_forever()
        return run_pytest(http, grpc, [*peer.pytest_args, *passthrough])
    except KeyboardInterrupt:
        return 130
    except ServerError as exc:
        print(f"[{peer.name}] {exc}", file=sys.stderr)
        return 3
    finally:
        code = server.stop()
        print(f"[{peer.name}] stopped (exit code {code}); its log: {log}", flush=True)


def ensure_venv(venv: Path, distribution: str, version: str, python: str) -> Path:
    """The venv's bin folder, after creating the venv and installing
    ``distribution==version`` in it, if it was not there yet."""
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    venv_python = executable(bindir, "python")
    if not venv_python.exists():
        print(f"creating the virtual environment {venv} ...", flush=True)
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
    probe = f"import importlib.metadata as m; print(m.version({distribution!r}))"
    found = subprocess.run(
        [str(venv_python), "-c", probe], capture_output=True, text=True
    ).stdout.strip()
    if found != version:
        print(f"installing {distribution}=={version} into {venv} ...", flush=True)
        pip = [str(venv_python), "-m", "pip", "install", f"{distribution}=={version}"]
        subprocess.run(pip, check=True)
    return bindir


def executable(bindir: Path, name: str) -> Path:
    """Program `name` of a venv's bin folder."""
    return bindir / (name + ".exe" if os.name == "nt" else name)


def free_ports(n: int) -> list[int]:
    """`n` distinct ports free right now (held together so that they differ)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class ServerError(RuntimeError):
    """The server did not come up."""


class Server:
    """A server process, in its own session (a Ctrl-C reaches us, not it), its output in
    a log file."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.argv, self.env, self.log = argv, env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def serve_forever(self) -> int:
        """Until Ctrl-C (0) or until the server ends by itself (1)."""
        print("serving; Ctrl-C to stop", flush=True)
        try:
            code = self.proc.wait() if self.proc else 0
        except KeyboardInterrupt:
            return 0
        print(f"the server exited by itself ({code}):\n{self.tail()}", file=sys.stderr)
        return 1

    def stop(self, grace_s: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL after `grace_s` (or at a Ctrl-C); the exit code (None if
        never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace_s)
            except (subprocess.TimeoutExpired, KeyboardInterrupt):
                print("the server did not stop on SIGTERM: killing it", file=sys.stderr)
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError as exc:
            return f"(log unreadable: {exc})"
        return "\n".join("    " + line for line in text[-lines:])


# urllib would send 127.0.0.1 through a proxy named in the environment
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def status(url: str) -> int | None:
    """The HTTP status of ``GET url``, or None if nothing answers."""
    try:
        with _OPENER.open(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


def wait_ready(server: Server, http: str, models: Sequence[str], timeout_s: float) -> None:
    """Until the server and `models` are ready; ServerError (with the log's tail) if the
    server exits first or `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    waiting = ["/v2/health/ready", *(f"/v2/models/{m}/ready" for m in models)]
    while waiting:
        code = server.exited()
        if code is not None:
            raise ServerError(f"the server exited ({code}) before it was ready:\n{server.tail()}")
        if time.monotonic() > deadline:
            raise ServerError(
                f"not ready after {timeout_s:g} s; still not 200: {', '.join(waiting)}\n"
                f"the server's log ends with:\n{server.tail()}"
            )
        waiting = [path for path in waiting if status(http + path) != 200]
        if waiting:
            time.sleep(0.25)


def run_pytest(http: str, grpc: str, extra: Sequence[str]) -> int:
    """The suite against the targets, with this interpreter; pytest's exit code.
    It runs all of ``conformance`` unless `extra` names test files or folders in it."""
    chosen = any(_in_conformance(arg) for arg in extra)
    argv = [sys.executable, "-m", "pytest", *([] if chosen else [os.path.relpath(CONFORMANCE)])]
    argv += ["--target", http, "--grpc-target", grpc, *extra]
    print(f"running: {shlex.join(argv)}", flush=True)
    proc = subprocess.Popen(argv)
    try:
        return proc.wait()
    except KeyboardInterrupt:  # pytest got the Ctrl-C too: let it report and end
        try:
            return proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            return 130
    finally:  # a second Ctrl-C, a SIGTERM: pytest must not outlive the server
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _parser(peer: Peer, doc: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="%(prog)s [options] [-- PYTEST_ARGS...]",
    )
    parser.add_argument(
        "--venv",
        default=str(CONFORMANCE / f".venv-{peer.name}"),
        help="virtual environment of the server, created if missing (default: %(default)s)",
    )
    parser.add_argument(
        "--python",
        default=sys.executable,
        help="interpreter that creates the venv (default: this one, %(default)s)",
    )
    parser.add_argument("--log", help="the server's log file (default: a new temporary file)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=180.0,
        help="seconds to wait for the server and its models to be ready (%(default)g)",
    )
    parser.add_argument(
        "--serve-only",
        action="store_true",
        help="start the server, print its targets, serve until Ctrl-C; no pytest",
    )
    return parser


def _split(argv: list[str]) -> tuple[list[str], list[str]]:
    """(the runner's arguments, pytest's: whatever follows the first ``--``)."""
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1 :]
    return argv, []


def _in_conformance(arg: str) -> bool:
    """Is `arg` a path (or node id) of the suite's, like conformance/test_sse.py::test_x?"""
    if arg.startswith("-"):
        return False
    path = Path(arg.split("::", 1)[0]).resolve()
    return path.exists() and (path == CONFORMANCE or CONFORMANCE in path.parents)


def _dropped(key: str, prefix: str) -> bool:
    return bool(prefix) and key.upper().startswith(prefix)


def _temp_log(name: str) -> Path:
    fd, path = tempfile.mkstemp(prefix=f"conformance-{name}-", suffix=".log")
    os.close(fd)
    return Path(path)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through main()'s finally: the server stops
