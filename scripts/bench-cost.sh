#!/usr/bin/env bash
# bench-cost.sh: what one put costs the cluster, on bench-ab.sh's data sets.
#
# Starts a playground of BIN on a fresh copy of bench-ab.sh's "one" (one data
# region) or "many" (11,000-16,000 regions; waits until the leaders are
# balanced, for at most 180 s, and 90% of the regions sleep) data set,
# runs 10 s of uniform puts with CONC clients, and prints ops/s, p50/p99, the
# nodes' CPU seconds per 10,000 puts (from /proc), and per put, summed over
# the three nodes: Raft messages sent, store-loop rounds, synced writes, and
# peers with a Ready (from /metrics). With PERF=1 it also samples the nodes
# with `perf record --call-graph dwarf` for 5 s into BENCH_OUT/NAME.perf.data.
#
# Usage: scripts/bench-cost.sh BIN_DIR one|many CONC NAME
# Env:   BENCH_WORK (bench-ab.sh's data sets; build them with it first),
#        BENCH_OUT (bench-out/cost), BENCH_BASE_PORT (27400: the port the data
#        sets were made with), PERF (0).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ $# -eq 4 ] || { echo "usage: $0 BIN_DIR one|many CONC NAME" >&2; exit 2; }
bin="$1"; ds="$2"; conc="$3"; name="$4"
work="${BENCH_WORK:-${TMPDIR:-/tmp}/shoal-bench-ab}"
out="${BENCH_OUT:-$root/bench-out/cost}"
port="${BENCH_BASE_PORT:-27400}"
mkdir -p "$out"
bench_name=bench-cost
# shellcheck source=scripts/bench-lib.sh
. "$root/scripts/bench-lib.sh"
start_on_copy "$name" cost-run
if [ "$ds" = many ]; then
  # Leaders balanced first (a restart leaves them where the elections did).
  for _ in $(seq 1 180); do [ "$(leader_spread)" -le 2 ] && break; sleep 1; done
  for _ in $(seq 1 120); do [ "$(asleep)" -ge $(($(regions) * 9 / 10)) ] && break; sleep 1; done
fi
cpu() { for p in $pids; do awk '{print $14 + $15}' "/proc/$p/stat"; done | paste -sd+ | bc; }
counters() {
  for p in $((port + 1)) $((port + 3)) $((port + 5)); do curl -sf "http://127.0.0.1:$p/metrics"; done |
    awk '$1 ~ /^shoal_raft_messages_total/ { m += $2 } $1 == "shoal_store_round_duration_seconds_count" { r += $2 }
         $1 == "shoal_wal_sync_duration_seconds_count" { s += $2 } $1 == "shoal_store_ready_peers_per_round_sum" { p += $2 }
         END { print m, r, s, p }'
}
c0="$(cpu)"; m0="$(counters)"
perf_pid=""
if [ "${PERF:-0}" = 1 ]; then
  (sleep 3; perf record -F 499 --call-graph dwarf,16384 -o "$out/$name.perf.data" -p "$(echo $pids | tr ' ' ,)" -- sleep 5 >/dev/null 2>&1) &
  perf_pid=$!
fi
"$bin/shoalctl" --endpoints "$endpoints" --output json bench run --workload custom --read-ratio 0 \
  --distribution uniform --keys 160000 --concurrency "$conc" --duration 10 >"$out/$name.json"
c1="$(cpu)"; m1="$(counters)"
[ -z "$perf_pid" ] || wait "$perf_pid"
python3 - "$out/$name.json" "$c0" "$c1" "$m0" "$m1" "$name" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))["total"]
ops = t["ops_per_sec"] * 10
cpu = (float(sys.argv[3]) - float(sys.argv[2])) / 100
m0, m1 = ([float(x) for x in a.split()] for a in sys.argv[4:6])
msgs, rounds, syncs, readies = ((b - a) / ops for a, b in zip(m0, m1))
print(f"{sys.argv[6]}: {t['ops_per_sec']:.0f} ops/s p50_ms {t['p50_us']/1000:.2f} p99_ms {t['p99_us']/1000:.2f} "
      f"node_cpu_s_per_10k {cpu / ops * 1e4:.2f} per_put: messages {msgs:.2f} rounds {rounds:.2f} "
      f"synced_writes {syncs:.2f} ready_peers {readies:.2f}")
PY
