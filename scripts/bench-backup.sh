#!/usr/bin/env bash
# Measures a backup and a restore: two 3-node playgrounds (A and B), KEYS keys
# of VALUE bytes loaded into A with `shoalctl bench load`, `shoalctl backup
# create` of A to a directory, `shoalctl restore` of it into B; prints the
# backup's JSON (regions, keys, bytes, how long writes were held), the restore's,
# and both wall times. Results go to docs/BENCHMARKS.md by hand.
#
#   scripts/bench-backup.sh [KEYS] [VALUE]      # default 200000 1024
#   BIN=target/release scripts/bench-backup.sh  # binaries to use (default: the
#                                               # CARGO_TARGET_DIR debug build)
set -euo pipefail
KEYS="${1:-200000}"
VALUE="${2:-1024}"
BIN="${BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/shoal-target}/debug}"
work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

playground() { # NAME BASE_PORT
  "$BIN/shoalctl" playground --nodes 3 --base-port "$2" --data-dir "$work/$1" > "$work/$1.out" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 120); do
    grep -q '^ready:' "$work/$1.out" 2>/dev/null && return 0
    sleep 1
  done
  echo "playground $1 did not start:" >&2
  cat "$work/$1.out" >&2
  exit 1
}

playground a 31000
playground b 32000
endpoints() { sed -n 's/^ready: endpoints=//p' "$work/$1.out" | head -1; }
A="$(endpoints a)"
B="$(endpoints b)"

"$BIN/shoalctl" --endpoints "$A" bench load --keys "$KEYS" --value-size "$VALUE"
start=$(date +%s.%N)
"$BIN/shoalctl" --endpoints "$A" --output json backup create --destination "file://$work/backups" --name bench
mid=$(date +%s.%N)
"$BIN/shoalctl" --endpoints "$B" --output json restore --source "file://$work/backups/bench" --scratch "$work/scratch"
end=$(date +%s.%N)
awk -v s="$start" -v m="$mid" -v e="$end" -v d="$(du -sb "$work/backups/bench" | cut -f1)" \
  'BEGIN { printf "backup_seconds=%.1f restore_seconds=%.1f backup_bytes_on_disk=%d\n", m - s, e - m, d }'
