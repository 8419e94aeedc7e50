#!/usr/bin/env bash
# bench-ab.sh: two or more builds of Shoal, A/B, on the same data.
#
# Builds two data sets once, with the first build given: a 3-node playground
# loaded with BENCH_KEYS keys of 256 B (one data region), and the same keys
# split into many regions (--region-split-keys=16, until the count stops
# growing; 11,000-16,000 regions). Then, for each round of BENCH_ROUNDS and each
# build in turn, it starts a playground on a fresh copy of each data set
# (default settings, so nothing splits) and runs uniform puts for
# BENCH_DURATION seconds: 16, 64 and 256 clients on one region, 16 clients on
# the many regions once 90% of them sleep. Interleaving the builds within a
# round keeps the shared machine's drift out of the comparison.
#
# Usage: scripts/bench-ab.sh BIN_DIR_A BIN_DIR_B [...]   (dirs with shoalctl and shoal-node)
# Env:   BENCH_ROUNDS ("1"; e.g. "1 2"), BENCH_KEYS (160000), BENCH_DURATION (10),
#        BENCH_BASE_PORT (27400), BENCH_WORK (data sets, kept between runs; default
#        ${TMPDIR:-/tmp}/shoal-bench-ab), BENCH_OUT (bench-out/ab-<UTC timestamp>).
# Prints one line per measurement ("<build> r<round> one|many(<regions>) c<N>:
# <ops/s> p99_ms <ms>") and appends it to BENCH_OUT/results.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ $# -ge 2 ] || { echo "usage: $0 BIN_DIR_A BIN_DIR_B [...]" >&2; exit 2; }
port="${BENCH_BASE_PORT:-27400}"
keys="${BENCH_KEYS:-160000}"
duration="${BENCH_DURATION:-10}"
work="${BENCH_WORK:-${TMPDIR:-/tmp}/shoal-bench-ab}"
out="${BENCH_OUT:-$root/bench-out/ab-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$work" "$out"
bench_name=bench-ab
# shellcheck source=scripts/bench-lib.sh
. "$root/scripts/bench-lib.sh"
trap 'stop; rm -rf "$work/run"' EXIT

put() { # NAME CONC: ops/s and p99 of uniform puts
  "$bin/shoalctl" --endpoints "$endpoints" --output json bench run --workload custom --read-ratio 0 \
    --distribution uniform --keys "$keys" --concurrency "$2" --duration "$duration" >"$out/$1.json"
  python3 -c "import json,sys; t=json.load(open(sys.argv[1]))['total']; print(round(t['ops_per_sec']), 'p99_ms', t['p99_us']/1000)" "$out/$1.json"
}

bin="$1"
if [ ! -d "$work/one" ] || [ ! -d "$work/many" ]; then
  rm -rf "$work/one" "$work/many"
  log "one region: loading $keys keys with $bin"
  start one-load "$work/one"
  "$bin/shoalctl" --endpoints "$endpoints" bench load --keys "$keys" --concurrency 64 >/dev/null
  stop
  log "many regions: loading $keys keys with --region-split-keys=16"
  start many-load "$work/many" --region-split-keys=16 --heartbeat-interval-ms=200
  "$bin/shoalctl" --endpoints "$endpoints" bench load --keys "$keys" --concurrency 64 >/dev/null
  last=0 still=0
  while [ "$still" -lt 3 ]; do
    sleep 10; n="$(regions)"; log "regions: $n"
    if [ "$n" = "$last" ]; then still=$((still + 1)); else still=0; last="$n"; fi
  done
  stop
fi
for round in ${BENCH_ROUNDS:-1}; do
  for bin in "$@"; do
    tag="$(basename "$(dirname "$bin")")/$(basename "$bin") r$round"
    name="$(echo "$tag" | tr '/ ' '__')"
    rm -rf "$work/run"; cp -a "$work/one" "$work/run"
    start "one-$name" "$work/run"
    for c in 16 64 256; do echo "$tag one c$c: $(put "one-$name-c$c" "$c")" | tee -a "$out/results"; done
    stop
    rm -rf "$work/run"; cp -a "$work/many" "$work/run"
    start "many-$name" "$work/run"
    for _ in $(seq 1 120); do [ "$(asleep)" -ge $(($(regions) * 9 / 10)) ] && break; sleep 1; done
    echo "$tag many($(regions)) c16: $(put "many-$name-c16" 16)" | tee -a "$out/results"
    stop
  done
done
