"""The table of an A/B of two builds (``scripts/ab_builds.sh``): for each row of the load
generator, the medians of each build's rate, the median of the per-round ratios new/old
with their spread, in how many rounds the new build was ahead, and the server CPU ratio.

    python -m scripts.ab_compare OUT
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
from typing import Any


def _runs(out: str, who: str) -> dict[int, dict[tuple[str, str, int], dict[str, Any]]]:
    runs = {}
    for path in sorted(glob.glob(os.path.join(out, f"{who}_r*.json"))):
        round_ = int(path.rsplit("_r", 1)[1].split(".")[0])
        with open(path) as f:
            rows = json.load(f)["rows"]
        runs[round_] = {(r["proto"], r["test"], r["conc"]): r for r in rows}
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    args = parser.parse_args()
    old, new = _runs(args.out, "old"), _runs(args.out, "new")
    rounds = sorted(set(old) & set(new))
    print("| row | old | new | new/old, median of rounds (min-max) | new ahead | CPU new/old |")
    print("|---|---:|---:|---:|---:|---:|")
    for key in old[rounds[0]]:
        first = old[rounds[0]][key]
        rate = "tokens_per_s" if first.get("tokens_per_s") else "req_per_s"
        pairs = [(old[r][key], new[r][key]) for r in rounds if key in new[r]]
        ratios = [b[rate] / a[rate] for a, b in pairs]
        cpu = [b["server_cpu_s"] / a["server_cpu_s"] for a, b in pairs if a.get("server_cpu_s")]
        cpu_ratio = f"{statistics.median(cpu):.2f}" if cpu else "-"
        print(
            f"| {key[0]} {key[1]} C={key[2]} {rate} "
            f"| {statistics.median(a[rate] for a, _ in pairs):,.0f} "
            f"| {statistics.median(b[rate] for _, b in pairs):,.0f} "
            f"| {statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) "
            f"| {sum(x > 1 for x in ratios)}/{len(ratios)} | {cpu_ratio} |"
        )


if __name__ == "__main__":
    main()
