"""Deviations and the per-area summary table (a pytest plugin, loaded by conftest.py).

A check either passes, fails, is skipped, or passes with a *deviation*: the server did
something the protocol allows but that differs from the reference behaviour (404 vs 400
for an unknown model, say). Checks record deviations with the ``deviation`` fixture::

    def test_x(deviation):
        if response.status_code == 400:
            deviation("unknown model answered 400, not 404")

The area of a check is its module's name without ``test_`` (``test_sse.py`` -> ``sse``).
At the end of the run a table per area is printed, and ``--conformance-report FILE``
writes the results as JSON (or as a Markdown table when FILE ends with ``.md``).
"""

from __future__ import annotations

import json
import pathlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest

DEVIATIONS = pytest.StashKey[list[str]]()
OUTCOMES = ("passed", "failed", "deviation", "skipped")


@dataclass
class Result:
    nodeid: str
    area: str
    outcome: str = "passed"
    messages: list[str] = field(default_factory=list)


class ConformanceReport:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.results: dict[str, Result] = {}
        self.target: dict[str, Any] = {}

    # -- recording --
    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
        report = yield
        deviations = item.stash.get(DEVIATIONS, []) if _is_conformance(item) else []
        if report.when == "call" and report.passed and deviations:
            report.user_properties.append(("deviations", list(deviations)))
        return report

    def pytest_report_teststatus(self, report: pytest.TestReport) -> Any:
        if report.when == "call" and report.passed and _deviations(report):
            return "deviation", "D", ("DEVIATION", {"yellow": True})
        return None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if not report.nodeid.startswith(_prefix(self.config)):
            return
        result = self.results.setdefault(report.nodeid, Result(report.nodeid, _area(report)))
        if report.failed:
            result.outcome = "failed"
            result.messages.append(_failure_message(report))
        elif report.skipped and result.outcome != "failed":
            result.outcome = "skipped"
            result.messages.append(_skip_reason(report))
        elif report.when == "call" and report.passed and _deviations(report):
            result.outcome = "deviation"
            result.messages.extend(_deviations(report))

    # -- output --
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.results:
            return
        tr = terminalreporter
        tr.section("V2 conformance summary")
        for key, value in self.target.items():
            tr.write_line(f"{key}: {value}")
        for line in _table(self.table()):
            tr.write_line(line)
        noted = [r for r in self.results.values() if r.outcome in ("deviation", "failed")]
        if noted:
            tr.write_line("")
        for r in noted:
            tr.write_line(f"{r.outcome.upper():9} {r.nodeid}: {'; '.join(r.messages)[:300]}")

    def pytest_sessionfinish(self) -> None:
        path = self.config.getoption("conformance_report")
        if not path or not self.results:
            return
        out = pathlib.Path(path)
        if out.suffix == ".md":
            out.write_text(self.markdown())
        else:
            doc = {
                "target": self.target,
                "summary": self.table(),
                "results": [r.__dict__ for r in self.results.values()],
            }
            out.write_text(json.dumps(doc, indent=2) + "\n")

    def table(self) -> dict[str, dict[str, int]]:
        rows: dict[str, Counter[str]] = {}
        for r in self.results.values():
            rows.setdefault(r.area, Counter())[r.outcome] += 1
        table = {area: {o: c[o] for o in OUTCOMES} for area, c in sorted(rows.items())}
        table["total"] = {o: sum(row[o] for row in table.values()) for o in OUTCOMES}
        return table

    def markdown(self) -> str:
        lines = ["| area | " + " | ".join(OUTCOMES) + " |", "|---" * (len(OUTCOMES) + 1) + "|"]
        for area, row in self.table().items():
            lines.append(f"| {area} | " + " | ".join(str(row[o]) for o in OUTCOMES) + " |")
        lines += ["", "| check | outcome | why |", "|---|---|---|"]
        for r in self.results.values():
            if r.outcome != "passed":
                why = "; ".join(r.messages).replace("|", "\\|").replace("\n", " ")
                check = r.nodeid.rsplit("/", 1)[-1]
                lines.append(f"| `{check}` | {r.outcome} | {why[:400]} |")
        return "\n".join(lines) + "\n"


def _table(table: dict[str, dict[str, int]]) -> list[str]:
    width = max(len(a) for a in table)
    head = f"{'area':{width}}  " + "  ".join(f"{o:>9}" for o in OUTCOMES)
    lines = [head, "-" * len(head)]
    for area, row in table.items():
        if area == "total":
            lines.append("-" * len(head))
        lines.append(f"{area:{width}}  " + "  ".join(f"{row[o]:>9}" for o in OUTCOMES))
    return lines


def _prefix(config: pytest.Config) -> str:
    here = pathlib.Path(__file__).parent
    try:
        return str(here.relative_to(config.rootpath)).replace("\\", "/") + "/"
    except ValueError:
        return ""


def _is_conformance(item: pytest.Item) -> bool:
    return pathlib.Path(__file__).parent in item.path.parents


def _area(report: pytest.TestReport) -> str:
    module = report.nodeid.split("::", 1)[0].rsplit("/", 1)[-1]
    return module.removeprefix("test_").removesuffix(".py")


def _deviations(report: pytest.TestReport) -> list[str]:
    for key, value in report.user_properties:
        if key == "deviations":
            return list(value)
    return []


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple):
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _failure_message(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr)
    return f"[{report.when}] " + " ".join(text.split())
