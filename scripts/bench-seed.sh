#!/usr/bin/env bash
# Measures seeding a new store: a 3-node playground is loaded with about
# BENCH_SEED_MIB of data, a 4th node starts with --join, and `shoalctl store join`
# admits it; the clock runs from the join until the store is `up` (placement has
# moved its share of regions to it: learner -> snapshot -> voter).
# Usage: scripts/bench-seed.sh [BIN_DIR] (default $CARGO_TARGET_DIR/release, else target/release).
# Env: BENCH_BASE_PORT (27000), BENCH_SEED_MIB (1024), BENCH_VALUE_SIZE (16384), BENCH_CONCURRENCY (16),
#      BENCH_NODE_ARGS extra node flags for all four nodes
#      (e.g. "--snapshot-max-bytes-per-sec=0" to lift the default 100 MiB/s limit),
#      BENCH_LOG_DIR where to keep the nodes' logs (default: deleted with the data).
# Prints the load, then the seeding time, regions and bytes moved and MB/s, the MB
# each node's compactions wrote meanwhile, and each snapshot stage's time.
set -euo pipefail
bin="${1:-${CARGO_TARGET_DIR:-target}/release}"
port="${BENCH_BASE_PORT:-27000}"
mib="${BENCH_SEED_MIB:-1024}"
vsize="${BENCH_VALUE_SIZE:-16384}"
keys=$((mib * 1048576 / vsize))
node_args=(${BENCH_NODE_ARGS:-})
pg_args=()
for a in ${node_args[@]+"${node_args[@]}"}; do pg_args+=("--node-arg=$a"); done
data="$(mktemp -d)"
eps="127.0.0.1:$port,127.0.0.1:$((port + 2)),127.0.0.1:$((port + 4))"
n4_grpc="127.0.0.1:$((port + 6))"
n4_status="127.0.0.1:$((port + 7))"

