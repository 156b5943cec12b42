"""Soak the server with hostile input: ``python -m scripts.soak_fuzz [--cases N] [--seed S]``.

The targets, strategies and property of tests/test_fuzz_slice.py (tests/support/hostile/),
at 10,000+ cases by default, against an in-process server of the demo models (both
transports in one trio run, the cases sent from a worker thread). Prints the cases run per
target, the answers by status, every answer that breaks the property with the input that
caused it, the process's RSS (VmRSS: the server and this driver) at the start, every 1,000
cases and at the end, and the elapsed time. A server that dies is reported with the cases
just before, and started again so the soak goes on. Exits 1 when anything broke the
property.

Run from the repository root (it uses tests/support).
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import trio
from hypothesis import Phase, given, seed, settings

from streamwise import ServerInfo, load_settings, serve
from tests.support import hostile

DEFAULT_CASES = 10_000
REPORT_EVERY = 1_000
BATCH = 250
SHOWN_PER_KIND = 3


@dataclass
class Server:
    """The server under soak; started again (new ports) if it dies."""

    nursery: trio.Nursery
    info: ServerInfo | None = None
    deaths: list[BaseException] = field(default_factory=list)

    async def start(self) -> None:
        self.info = await self.nursery.start(self._run)

    async def _run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        overrides = {"http_port": 0, "grpc_port": 0, **hostile.SERVER_OVERRIDES}
        settings = load_settings(hostile.DEMO, overrides=overrides, environ={})
        try:
            await serve(settings, task_status=task_status)
        except Exception as exc:  # the server died: recorded, the soak goes on
            self.deaths.append(exc)


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for e in exc.exceptions for leaf in _leaves(e)]
    return [exc]


@dataclass
class Soak:
    server: Server
    cases: int = 0
    started: float = field(default_factory=time.monotonic)
    answers: dict[str, collections.Counter[str]] = field(
        default_factory=lambda: collections.defaultdict(collections.Counter)
    )
    problems: dict[tuple[str, str], list[str]] = field(
        default_factory=lambda: collections.defaultdict(list)
    )
    recent: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=3))
    rss: list[tuple[int, int]] = field(default_factory=list)
    clients: hostile.Clients | None = None

    def connect(self) -> None:
        if self.clients is not None:
            hostile.close_clients(self.clients)
        info = self.server.info
        assert info is not None and info.grpc_port is not None
        self.clients = hostile.open_clients(info.http_port, info.grpc_port)

    def note_rss(self) -> None:
        kib = hostile.rss_kib()
        self.rss.append((self.cases, kib))
        elapsed = time.monotonic() - self.started
        print(f"  {self.cases:>6} cases  RSS {kib / 1024:7.1f} MiB  {elapsed:7.1f} s", flush=True)

    def record(self, target: str, case: Any, outcome: hostile.Outcome) -> None:
        self.cases += 1
        self.answers[target][outcome.answer] += 1
        shown = f"{target}: {hostile.squeeze(repr(case))[:700]}"
        if outcome.problem is not None:
            kind = re.sub(r"\d+", "N", outcome.problem.split(":")[0][:100])
            self.problems[(target, kind)].append(f"{outcome.problem[:400]}\n      input: {shown}")
        self.recent.append(shown)
        if self.cases % REPORT_EVERY == 0:
            self.note_rss()

    def check_server(self, target: str, outcome: hostile.Outcome) -> None:
        """After a case: if the server died, record it with the cases before, restart."""
        if not self.server.deaths and "refused" in f"{outcome.problem} {outcome.answer}":
            # the listener is gone: serve() is on its way out (its gRPC side closes, with
            # a timeout); wait for it rather than send the next cases to nobody
            deadline = time.monotonic() + 30
            while not self.server.deaths and time.monotonic() < deadline:
                time.sleep(0.05)
        if not self.server.deaths:
            return
        exc = self.server.deaths.pop()
        leaves = ", ".join(sorted({f"{type(e).__name__}: {e}"[:160] for e in _leaves(exc)}))
        before = "\n      ".join(self.recent)
        self.problems[(target, "the server died")].append(
            f"serve() raised {leaves}\n    after the cases:\n      {before}"
        )
        print(f"  the server died after case {self.cases}: {leaves}; starting it again")
        trio.from_thread.run(self.server.start)
        self.connect()


def _property(soak: Soak, target: hostile.Target, examples: int) -> Any:
    """``target``'s cases, each recorded, none stopping the run."""

    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=hostile.SUPPRESS,
    )
    @given(case=target.strategy)
    def run(case: Any) -> None:
        assert soak.clients is not None
        outcome = hostile.run_case(target, soak.clients, case)
        soak.record(target.name, case, outcome)
        soak.check_server(target.name, outcome)

    return run


def drive(soak: Soak, total: int, seed_value: int | None) -> None:
    """Rounds of ``BATCH`` cases per target, the targets in turn: a hypothesis run keeps
    what it generated until it ends, so short runs keep the driver's memory out of the
    RSS figures, which then follow the server."""
    soak.connect()
    targets = hostile.TARGETS
    per_target = -(-total // len(targets))
    soak.note_rss()
    for round_ in range(-(-per_target // BATCH)):
        for target in targets:
            examples = min(BATCH, per_target - round_ * BATCH)
            run = _property(soak, target, examples)
            if seed_value is not None:
                run = seed(seed_value + round_)(run)
            run()
    assert soak.clients is not None
    for problem in hostile.liveness_problems(soak.clients):
        soak.problems[("liveness", problem)].append(problem)
    hostile.close_clients(soak.clients)


def report(soak: Soak) -> bool:
    elapsed = time.monotonic() - soak.started
    print(f"\n{soak.cases} cases in {elapsed:.1f} s ({soak.cases / elapsed:.0f} cases/s)")
    print("\ncases and answers per target:")
    for target, answers in soak.answers.items():
        counts = ", ".join(f"{k} {v}" for k, v in answers.most_common())
        print(f"  {target:<13} {sum(answers.values()):>6}   {counts}")
    total = collections.Counter[str]()
    for answers in soak.answers.values():
        total.update(answers)
    print(
        "  all           "
        + f"{soak.cases:>6}   "
        + ", ".join(f"{k} {v}" for k, v in total.most_common())
    )
    (_, first), (_, last) = soak.rss[0], soak.rss[-1]
    peak = max(kib for _, kib in soak.rss)
    print(
        f"\nRSS: {first / 1024:.1f} MiB at the start, {last / 1024:.1f} MiB at the end, "
        f"peak {peak / 1024:.1f} MiB (the server and this driver, one process)"
    )
    if not soak.problems:
        print("\nno answer broke the property; the server stayed live")
        return True
    count = sum(len(v) for v in soak.problems.values())
    print(f"\n{count} answers broke the property, in {len(soak.problems)} kinds:")
    for (target, kind), items in soak.problems.items():
        print(f"\n  [{target}] {kind}  x{len(items)}")
        for item in items[:SHOWN_PER_KIND]:
            print(f"    - {item}")
    return False


async def main(total: int, seed_value: int | None) -> bool:
    async with trio.open_nursery() as nursery:
        soak = Soak(Server(nursery))
        await soak.server.start()
        print(f"soak: {total} cases over {len(hostile.TARGETS)} targets, demo models")
        await trio.to_thread.run_sync(drive, soak, total, seed_value)
        soak.note_rss()
        nursery.cancel_scope.cancel()
    return report(soak)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=DEFAULT_CASES)
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed")
    args = parser.parse_args()
    sys.exit(0 if trio.run(main, args.cases, args.seed) else 1)
