"""Streams `n` tokens (default 100) `delay_s` apart (default 0.1 s) and keeps count of
its streams: how many started, ended (their `finally` ran), completed, or were stopped
early. Unary inference answers the counts, so that a client can see whether dropping a
stream stopped the model.

The counts live in a file shared by every process serving this folder for one server
(worker processes have the same parent): a client's stream and its next call for the
counts may reach different workers."""

import asyncio
import fcntl
import hashlib
import json
import os
import pathlib
import tempfile
from contextlib import contextmanager
from typing import AsyncIterator, Iterator

from mlserver import MLModel
from mlserver.codecs import StringCodec
from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput


ZERO = {"started": 0, "ended": 0, "completed": 0, "stopped": 0}


def _counts_file() -> pathlib.Path:
    here = str(pathlib.Path(__file__).resolve().parent)
    key = hashlib.sha256(f"{here}:{os.getppid()}".encode()).hexdigest()[:16]
    return pathlib.Path(tempfile.gettempdir()) / f"v2-conformance-slow-stream-{key}.json"


@contextmanager
def _locked_counts() -> Iterator[dict[str, int]]:
    """The counts, to read or change in the block, with the file locked meanwhile."""
    with open(_counts_file(), "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        text = f.read()
        counts = json.loads(text) if text else dict(ZERO)
        yield counts
        f.seek(0)
        f.truncate()
        f.write(json.dumps(counts))


class SlowStream(MLModel):
    async def load(self) -> bool:
        with _locked_counts() as counts:
            counts.update(ZERO)
        return True

    def count(self, *names: str) -> None:
        with _locked_counts() as counts:
            for name in names:
                counts[name] += 1

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        with _locked_counts() as counts:
            pass
        return InferenceResponse(
            model_name=self.name,
            outputs=[
                ResponseOutput(name=name, datatype="INT64", shape=[1], data=[count])
                for name, count in counts.items()
            ],
        )

    async def predict_stream(
        self, payloads: AsyncIterator[InferenceRequest]
    ) -> AsyncIterator[InferenceResponse]:
        payload = [_ async for _ in payloads][0]
        inputs = {i.name: i for i in payload.inputs}
        n = int(inputs["n"].data.root[0]) if "n" in inputs else 100
        delay_s = float(inputs["delay_s"].data.root[0]) if "delay_s" in inputs else 0.1
        self.count("started")
        completed = False
        try:
            for i in range(n):
                await asyncio.sleep(delay_s)
                yield InferenceResponse(
                    model_name=self.name,
                    outputs=[StringCodec.encode_output("token", [f"token-{i}"], use_bytes=True)],
                )
            completed = True
        finally:
            self.count("ended", "completed" if completed else "stopped")