"$bin/shoalctl" playground --nodes 3 --base-port "$port" --data-dir "$data" ${pg_args[@]+"${pg_args[@]}"} >"$data/playground.out" 2>&1 &
pg=$!
n4=""
cleanup() {
  [ -n "$n4" ] && kill -TERM "$n4" 2>/dev/null && wait "$n4" 2>/dev/null
  kill -TERM $pg 2>/dev/null
  wait $pg 2>/dev/null
  if [ -n "${BENCH_LOG_DIR:-}" ]; then mkdir -p "$BENCH_LOG_DIR" && cp "$data"/*.log "$data"/*.out "$BENCH_LOG_DIR"/ 2>/dev/null; fi
  rm -rf "$data"
}
trap cleanup EXIT
for _ in $(seq 1 600); do grep -q '^ready:' "$data/playground.out" && break; sleep 0.1; done
grep '^ready:' "$data/playground.out"
ctl() { "$bin/shoalctl" --endpoints "$eps" "$@"; }

echo "== load $keys keys of $vsize B ($mib MiB)"
ctl bench load --keys "$keys" --value-size "$vsize" --concurrency "${BENCH_CONCURRENCY:-16}"
# Let the last splits land and the load's compactions finish: no compaction
# running or pending on any node, and the nodes idle (under 5% of a core
# together over a second), at most two minutes.
node_pids=$(pgrep -f -- "--data-dir $data/n" | tr '\n' ' ')
cpu_ticks() { for p in $node_pids; do awk '{print $14 + $15}' "/proc/$p/stat"; done | awk '{s += $1} END {print s}'; }
status_urls() { for n in 0 1 2; do echo "http://127.0.0.1:$((port + 2 * n + 1))/metrics"; done; [ -z "$n4" ] || echo "http://$n4_status/metrics"; }
# Sum of a metric (all label sets) on each node, one line per node.
per_node() { for u in $(status_urls); do curl -s "$u" | awk -v m="$1" '$1 == m || index($1, m "{") == 1 {s += $2} END {printf "%.0f\n", s}'; done; }
hz=$(getconf CLK_TCK)
for _ in $(seq 1 120); do
  a=$(cpu_ticks); sleep 1; b=$(cpu_ticks)
  busy=$(per_node shoal_engine_compactions_running; per_node shoal_engine_pending_compaction_bytes)
  [ $((b - a)) -lt $((hz / 20)) ] && ! grep -qv '^0$' <<<"$busy" && break
done
compacted_before=$(per_node shoal_engine_compaction_write_bytes_total | tr '\n' ' ')
echo "regions: $(ctl region list | tail -n +2 | wc -l)"
ctl store list

"$bin/shoal-node" --name n4 --data-dir "$data/n4" --listen-addr "$n4_grpc" --status-addr "$n4_status" --join "$eps" \
  ${node_args[@]+"${node_args[@]}"} >"$data/n4.log" 2>&1 &
n4=$!
id=""
for _ in $(seq 1 300); do
  id=$(ctl store list --output json | python3 -c "import json,sys; print(next((s['id'] for s in json.load(sys.stdin) if s['address']=='$n4_grpc'), ''))")
  [ -n "$id" ] && break
  sleep 0.2
done
[ -n "$id" ] || { echo "n4 never registered"; cat "$data/n4.log"; exit 1; }
echo "n4 registered as store $id"

start=$(date +%s.%N)
ctl store join "$id"
to_move=0
# Polled with shoalctl and grep only: a python per poll cost a tenth of the two cores.
while :; do
  status=$(ctl store status "$id" --output json)
  moving=$(grep -o '"bytes_to_move": *[0-9]*' <<<"$status" | grep -o '[0-9]*$' || echo 0)
  [ "${moving:-0}" -gt "$to_move" ] && to_move=$moving
  grep -q '"state": *"up"' <<<"$status" && break
  sleep 0.2
done
end=$(date +%s.%N)
compacted_after=$(per_node shoal_engine_compaction_write_bytes_total | tr '\n' ' ')
ctl store list
received=$(curl -s "http://$n4_status/metrics" | awk '/^shoal_snapshot_bytes_total\{direction="received"\}/ {print $2}')
applied=$(curl -s "http://$n4_status/metrics" | awk '/^shoal_snapshots_total\{event="applied"\}/ {print $2}')
ctl store status "$id"
python3 - "$start" "$end" "${received:-0}" "${applied:-0}" "$to_move" <<'EOF'
import sys
start, end, received, applied, moved = (float(a) for a in sys.argv[1:6])
secs = end - start
print(f"seeded store: {secs:.1f} s from join to up; {int(applied)} snapshots applied; "
      f"{moved / 1e6:.1f} MB of region data to move at the join: {moved / 1e6 / secs:.1f} MB/s of region data; "
      f"{received / 1e6:.1f} MB received on the wire: {received / 1e6 / secs:.1f} MB/s")
EOF
python3 - $compacted_before -- $compacted_after <<'EOF'
import sys
args = sys.argv[1:]
cut = args.index("--")
before, after = [int(a) for a in args[:cut]], [int(a) for a in args[cut + 1:]]
before += [0] * (len(after) - len(before))  # n4 had not started
print("compactions during the seeding, MB written per node (n1..n4): "
      + " / ".join(f"{(a - b) / 1e6:.1f}" for a, b in zip(after, before)))
EOF
# Per stage, from the four nodes' histograms: how many snapshots, how long each took.
for n in 0 1 2 3; do
  if [ "$n" = 3 ]; then url="http://$n4_status/metrics"; else url="http://127.0.0.1:$((port + 2 * n + 1))/metrics"; fi
  curl -s "$url"
done | python3 -c '
import re, sys
sums, counts = {}, {}
for line in sys.stdin:
    m = re.match(r"shoal_snapshot_duration_seconds_(sum|count)\{stage=\"(\w+)\"\} (\S+)", line)
    if m:
        d = sums if m[1] == "sum" else counts
        d[m[2]] = d.get(m[2], 0.0) + float(m[3])
for stage in sorted(sums):
    n = counts.get(stage, 0)
    print(f"  {stage}: {int(n)} snapshots, {sums[stage]:.2f} s in all, {sums[stage] / max(n, 1) * 1000:.0f} ms each")
'
