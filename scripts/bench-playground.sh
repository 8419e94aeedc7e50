#!/usr/bin/env bash
# Benchmarks a local 3-node playground with `shoalctl bench`: a write-concurrency
# sweep, then `bench load` and the YCSB-like workloads a, b, c and e (uniform keys).
# Usage: scripts/bench-playground.sh [BIN_DIR] (default $CARGO_TARGET_DIR/release, else target/release).
# Env: BENCH_BASE_PORT (26000), BENCH_DURATION seconds per run (20), BENCH_KEYS loaded keys (10000).
# Prints each bench report; the figures in docs/BENCHMARKS.md come from this script.
set -euo pipefail
bin="${1:-${CARGO_TARGET_DIR:-target}/release}"
port="${BENCH_BASE_PORT:-26000}"
duration="${BENCH_DURATION:-20}"
keys="${BENCH_KEYS:-10000}"
data="$(mktemp -d)"
eps="127.0.0.1:$port,127.0.0.1:$((port + 2)),127.0.0.1:$((port + 4))"

"$bin/shoalctl" playground --nodes 3 --base-port "$port" --data-dir "$data" >"$data/playground.out" 2>&1 &
pg=$!
trap 'kill -TERM $pg 2>/dev/null; wait $pg 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 1 600); do grep -q '^ready:' "$data/playground.out" && break; sleep 0.1; done
grep '^ready:' "$data/playground.out"
bench() { "$bin/shoalctl" --endpoints "$eps" bench "$@"; }

for c in 1 16 64; do
  echo "== writes (256 B puts, 100,000 keys), concurrency $c"
  bench run --workload custom --read-ratio 0 --concurrency "$c" --keys 100000 --value-size 256 --duration "$duration"
done
echo "== load $keys keys"
bench load --keys "$keys" --value-size 256 --concurrency 64
for w in a b c e; do
  echo "== workload $w, uniform, concurrency 64"
  bench run --workload "$w" --distribution uniform --keys "$keys" --value-size 256 --concurrency 64 --duration "$duration"
done
