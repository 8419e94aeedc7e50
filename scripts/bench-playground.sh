#!/usr/bin/env bash
# Benchmarks a local 3-node playground with `shoalctl bench`: writes, then
# linearizable reads. Usage: scripts/bench-playground.sh [BIN_DIR] (default target/release).
# Prints each bench report; the figures in docs/BENCHMARKS.md come from this script.
set -euo pipefail
bin="${1:-target/release}"
port="${BENCH_BASE_PORT:-26000}"
duration="${BENCH_DURATION:-20}"
data="$(mktemp -d)"
eps="127.0.0.1:$port,127.0.0.1:$((port + 2)),127.0.0.1:$((port + 4))"

"$bin/shoalctl" playground --nodes 3 --base-port "$port" --data-dir "$data" >"$data/playground.out" 2>&1 &
pg=$!
trap 'kill -TERM $pg 2>/dev/null; wait $pg 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 1 600); do grep -q '^ready:' "$data/playground.out" && break; sleep 0.1; done
grep '^ready:' "$data/playground.out"

for c in 1 16 64; do
  echo "== writes, concurrency $c"
  "$bin/shoalctl" --endpoints "$eps" bench --concurrency "$c" --keys 100000 --value-size 256 --read-ratio 0 --duration "$duration"
done
echo "== linearizable reads, concurrency 64 (10,000 keys prefilled)"
"$bin/shoalctl" --endpoints "$eps" bench --concurrency 64 --keys 10000 --value-size 256 --read-ratio 1 --duration "$duration" --prefill
echo "== 50/50 reads and writes, concurrency 64"
"$bin/shoalctl" --endpoints "$eps" bench --concurrency 64 --keys 10000 --value-size 256 --read-ratio 0.5 --duration "$duration"
