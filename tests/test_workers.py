"""``parallel_workers: 2``: two worker processes behind one supervisor, over real sockets,
started as users start it (``python -m src serve DIR --parallel-workers 2``).

Which worker served a request is told by a model written here, ``whoami``: it answers
(or streams) its process id. The workers are the supervisor's child processes."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import trio
from httpx_sse import aconnect_sse, connect_sse

from tests.support import ROOT, free_port
from tests.support.grpc_stubs import load_stubs

CONFORMANCE_MODELS = ROOT / "conformance" / "models" / "streamwise"

WHOAMI = '''
import os

import anyio
import numpy as np

from streamwise import MLModel
from streamwise.codecs import NumpyCodec
from streamwise.types import InferenceResponse


class WhoAmI(MLModel):
    """Its process id: once (predict), or ``n`` times, ``delay_s`` apart (a stream)."""

    async_backend = "trio"

    def answer(self):
        return InferenceResponse(
            model_name=self.name, outputs=[NumpyCodec.encode_output("pid", np.array([os.getpid()]))]
        )

    async def predict(self, payload):
        return self.answer()

    async def predict_stream(self, payloads):
        async for payload in payloads:
            n, delay_s = (float(NumpyCodec.decode_input(i).reshape(-1)[0]) for i in payload.inputs)
            for _ in range(int(n)):
                yield self.answer()
                await anyio.sleep(delay_s)
'''


def whoami_repository(root: pathlib.Path) -> pathlib.Path:
    folder = root / "repo" / "whoami"
    folder.mkdir(parents=True)
    (folder / "whoami.py").write_text(WHOAMI)
    (folder / "model-settings.json").write_text(
        json.dumps({"name": "whoami", "implementation": "whoami.WhoAmI"})
    )
    return root / "repo"


def stream_request(n: int, delay_s: float) -> dict[str, object]:
    return {
        "inputs": [
            {"name": "n", "datatype": "INT64", "shape": [1], "data": [n]},
            {"name": "delay_s", "datatype": "FP64", "shape": [1], "data": [delay_s]},
        ]
    }


class Served:
    def __init__(
        self, process: subprocess.Popen[str], http_port: int, grpc_port: int, log: list[str]
    ) -> None:
        self.process = process
        self.log = log
        self.http = f"http://127.0.0.1:{http_port}"
        self.grpc = f"127.0.0.1:{grpc_port}"

    def workers(self) -> set[int]:
        """The supervisor's child processes now."""
        children = set()
        for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:  # gone meanwhile
                continue
            if int(fields[1]) == self.process.pid:  # the parent's pid
                children.add(int(stat.parent.name))
        return children

    def pid_on_a_new_connection(self) -> int:
        with httpx.Client(base_url=self.http, timeout=10) as client:
            response = client.post("/v2/models/whoami/infer", json={"inputs": []})
            assert response.status_code == 200, response.text
            return int(response.json()["outputs"][0]["data"][0])

    def pids_seen(self, connections: int = 200) -> set[int]:
        """The workers that answered, over new connections until every worker has (or
        ``connections`` of them: which worker takes a connection is up to the workers)."""
        seen: set[int] = set()
        workers = self.workers()
        for _ in range(connections):
            seen.add(self.pid_on_a_new_connection())
            if seen >= workers:
                break
        return seen


