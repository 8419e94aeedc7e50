#!/usr/bin/env bash
# Runs the randomized simulation of the multi-Raft store (node/tests/simulation.rs)
# for more seeds than CI's 500:
#
#   scripts/simulate.sh --seeds 20000 [--first 10000] [--jobs 2]
#
# Seeds FIRST .. FIRST+SEEDS are split over JOBS processes; a failure prints its
# seed and what broke. Prints one summary line per job and a total.
set -euo pipefail
cd "$(dirname "$0")/.."

seeds=1000
first=10000
jobs=2
while (($#)); do
  case "$1" in
    --seeds) seeds="$2"; shift 2 ;;
    --first) first="$2"; shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    *) echo "usage: $0 [--seeds N] [--first S] [--jobs J]" >&2; exit 2 ;;
  esac
done

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/shoal-target}"
cargo build -p shoal-node --tests --locked --quiet
bin="$(cargo test -p shoal-node --test simulation --locked --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m.get("executable") and m["target"]["name"]=="simulation": print(m["executable"])' | tail -1)"
per=$(( (seeds + jobs - 1) / jobs ))
started=$(date +%s)
pids=()
for ((j = 0; j < jobs; j++)); do
  from=$(( first + j * per ))
  n=$(( per < seeds - j * per ? per : seeds - j * per ))
  ((n > 0)) || continue
  SHOAL_SIM_FIRST=$from SHOAL_SIM_SEEDS=$n "$bin" --ignored --exact seeds_from_env --nocapture \
    >"/tmp/shoal-simulate-$j.log" 2>&1 &
  pids+=($!)
done
failed=0
for j in "${!pids[@]}"; do
  if ! wait "${pids[$j]}"; then failed=1; fi
  grep -E "^seeds |seed [0-9]+:" "/tmp/shoal-simulate-$j.log" | head -20 || true
done
echo "simulate: seeds=$seeds first=$first jobs=$jobs elapsed=$(( $(date +%s) - started ))s $([ $failed -eq 0 ] && echo ok || echo FAILED)"
exit $failed
