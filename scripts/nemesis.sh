#!/usr/bin/env bash
# Runs the nemesis (tests/tests/nemesis.rs: SIGKILL/restart, SIGSTOP/SIGCONT,
# network partitions and a slow disk on a 3-node cluster of real processes, a
# register workload judged by the linearizability checker and a bank judged by
# its rules) several times, each with a new seed, and prints one line per run:
#   seed=… ops=… acked_writes=… unknown_writes=… transfers=… scans=… faults=… lost=0 violations=0
#
#   scripts/nemesis.sh --duration 300 --runs 10
#
# Needs the test binaries built (cargo build --workspace --bins --tests), root
# and iproute2 (each node runs in a network namespace of its own).
set -euo pipefail
cd "$(dirname "$0")/.."

duration=60
runs=1
while (($#)); do
  case "$1" in
    --duration) duration="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    *) echo "usage: $0 [--duration SECONDS] [--runs N]" >&2; exit 2 ;;
  esac
done

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/shoal-target}"
failed=0
for ((run = 1; run <= runs; run++)); do
  seed=$(( $(date +%s%N) % 1000000000000 + run ))
  out="$(mktemp)"
  if SHOAL_NEMESIS_SECS="$duration" SHOAL_NEMESIS_SEED="$seed" \
      cargo nextest run -p shoal-tests --test nemesis --no-capture --locked \
      --no-tests=fail >"$out" 2>&1; then
    status=ok
  else
    status=FAILED
    failed=$((failed + 1))
  fi
  line="$(grep -E '^ops=' "$out" | tail -1 || true)"
  echo "run $run/$runs: seed=$seed ${line:-no report} ($status)"
  if [ "$status" = FAILED ]; then
    tail -40 "$out" >&2
  fi
  rm -f "$out"
done
echo "runs=$runs failed=$failed"
[ "$failed" -eq 0 ]
