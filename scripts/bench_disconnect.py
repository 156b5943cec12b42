"""Prints how long a model's ``finally`` takes to run after its client goes away.

    python -m scripts.bench_disconnect [TRIES]     # from the repository root

Median and max over TRIES (default 20): an SSE client that disconnects, and a grpcio
client that cancels ModelStreamInfer, after two events; for a trio-native model and for
an asyncio (MLServer-style) model run through the bridge.
"""

from __future__ import annotations

import statistics
import sys

import trio

from streamwise import load_settings, serve
from tests.support import TEST_MODELS
from tests.support.disconnects import disconnect_after_two_events, grpc_cancel_after_two


async def main(tries: int) -> None:
    settings = load_settings(
        TEST_MODELS,
        overrides={"http_port": 0, "grpc_port": 0, "metrics_port": 0, "log_level": "WARNING"},
        environ={},
    )
    async with trio.open_nursery() as nursery:
        info = await nursery.start(serve, settings)
        for transport, measure in (
            ("SSE", disconnect_after_two_events),
            ("gRPC", grpc_cancel_after_two),
        ):
            for model in ("slow-stream", "slow-stream-aio"):
                delays = [(await measure(info, model))[0] for _ in range(tries)]
                print(
                    f"{transport:4s} {model:16s} client gone -> model finally: "
                    f"median {statistics.median(delays) * 1e3:.2f} ms, "
                    f"max {max(delays) * 1e3:.2f} ms over {tries} tries"
                )
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 20)
