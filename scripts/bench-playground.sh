#!/usr/bin/env bash
# Benchmarks a local 3-node playground with `shoalctl bench`: a write-concurrency
# sweep, then `bench load` and the YCSB-like workloads a, b, c and e (uniform keys).
# Usage: scripts/bench-playground.sh [BIN_DIR] (default $CARGO_TARGET_DIR/release, else target/release).
# Env: BENCH_BASE_PORT (26000), BENCH_DURATION seconds per run (20), BENCH_KEYS loaded keys (10000),
#      BENCH_VALUE_SIZE (256), BENCH_DISTS key distributions for a/b/c/e ("uniform"),
#      BENCH_SWEEP=0 skips the write-concurrency sweep, BENCH_NODE_ARGS extra node flags
#      (e.g. "--region-split-size=4194304" for many regions).
# Prints each bench report; the figures in docs/BENCHMARKS.md come from this script.
set -euo pipefail
bin="${1:-${CARGO_TARGET_DIR:-target}/release}"
port="${BENCH_BASE_PORT:-26000}"
duration="${BENCH_DURATION:-20}"
keys="${BENCH_KEYS:-10000}"
vsize="${BENCH_VALUE_SIZE:-256}"
dists="${BENCH_DISTS:-uniform}"
node_args=()
for a in ${BENCH_NODE_ARGS:-}; do node_args+=("--node-arg=$a"); done
data="$(mktemp -d)"
eps="127.0.0.1:$port,127.0.0.1:$((port + 2)),127.0.0.1:$((port + 4))"

"$bin/shoalctl" playground --nodes 3 --base-port "$port" --data-dir "$data" ${node_args[@]+"${node_args[@]}"} >"$data/playground.out" 2>&1 &
pg=$!
trap 'kill -TERM $pg 2>/dev/null; wait $pg 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 1 600); do grep -q '^ready:' "$data/playground.out" && break; sleep 0.1; done
grep '^ready:' "$data/playground.out"
bench() { "$bin/shoalctl" --endpoints "$eps" bench "$@"; }

[ "${BENCH_SWEEP:-1}" = 0 ] || for c in 1 16 64; do
  echo "== writes (256 B puts, 100,000 keys), concurrency $c"
  bench run --workload custom --read-ratio 0 --concurrency "$c" --keys 100000 --value-size 256 --duration "$duration"
done
echo "== load $keys keys of $vsize B"
bench load --keys "$keys" --value-size "$vsize" --concurrency 64
sleep 3 # let the last splits and leader moves land before measuring
echo "regions: $("$bin/shoalctl" --endpoints "$eps" region list | tail -n +2 | wc -l)"
"$bin/shoalctl" --endpoints "$eps" store list
for d in $dists; do
  for w in a b c e; do
    echo "== workload $w, $d, concurrency 64"
    bench run --workload "$w" --distribution "$d" --keys "$keys" --value-size "$vsize" --concurrency 64 --duration "$duration"
  done
done
