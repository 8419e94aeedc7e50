#!/usr/bin/env bash
# bench-regions.sh: what many regions per store cost — idle CPU, memory per region,
# and put throughput — against the same cluster with one data region.
#
# 1. One region: a fresh 3-node playground (default settings) loads BENCH_KEYS keys,
#    sits idle for BENCH_IDLE seconds while each node's CPU time (/proc/PID/stat
#    utime+stime) and RSS are sampled, then runs `bench run` puts (uniform, BENCH_CONC
#    clients, BENCH_DURATION seconds).
# 2. Many regions: a fresh playground with a tiny split threshold
#    (--region-split-keys=BENCH_SPLIT_KEYS, heartbeats every 200 ms so that splits come
#    quickly) loads the same keys and waits until the region count stops growing. It is
#    then stopped and started again on the same data with default settings (so that
#    nothing splits during the measurement), waits until the idle regions hibernate,
#    and is measured the same way.
# Memory per region = (RSS with many regions - RSS with one) / regions, per node.
#
# Usage: scripts/bench-regions.sh [OUT_DIR]    (default bench-out/regions-<UTC timestamp>)
# Env: BENCH_BIN (dir with shoalctl and shoal-node; ${CARGO_TARGET_DIR:-target}/release),
#      BENCH_KEYS (160000), BENCH_SPLIT_KEYS (16), BENCH_IDLE (30), BENCH_CONC (16),
#      BENCH_DURATION (10), BENCH_BASE_PORT (27300), BENCH_DATA_ROOT (${TMPDIR:-/tmp}).
# Prints a markdown table and writes it to OUT_DIR/results.md (logs beside it).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${BENCH_BIN:-${CARGO_TARGET_DIR:-$root/target}/release}"
keys="${BENCH_KEYS:-160000}"
split_keys="${BENCH_SPLIT_KEYS:-16}"
idle="${BENCH_IDLE:-30}"
conc="${BENCH_CONC:-16}"
duration="${BENCH_DURATION:-10}"
port="${BENCH_BASE_PORT:-27300}"
data_root="${BENCH_DATA_ROOT:-${TMPDIR:-/tmp}}"
out="${1:-$root/bench-out/regions-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out"
work="$(mktemp -d "$data_root/shoal-bench-regions.XXXXXX")"
bench_name=bench-regions
# shellcheck source=scripts/bench-lib.sh
. "$root/scripts/bench-lib.sh"
[ -x "$bin/shoalctl" ] && [ -x "$bin/shoal-node" ] || die "no shoalctl/shoal-node in $bin (set BENCH_BIN)"
cleanup() { stop; rm -rf "$work"; }
trap cleanup EXIT

# measure NAME: idle CPU (% of a core) and RSS (MiB) per node, then put throughput.
measure() {
  local name="$1" tck; tck="$(getconf CLK_TCK)"
  local -a before=()
  for p in $pids; do before+=("$(awk '{print $14+$15}' "/proc/$p/stat")"); done
  sleep "$idle"
  local i=0 cpu="" rss=""
  for p in $pids; do
    local now; now="$(awk '{print $14+$15}' "/proc/$p/stat")"
    cpu+="$(python3 -c "print(f'{($now-${before[$i]})/$tck/$idle*100:.1f}')") "
    rss+="$(awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$p/status") "
    i=$((i + 1))
  done
  "$bin/shoalctl" --endpoints "$endpoints" --output json bench run --workload custom --read-ratio 0 \
    --distribution uniform --keys "$keys" --concurrency "$conc" --duration "$duration" >"$out/$name.put.json"
  local ops; ops="$(python3 -c "import json,sys; print(round(json.load(open(sys.argv[1]))['total']['ops_per_sec']))" "$out/$name.put.json")"
  echo "$name|$(regions)|$cpu|$rss|$ops" >>"$out/rows"
  log "$name: regions $(regions), idle CPU % per node: $cpu, RSS MiB: $rss, put c$conc: $ops ops/s"
}

: >"$out/rows"
log "one region: loading $keys keys"
start one "$work/one"
"$bin/shoalctl" --endpoints "$endpoints" bench load --keys "$keys" --concurrency 64 >"$out/one.load.txt"
measure one
stop

log "many regions: loading $keys keys with --region-split-keys=$split_keys"
start split "$work/many" "--region-split-keys=$split_keys" "--heartbeat-interval-ms=200"
"$bin/shoalctl" --endpoints "$endpoints" bench load --keys "$keys" --concurrency 64 >"$out/many.load.txt"
last=0 still=0
while [ "$still" -lt 3 ]; do
  sleep 10
  n="$(regions)"
  log "regions: $n"
  if [ "$n" = "$last" ]; then still=$((still + 1)); else still=0; last="$n"; fi
done
stop
log "many regions: restarting with default settings"
start many "$work/many"
for _ in $(seq 1 120); do
  [ "$(asleep)" -ge $(($(regions) * 9 / 10)) ] && break
  sleep 1
done
log "hibernated: $(asleep) of $(regions)"
measure many
stop

python3 - "$out/rows" "$conc" >"$out/results.md" <<'EOF'
import sys
rows = [l.rstrip("\n").split("|") for l in open(sys.argv[1]) if l.strip()]
conc = sys.argv[2]
d = {r[0]: r for r in rows}
print(f"| cluster | regions | idle CPU per node (% of a core) | RSS per node (MiB) | put c{conc} ops/s |")
print("|---|---|---|---|---|")
for name in ("one", "many"):
    r = d[name]
    print(f"| {name} region{'s' if name == 'many' else ''} | {r[1]} | {' / '.join(r[2].split())} | {' / '.join(r[3].split())} | {int(r[4]):,} |")
one, many = d["one"], d["many"]
n = int(many[1])
per = [(float(b) - float(a)) * 1024 / n for a, b in zip(one[3].split(), many[3].split())]
print()
print(f"Memory per region: {' / '.join(f'{p:.1f}' for p in per)} KiB per node; "
      f"put throughput with {n:,} regions: {int(many[4]) / int(one[4]) * 100:.0f}% of one region's.")
EOF
cat "$out/results.md"
