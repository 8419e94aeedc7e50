#!/usr/bin/env bash
# bench-idle.sh: how long a restarted cluster takes to balance its leaders, and
# what it costs idle once they are balanced, on bench-ab.sh's data sets.
#
# Starts a playground of BIN on a fresh copy of bench-ab.sh's "many" (11,000-
# 16,000 regions) or "one" data set, prints each node's leader count every
# 10 s until the counts differ by at most 2 (or BALANCE_SECS pass), then
# samples each node's CPU time (/proc/PID/stat) for 30 s and prints it as a
# percentage of one core. Nothing is written to the cluster.
#
# Usage: scripts/bench-idle.sh BIN_DIR one|many NAME
# Env:   BENCH_WORK (bench-ab.sh's data sets; build them with it first),
#        BENCH_OUT (bench-out/idle), BENCH_BASE_PORT (27400: the port the data
#        sets were made with), BALANCE_SECS (300).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ $# -eq 3 ] || { echo "usage: $0 BIN_DIR one|many NAME" >&2; exit 2; }
bin="$1"; ds="$2"; name="$3"
work="${BENCH_WORK:-${TMPDIR:-/tmp}/shoal-bench-ab}"
out="${BENCH_OUT:-$root/bench-out/idle}"
port="${BENCH_BASE_PORT:-27400}"
mkdir -p "$out"
bench_name=bench-idle
# shellcheck source=scripts/bench-lib.sh
. "$root/scripts/bench-lib.sh"
start_on_copy "$name" idle-run
began=$(date +%s)
while :; do
  counts="$(leaders)"; t=$(($(date +%s) - began))
  echo "$name: t=${t}s leaders per node: $counts; asleep on n1: $(asleep) of $(regions)"
  [ "$(leader_spread)" -le 2 ] && break
  [ "$t" -ge "${BALANCE_SECS:-300}" ] && { echo "$name: not balanced after ${t}s"; break; }
  sleep 10
done
per() { for p in $pids; do awk '{ print $14 + $15 }' "/proc/$p/stat"; done | paste -sd' '; }
c0="$(per)"; sleep 30; c1="$(per)"
python3 - "$name" "$c0" "$c1" <<'PY'
import sys
a, b = ([float(x) for x in s.split()] for s in sys.argv[2:4])
print(f"{sys.argv[1]}: idle CPU per node over 30 s (% of a core): " + " / ".join(f"{(y - x) / 30:.1f}" for x, y in zip(a, b)))
PY