@contextmanager
def served(repository: pathlib.Path, *flags: str, **environ: str) -> Iterator[Served]:
    """``python -m src serve REPOSITORY --parallel-workers 2`` on free ports, every
    worker ready; SIGTERM at the end, and it must exit 0 (unless the test stopped it)."""
    http_port, grpc_port = free_port(), free_port()
    argv = [sys.executable, "-m", "src", "serve", str(repository), "--parallel-workers", "2"]
    argv += ["--http-port", str(http_port), "--grpc-port", str(grpc_port), *flags]
    process = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=dict(os.environ, **environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    log: list[str] = []
    assert process.stderr is not None
    reader = threading.Thread(target=lambda: log.extend(process.stderr), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while not any("serving with 2 worker processes" in line for line in log):
            assert process.poll() is None, "".join(log)
            assert time.monotonic() < deadline, "".join(log)
            time.sleep(0.05)
        yield Served(process, http_port, grpc_port, log)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, "".join(log)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join(timeout=5)
        process.stderr.close()
        print("".join(log))  # shown by pytest when the test fails


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with served(whoami_repository(tmp_path_factory.mktemp("workers"))) as s:
        yield s


def test_both_workers_take_connections_and_are_the_supervisors_children(server: Served) -> None:
    assert len(server.workers()) == 2
    assert server.pids_seen() == server.workers()
    assert httpx.get(f"{server.http}/v2/health/ready").status_code == 200


def test_streams_on_both_transports_come_from_both_workers(server: Served) -> None:
    pids_over_sse: set[int] = set()
    for _ in range(200):  # until both have answered
        with httpx.Client(base_url=server.http, timeout=10) as client:
            with connect_sse(
                client, "POST", "/v2/models/whoami/generate_stream", json=stream_request(3, 0)
            ) as source:
                pids = [json.loads(e.data)["outputs"][0]["data"][0] for e in source.iter_sse()]
        assert len(pids) == 3 and len(set(pids)) == 1, pids  # one stream, one worker
        pids_over_sse.add(pids[0])
        if pids_over_sse == server.workers():
            break
    assert pids_over_sse == server.workers()

    import grpc

    pb, rpc = load_stubs()
    request = pb.ModelInferRequest(
        model_name="whoami",
        inputs=[
            pb.ModelInferRequest.InferInputTensor(
                name="n",
                datatype="INT64",
                shape=[1],
                contents=pb.InferTensorContents(int64_contents=[3]),
            ),
            pb.ModelInferRequest.InferInputTensor(
                name="delay_s",
                datatype="FP64",
                shape=[1],
                contents=pb.InferTensorContents(fp64_contents=[0]),
            ),
        ],
    )
    pids_over_grpc: set[int] = set()
    for _ in range(200):
        with grpc.insecure_channel(server.grpc) as channel:
            stub = rpc.GRPCInferenceServiceStub(channel)
            replies = list(stub.ModelStreamInfer(iter([request])))
        pids = {r.outputs[0].contents.int64_contents[0] for r in replies}
        assert len(replies) == 3 and len(pids) == 1
        pids_over_grpc |= pids
        if pids_over_grpc == server.workers():
            break
    assert pids_over_grpc == server.workers()


def test_a_repository_unload_and_load_reach_every_worker(server: Served) -> None:
    with httpx.Client(base_url=server.http) as client:
        assert client.post("/v2/repository/models/whoami/unload").status_code == 200
    for _ in range(40):  # new connections: both workers answer, neither serves it
        with httpx.Client(base_url=server.http) as client:
            response = client.post("/v2/models/whoami/infer", json={"inputs": []})
            assert response.status_code in (400, 404, 503) and "error" in response.json()
            index = client.post("/v2/repository/index", json={}).json()
            assert {i["name"]: i["state"] for i in index}["whoami"] == "UNAVAILABLE"
    with httpx.Client(base_url=server.http) as client:
        assert client.post("/v2/repository/models/whoami/load").status_code == 200
    assert server.pids_seen() == server.workers()


def test_a_load_that_fails_is_told_to_the_client(server: Served) -> None:
    with httpx.Client(base_url=server.http) as client:
        response = client.post("/v2/repository/models/nonexistent/load")
    assert response.status_code == 404 and "nonexistent" in response.json()["error"]


def test_the_conformance_suite_passes_against_two_workers(tmp_path: pathlib.Path) -> None:
    """Everything the suite checks (both transports, streaming, errors, disconnects, the
    repository API with --destructive) holds with two workers behind the ports."""
    with served(CONFORMANCE_MODELS) as s:
        report = tmp_path / "report.json"
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "conformance", "-q", "-p", "no:cacheprovider"]
            + ["--target", s.http, "--grpc-target", s.grpc, "--destructive"]
            + ["--conformance-report", str(report)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stdout[-3000:]
    total = json.loads(report.read_text())["summary"]["total"]
    assert total["failed"] == total["deviation"] == 0 and total["passed"] > 150, total


async def stream_pids(http: str, n: int, delay_s: float, seen: list[int]) -> str:
    """One SSE stream of ``whoami`` on a connection of its own; the pids it got go to
    ``seen``. How it ended: "complete" (its body ended cleanly after ``n`` events),
    "error" (an ``event: error``), "cut" (the connection, mid-body)."""
    try:
        async with httpx.AsyncClient(base_url=http, timeout=60) as client:
            async with aconnect_sse(
                client, "POST", "/v2/models/whoami/generate_stream", json=stream_request(n, delay_s)
            ) as source:
                async for event in source.aiter_sse():
                    if event.event == "error":
                        return "error"
                    seen.append(int(json.loads(event.data)["outputs"][0]["data"][0]))
        return "complete"
    except httpx.TransportError:
        return "cut"


async def test_a_worker_killed_mid_stream_takes_only_its_own_streams(
    tmp_path: pathlib.Path,
) -> None:
    """SIGKILL to one worker while 100 streams run: its streams end cut or in error,
    never cleanly; the other worker's finish whole; another worker takes its place."""
    with served(whoami_repository(tmp_path)) as s:
        before = s.workers()
        seen: list[list[int]] = [[] for _ in range(100)]
        ended: dict[int, str] = {}

        async def one(i: int) -> None:
            ended[i] = await stream_pids(s.http, 40, 0.1, seen[i])

        async with trio.open_nursery() as nursery:
            for i in range(100):
                nursery.start_soon(one, i)
            with trio.fail_after(30):
                while not all(seen):  # noqa: ASYNC110 - every stream has its first event
                    await trio.sleep(0.01)
            victim = seen[0][0]
            os.kill(victim, signal.SIGKILL)

        mine = [i for i in range(100) if seen[i][0] == victim]
        others = [i for i in range(100) if seen[i][0] != victim]
        assert mine and others, "both workers had streams"
        assert all(ended[i] in ("cut", "error") and len(seen[i]) < 40 for i in mine), [
            (ended[i], len(seen[i])) for i in mine
        ]
        assert all(ended[i] == "complete" and seen[i] == [seen[i][0]] * 40 for i in others)

        with trio.fail_after(30):  # the replacement (docs/running.md has how fast)
            while len(s.workers() - before) != 1 or victim in s.workers():  # noqa: ASYNC110
                await trio.sleep(0.05)
        (replacement,) = s.workers() - before
        with trio.fail_after(30):
            while replacement not in await trio.to_thread.run_sync(s.pids_seen, 10):
                pass


async def test_sigterm_drains_every_worker_and_the_supervisor_exits_0(
    tmp_path: pathlib.Path,
) -> None:
    with served(whoami_repository(tmp_path)) as s:
        seen: list[list[int]] = [[], []]
        ended: list[str] = []

        async def one(i: int) -> None:
            ended.append(await stream_pids(s.http, 15, 0.1, seen[i]))

        async with trio.open_nursery() as nursery:
            for i in range(2):
                nursery.start_soon(one, i)
            with trio.fail_after(30):
                while not all(seen):  # noqa: ASYNC110
                    await trio.sleep(0.01)
            s.process.send_signal(signal.SIGTERM)
        assert ended == ["complete", "complete"] and [len(p) for p in seen] == [15, 15]
        assert await trio.to_thread.run_sync(s.process.wait) == 0
        with pytest.raises(OSError):  # the ports are closed
            await trio.open_tcp_stream("127.0.0.1", int(s.http.rsplit(":", 1)[1]))


async def test_a_second_sigterm_stops_the_workers_at_once_and_streams_say_so(
    tmp_path: pathlib.Path,
) -> None:
    with served(whoami_repository(tmp_path)) as s:
        seen: list[int] = []
        async with trio.open_nursery() as nursery:

            async def one() -> None:
                assert await stream_pids(s.http, 1000, 0.1, seen) in ("cut", "error")

            nursery.start_soon(one)
            with trio.fail_after(30):
                while not seen:  # noqa: ASYNC110
                    await trio.sleep(0.01)
            s.process.send_signal(signal.SIGTERM)
            await trio.sleep(0.5)  # the first one has reached the workers: they drain
            s.process.send_signal(signal.SIGTERM)
        assert len(seen) < 1000
        assert await trio.to_thread.run_sync(s.process.wait) == 0
        stopped = [line for line in s.log if "SIGTERM again: stopping now" in line]
        # the supervisor, and the worker with the stream (the other had drained and exited)
        assert len(stopped) == 2 and "[worker" in stopped[1], s.log


def test_auth_holds_in_every_worker(tmp_path: pathlib.Path) -> None:
    with served(whoami_repository(tmp_path), STREAMWISE_AUTH_TOKEN="s3cret") as s:
        for _ in range(40):  # new connections, both workers
            with httpx.Client(base_url=s.http) as client:
                refused = client.post("/v2/models/whoami/infer", json={"inputs": []})
                assert refused.status_code == 401 and "error" in refused.json()
        token = {"authorization": "Bearer s3cret"}
        pids = set()
        for _ in range(200):
            with httpx.Client(base_url=s.http, headers=token) as client:
                answer = client.post("/v2/models/whoami/infer", json={"inputs": []})
                pids.add(answer.json()["outputs"][0]["data"][0])
            if pids == s.workers():
                break
        assert pids == s.workers()


def run_command(repository: pathlib.Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "src", "serve", str(repository), "--parallel-workers", "2"]
    argv += ["--http-port", str(free_port()), "--grpc-port", str(free_port())]
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_a_bad_settings_file_stops_the_command_with_one_line(tmp_path: pathlib.Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model-settings.json").write_text('{"name": "m", "colour": "red"}')
    done = run_command(tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("streamwise: ")
    assert "colour" in done.stderr and "Traceback" not in done.stderr


def test_workers_that_die_during_start_up_stop_the_command(tmp_path: pathlib.Path) -> None:
    """Not restarted for ever: a worker that never served would die the same way again."""
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model-settings.json").write_text('{"name": "m", "implementation": "m.M"}')
    (tmp_path / "m" / "m.py").write_text("import os\nos._exit(3)\n")
    done = run_command(tmp_path)
    assert done.returncode == 2, done.stderr
    assert "exited with status 3 during start-up" in done.stderr.strip().splitlines()[-1]
