#!/usr/bin/env bash
# flamegraph.sh: where a 3-node playground spends its CPU under one bench workload.
#
# Starts a fresh playground (release binaries), loads BENCH_KEYS keys, runs
# `shoalctl bench run` with the given workload arguments for PROFILE_SECS + 4
# seconds, and meanwhile samples all three shoal-node processes with
# `perf record --call-graph dwarf` for PROFILE_SECS seconds (after 2 s of warm-up).
# The samples are folded with inferno (`cargo install inferno`) into OUT.svg, one
# flame graph of all threads of all three nodes (frames under 0.1% left out).
#
# Usage: scripts/flamegraph.sh OUT [bench run args...]
#   e.g. scripts/flamegraph.sh docs/flamegraphs/put-c16 --workload custom --read-ratio 0 --concurrency 16
# Env: BENCH_BIN (dir with shoalctl and shoal-node; ${CARGO_TARGET_DIR:-target}/release),
#      BENCH_KEYS (100000), PROFILE_SECS (8), PROFILE_FREQ (199 Hz), BENCH_BASE_PORT (27400).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${BENCH_BIN:-${CARGO_TARGET_DIR:-$root/target}/release}"
keys="${BENCH_KEYS:-100000}"
secs="${PROFILE_SECS:-8}"
freq="${PROFILE_FREQ:-199}"
port="${BENCH_BASE_PORT:-27400}"
[ $# -ge 1 ] || { echo "usage: $0 OUT [bench run args...]" >&2; exit 2; }
out="$1"; shift
for t in perf inferno-collapse-perf inferno-flamegraph; do
  command -v "$t" >/dev/null || { echo "$t not found (perf from linux-perf; inferno: cargo install inferno)" >&2; exit 1; }
done
mkdir -p "$(dirname "$out")"
work="$(mktemp -d)"
pg=""
cleanup() { [ -n "$pg" ] && kill -INT "$pg" 2>/dev/null && wait "$pg" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

"$bin/shoalctl" playground --data-dir "$work/data" --base-port "$port" >"$work/pg.out" 2>&1 &
pg=$!
for _ in $(seq 1 600); do grep -q '^ready:' "$work/pg.out" && break; sleep 0.1; done
grep -q '^ready:' "$work/pg.out" || { cat "$work/pg.out" >&2; exit 1; }
sleep 1
endpoints="$(sed -n 's/^ready: endpoints=//p' "$work/pg.out")"
pids="$(grep -o 'pid=[0-9]*' "$work/pg.out" | cut -d= -f2 | paste -sd,)"
"$bin/shoalctl" --endpoints "$endpoints" bench load --keys "$keys" --concurrency 64 >/dev/null
"$bin/shoalctl" --endpoints "$endpoints" bench run --keys "$keys" --duration $((secs + 4)) "$@" >"$work/bench.txt" &
bench=$!
sleep 2
perf record -q -F "$freq" --call-graph dwarf,16384 -p "$pids" -o "$work/perf.data" -- sleep "$secs" 2>/dev/null
wait "$bench"
perf script -i "$work/perf.data" 2>/dev/null | inferno-collapse-perf >"$work/folded"
inferno-flamegraph --minwidth 0.1 --title "shoal-node x3: bench run $*" <"$work/folded" >"$out.svg"
cat "$work/bench.txt"
echo "wrote $out.svg"
