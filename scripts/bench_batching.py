"""What adaptive batching buys (and costs): one server, the same models batched and not.

    python -m scripts.bench_batching [--concurrency 32] [--duration 6] [--size 16]
        [--time 0.05] [--running 1]

Writes a model repository to a temporary folder with three models, each three times (see
:data:`KINDS`): not batched; batched (``max_batch_size`` ``--size``, ``max_batch_time``
``--time``); and batched with ``max_concurrent_batches`` ``--running``. ``matmul-N`` pays
a fixed cost per ``predict`` call (an NxN float32 matrix product, as a GPU call pays its
launch and transfers), then multiplies its rows by a 256x256 matrix (vectorised: the rows
of a batch in one product). With N = 1024 the call costs tens of milliseconds: the model
is the bottleneck, what batching is for; with N = 256 it costs under a millisecond, less
than the server's own work per request. ``identity`` answers its input: batching only
adds the merge, the split and the wait.
Starts ``python -m src serve`` on it (free ports; numpy on one thread,
``OPENBLAS_NUM_THREADS=1``: the machine is shared), then drives each model with
``streamwise bench --mode infer`` (the project's own cheap client): ``--concurrency``
callers in a closed loop, one row of 256 FP32 values a request, for ``--duration`` seconds
each. Prints a table: requests/s, latency, the mean batch (from ``streamwise_batch_size``)
and, per model, the ratio batched / not batched. docs/performance.md, "Adaptive batching".
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import textwrap
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from scripts._server import start
from tests.support import ROOT

MODELS = '''
"""The bench's models (scripts/bench_batching.py)."""

import numpy as np

from streamwise import MLModel
from streamwise.codecs import NumpyCodec
from streamwise.types import InferenceResponse

rng = np.random.default_rng(0)
W = rng.standard_normal((256, 256)).astype(np.float32)


class MatMul(MLModel):
    """A fixed cost per call (a square product of parameters.extra["fixed"]), then its
    rows times W, in one vectorised product."""

    async def load(self):
        size = self.settings.parameters.extra["fixed"]
        self.fixed = rng.standard_normal((size, size)).astype(np.float32)
        return True

    async def predict(self, payload):
        x = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32)
        fixed = self.fixed @ self.fixed  # the per-call cost, whatever the batch
        y = (x @ W)[:, :16] + fixed[0, :16]
        return InferenceResponse(
            model_name=self.name, outputs=[NumpyCodec.encode_output("y", y)]
        )


class Identity(MLModel):
    async def predict(self, payload):
        return InferenceResponse(
            model_name=self.name,
            outputs=[
                {"name": i.name, "shape": i.shape, "datatype": i.datatype, "data": i.data}
                for i in payload.inputs
            ],
        )
'''

MODEL_NAMES = ("matmul-256", "matmul-1024", "identity")

ROW = 256


KINDS = ("plain", "batched", "held")
"""Each model three times: not batched; batched, its batches running at once however
many are due (MLServer's way); batched with ``max_concurrent_batches`` (``--running``):
a batch due while that many run waits for one to end, taking more requests."""


def repository(folder: pathlib.Path, size: int, wait: float, running: int) -> None:
    code = textwrap.dedent(MODELS)
    for model in MODEL_NAMES:
        for kind in KINDS:
            name = f"{model}-{kind}"
            (folder / name).mkdir()
            settings: dict[str, Any] = {"name": name, "implementation": "bench_models.Identity"}
            if model.startswith("matmul-"):
                settings["implementation"] = "bench_models.MatMul"
                settings["parameters"] = {"extra": {"fixed": int(model.split("-")[1])}}
            if kind != "plain":
                settings |= {"max_batch_size": size, "max_batch_time": wait}
            if kind == "held":
                settings["max_concurrent_batches"] = running
            (folder / name / "model-settings.json").write_text(json.dumps(settings))
            (folder / name / "bench_models.py").write_text(code)  # looked up in its folder


def batches(metrics_port: int, model: str) -> tuple[float, float]:
    """``streamwise_batch_size``'s sum and count for ``model`` so far."""
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
    found = {"sum": 0.0, "count": 0.0}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.labels.get("model") == model and s.name.startswith("streamwise_batch_size_"):
                kind = s.name.removeprefix("streamwise_batch_size_")
                if kind in found:
                    found[kind] += s.value
    return found["sum"], found["count"]


def drive(
    url: str, model: str, request: pathlib.Path, concurrency: int, duration: float
) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        argv = [sys.executable, "-m", "src", "bench", url, "--model", model, "--mode", "infer"]
        argv += ["--request-file", str(request), "--concurrency", str(concurrency)]
        argv += ["--duration", str(duration), "--quiet", "--json", out.name]
        subprocess.run(argv, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        [level] = json.load(out)["levels"]
    if level["error_count"]:
        raise SystemExit(f"{model}: errors {level['errors']}")
    return level  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, default=32, help="callers in flight")
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per model")
    parser.add_argument("--size", type=int, default=16, help="max_batch_size")
    parser.add_argument("--time", type=float, default=0.05, help="max_batch_time (s)")
    parser.add_argument("--running", type=int, default=1, help="max_concurrent_batches (held)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp)
        repository(folder, args.size, args.time, args.running)
        request = folder / "request.json"
        row = [[round(i / ROW, 4) for i in range(ROW)]]
        body = {"inputs": [{"name": "x", "shape": [1, ROW], "datatype": "FP32", "data": row}]}
        request.write_text(json.dumps(body))
        served = start(
            str(folder), {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
                          "STREAMWISE_ACCESS_LOG": "false"},
        )  # fmt: skip
        process, url, metrics_port = served.process, served.url, served.metrics_port
        try:
            print(
                f"{args.concurrency} concurrent callers, one row of {ROW} FP32 a request, "
                f"{args.duration:g} s each; batched: max_batch_size {args.size}, "
                f"max_batch_time {args.time:g} s; held: max_concurrent_batches {args.running}"
            )
            print(f"{'model':<18} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'mean batch':>11}")
            rates: dict[str, float] = {}
            for model in MODEL_NAMES:
                for kind in KINDS:
                    name = f"{model}-{kind}"
                    drive(url, name, request, args.concurrency, 1.0)  # warm-up
                    total0, count0 = batches(metrics_port, name)
                    level = drive(url, name, request, args.concurrency, args.duration)
                    total1, count1 = batches(metrics_port, name)
                    mean = (total1 - total0) / (count1 - count0) if count1 > count0 else 1.0
                    rates[name] = level["requests_per_s"]
                    latency = level["latency_s"]
                    print(
                        f"{name:<18} {level['requests_per_s']:>8,.0f} "
                        f"{latency['p50'] * 1000:>8.1f} {latency['p99'] * 1000:>8.1f} "
                        f"{mean:>11.1f}",
                        flush=True,
                    )
            for model in MODEL_NAMES:
                plain = rates[f"{model}-plain"]
                batched, held = rates[f"{model}-batched"] / plain, rates[f"{model}-held"] / plain
                print(
                    f"{model}: requests/s over not batched: batched {batched:.2f}x, "
                    f"held {held:.2f}x"
                )
        finally:
            process.terminate()
            process.wait(10)


if __name__ == "__main__":
    main()
