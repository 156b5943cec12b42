"""``streamwise bench --plot`` and ``--compare``: plots need matplotlib (the ``[bench]``
extra), imported only here and only when asked for; the comparison table does not."""

from __future__ import annotations

import importlib
import json
import pathlib
from typing import Any

__all__ = ["PlotError", "check_matplotlib", "compare", "plot"]


class PlotError(Exception):
    """A plot or comparison that cannot be made: one line, which ``streamwise bench``
    prints as it does its own errors (``bench.BenchError``)."""


MISSING = "--plot needs matplotlib: pip install 'streamwise[bench]' (or matplotlib)"


def check_matplotlib() -> Any:
    """matplotlib.pyplot on the Agg backend (no display), or a one-line PlotError."""
    try:
        matplotlib = importlib.import_module("matplotlib")
    except ImportError:
        raise PlotError(MISSING) from None
    matplotlib.use("Agg")
    return importlib.import_module("matplotlib.pyplot")


def _load(path: str) -> dict[str, Any]:
    try:
        report: dict[str, Any] = json.loads(pathlib.Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise PlotError(f"{path}: {exc}") from None
    if not isinstance(report, dict) or "levels" not in report or "target" not in report:
        raise PlotError(f"{path}: not a file of streamwise bench --json (of a run on a URL)")
    return report


def _x(level: dict[str, Any]) -> float:
    return float(level["rate"] if level["rate"] is not None else level["concurrency"])


def plot(reports: list[tuple[str, dict[str, Any]]], path: str) -> None:
    """Latency (and, for streams, time to first response) distributions of every level,
    and throughput against the concurrency or rate."""
    plt = check_matplotlib()
    streaming = any(report["target"].get("streaming") for _, report in reports)
    kinds = ["ttft_quantiles_s", "latency_quantiles_s"] if streaming else ["latency_quantiles_s"]
    titles = {"ttft_quantiles_s": "time to first response", "latency_quantiles_s": "latency"}
    fig, axes = plt.subplots(1, len(kinds) + 1, figsize=(6 * (len(kinds) + 1), 4.5))
    for ax, kind in zip(axes, kinds, strict=False):
        for name, report in reports:
            for level in report["levels"]:
                values = level.get(kind) or []
                if values:
                    ax.plot([v * 1000 for v in values], range(len(values)))
                    ax.lines[-1].set_label(f"{name}, {level['label']}")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
        ax.set_xlabel(f"{titles[kind]} (ms, log)")
        ax.set_ylabel("percentile")
        ax.set_title(titles[kind])
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    ax = axes[-1]
    open_loop = False
    for name, report in reports:
        levels = report["levels"]
        open_loop = open_loop or any(level["rate"] is not None for level in levels)
        xs = [_x(level) for level in levels]
        ax.plot(xs, [level["responses_per_s"] for level in levels], marker="o")
        ax.lines[-1].set_label(f"{name}: responses/s")
        if streaming:
            ax.plot(xs, [level["requests_per_s"] for level in levels], marker="x", ls="--")
            ax.lines[-1].set_label(f"{name}: requests/s")
    ax.set_xscale("log")
    ax.set_xlabel("rate (requests/s)" if open_loop else "concurrency")
    ax.set_ylabel("per second")
    ax.set_title("throughput")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _cell(level: dict[str, Any], figure: str) -> float | None:
    name, _, p = figure.partition(" ")
    if name in ("ttft", "gap", "lat"):
        key = {"ttft": "ttft_s", "gap": "gap_s", "lat": "latency_s"}[name]
        value = level[key][p]
        return None if value is None else float(value) * 1000
    return float(
        level[{"req/s": "requests_per_s", "resp/s": "responses_per_s"}.get(figure, "error_count")]
    )


def compare(paths: list[str], plot_path: str | None) -> int:
    """The figures of each level the files share, side by side; ratios to the first."""
    if len(paths) < 2:
        raise PlotError("--compare needs two files or more")
    reports = [(pathlib.Path(path).stem, _load(path)) for path in paths]
    streaming = any(report["target"].get("streaming") for _, report in reports)
    figures = ["req/s", "resp/s"]
    figures += ["ttft p50", "ttft p99", "gap p50", "gap p99"] if streaming else []
    figures += ["lat p50", "lat p99", "errors"]
    names = [name for name, _ in reports]
    header = ["level", "figure", *names, *(f"{n}/{names[0]}" for n in names[1:])]
    rows = [header]
    first = reports[0][1]
    for level in first["levels"]:
        others = [
            next((o for o in report["levels"] if o["label"] == level["label"]), None)
            for _, report in reports[1:]
        ]
        for figure in figures:
            values = [_cell(level, figure)]
            values += [None if o is None else _cell(o, figure) for o in others]
            row = [level["label"], figure if figure.endswith(("/s", "errors")) else figure + " ms"]
            row += ["-" if v is None else f"{v:.1f}" for v in values]
            base = values[0]
            row += ["-" if v is None or not base else f"{v / base:.2f}" for v in values[1:]]
            rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print(
            "  ".join(
                c.ljust(w) if i < 2 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    if plot_path:
        plot(reports, plot_path)
    return 0
