#!/usr/bin/env bash
# An A/B of two builds of streamwise (two checkouts, e.g. `git worktree add --detach`),
# with the side-by-side harness's models and load generator: each round serves the models
# with one build, then the other (the order alternating, ABBA), and runs the same load.
#
#   BENCH=path/to/bench scripts/ab_builds.sh OUT ROUNDS OLD_CHECKOUT NEW_CHECKOUT "bench flags"
#   python -m scripts.ab_compare OUT          # new/old per round: medians, spread, CPU
#
# e.g. "--rest http://127.0.0.1:8080 --grpc 127.0.0.1:8081 --only unary". Uses the
# harness's client venv ($BENCH_VENVS, default /tmp/sw-bench-venvs) and this venv's Python.
set -u
OUT=$1; ROUNDS=$2; OLD=$3; NEW=$4; FLAGS=$5
: "${BENCH:?set BENCH to the folder of the side-by-side harness}"
V="${BENCH_VENVS:-/tmp/sw-bench-venvs}"
PY="${PYTHON:-$(command -v python)}"
mkdir -p "$OUT"
one() { # label checkout
  local d pid
  d=$(mktemp -d /tmp/ab-XXXX); cp -r "$BENCH/models/." "$d/"
  find "$d" -name '*.py' -exec sed -i 's/\bmlserver\b/streamwise/g' {} +
  (cd "$2" && exec "$PY" -m src serve "$d" > "$d/server.log" 2>&1) & pid=$!
  for _ in $(seq 1 120); do curl -sf -o /dev/null http://127.0.0.1:8080/v2/health/ready && break; sleep 0.5; done
  # shellcheck disable=SC2086  # the bench flags are words
  "$V/client/bin/python" "$BENCH/bench_stream.py" $FLAGS --server-pid "$pid" \
    --json "$OUT/$1.json" --label "$1" > "$OUT/$1.txt" 2>&1
  kill -TERM "$pid"; wait "$pid" 2>/dev/null; rm -rf "$d"
}
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then one "old_r$r" "$OLD"; one "new_r$r" "$NEW"
  else one "new_r$r" "$NEW"; one "old_r$r" "$OLD"; fi
done
