#!/usr/bin/env bash
# bench-compare.sh: Shoal vs etcd (3.4 and 3.6) under the same client and workloads.
#
# For each system it starts a fresh 3-member cluster on loopback (fsync on, defaults
# otherwise; a new data directory each time), runs `shoalctl bench load` once, then
# `shoalctl --output json bench run --target shoal|etcd` for every workload x key
# distribution x concurrency, stops the cluster and deletes its data before the next
# system. Around each run it samples the servers' CPU time (/proc/PID/stat utime+stime)
# and bytes written (/proc/PID/io write_bytes), summed over the 3 server processes
# (shoal-node or etcd; the bench client, which shares the machine, is not counted).
# scripts/bench_report.py then turns the results into CSV, markdown and SVG plots.
#
# Workloads (all `bench run` on the loaded keys, 1 request in flight per worker):
#   put      --workload custom --read-ratio 0      (100% puts of fresh values)
#   mixed50  --workload custom --read-ratio 0.5    (50% linearizable gets, 50% puts)
#   mixed95  --workload custom --read-ratio 0.95   (95% linearizable gets, 5% puts)
#   get      --workload custom --read-ratio 1      (100% linearizable gets)
#   scan     --workload e --scan-length 100        (the harness has no pure-scan mode:
#            95% scans from a chosen key with a limit drawn uniformly from 1..=100,
#            so ~50 rows on average, plus 5% inserts of new keys)
#
# Usage: scripts/bench-compare.sh [OUT_DIR]     (default bench-out/<UTC timestamp>)
# Env:
#   BENCH_BIN          dir with shoalctl and shoal-node (default ${CARGO_TARGET_DIR:-target}/release)
#   BENCH_DURATION     seconds per run (10)
#   BENCH_CONCURRENCY  ("1 16 64 256")
#   BENCH_WORKLOADS    ("put mixed50 mixed95 get scan")
#   BENCH_DISTS        key distributions ("uniform zipfian")
#   BENCH_SYSTEMS      ("shoal etcd3.4 etcd3.6"); a missing etcd 3.6 binary is skipped with a warning
#   BENCH_KEYS         keys loaded and used (100000)
#   BENCH_VALUE_SIZE   bytes per value (256)
#   BENCH_BASE_PORT    first port; system i uses BASE+20i .. BASE+20i+5 (default: the first
#                      free block of 6 ports from 27100 on, picked per system)
#   BENCH_ETCD34       etcd 3.4 binary (/usr/bin/etcd)
#   BENCH_ETCD36       etcd 3.6 binary ($HOME/.cache/shoal-k8s/bin/etcd)
#   BENCH_ETCD_ARGS    extra flags for every etcd member ("--quota-backend-bytes=8589934592":
#                      the default 2 GiB quota can fill up in a long sweep, since nothing
#                      compacts etcd's history; the quota is an alarm threshold, not a tuning)
#   BENCH_NODE_ARGS    extra flags for every shoal-node (passed as --node-arg=...)
#   BENCH_DATA_ROOT    where the clusters' data directories go (${TMPDIR:-/tmp}; must be a real
#                      disk, not tmpfs, or fsync and the disk figures mean nothing)
#   BENCH_READY_TIMEOUT seconds to wait for a cluster to serve (90)
#   BENCH_SETTLE       seconds to wait after `bench load` (3), BENCH_PAUSE between runs (1)
# Output in OUT_DIR: raw/*.json (one `bench run` report per run, *.err its stderr if any),
# runs.tsv + resources per run, meta.txt, logs/ (the end of each server's log),
# results.csv, results.md, plot-<workload>-<dist>.svg, summary.svg. The markdown is
# printed at the end. A failed run is recorded (with a note) and the sweep goes on.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${BENCH_BIN:-${CARGO_TARGET_DIR:-$root/target}/release}"
duration="${BENCH_DURATION:-10}"
concs="${BENCH_CONCURRENCY:-1 16 64 256}"
workloads="${BENCH_WORKLOADS:-put mixed50 mixed95 get scan}"
dists="${BENCH_DISTS:-uniform zipfian}"
systems="${BENCH_SYSTEMS:-shoal etcd3.4 etcd3.6}"
keys="${BENCH_KEYS:-100000}"
vsize="${BENCH_VALUE_SIZE:-256}"
etcd34="${BENCH_ETCD34:-/usr/bin/etcd}"
etcd36="${BENCH_ETCD36:-$HOME/.cache/shoal-k8s/bin/etcd}"
read -r -a etcd_extra <<<"${BENCH_ETCD_ARGS---quota-backend-bytes=8589934592}"
read -r -a node_extra <<<"${BENCH_NODE_ARGS:-}"
data_root="${BENCH_DATA_ROOT:-${TMPDIR:-/tmp}}"
ready_timeout="${BENCH_READY_TIMEOUT:-90}"
settle="${BENCH_SETTLE:-3}"
pause="${BENCH_PAUSE:-1}"
out="${1:-$root/bench-out/$(date -u +%Y%m%dT%H%M%SZ)}"

log() { printf '[bench-compare %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

for w in $workloads; do
  case "$w" in put | mixed50 | mixed95 | get | scan) ;; *) die "unknown workload '$w' (put mixed50 mixed95 get scan)" ;; esac
done
for s in $systems; do
  case "$s" in shoal | etcd3.4 | etcd3.6) ;; *) die "unknown system '$s' (shoal etcd3.4 etcd3.6)" ;; esac
done
for t in python3 curl timeout pgrep; do command -v "$t" >/dev/null || die "$t not found"; done
case " $systems " in *" shoal "*)
  [ -x "$bin/shoalctl" ] && [ -x "$bin/shoal-node" ] || die "no shoalctl/shoal-node in $bin (set BENCH_BIN)" ;;
*) [ -x "$bin/shoalctl" ] || die "no shoalctl in $bin (set BENCH_BIN)" ;;
esac
[ "$(stat -f -c %T "$data_root")" != tmpfs ] || log "warning: $data_root is tmpfs: fsync is free there and disk bytes are not disk writes (set BENCH_DATA_ROOT)"

mkdir -p "$out/raw" "$out/logs"
out="$(cd "$out" && pwd)"
clk_tck="$(getconf CLK_TCK)"
runs="$out/runs.tsv"
printf 'system\tversion\tworkload\tdistribution\tconcurrency\tjson\tstatus\tcpu_ticks\twrite_bytes\tclk_tck\tnote\n' >"$runs"

# The run's settings and the machine, for the report's header.
{
  echo "date=$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "host_nproc=$(nproc)"
  echo "cpu_model=$(grep -m1 '^model name' /proc/cpuinfo | sed 's/^[^:]*: *//')"
  echo "kernel=$(uname -sr)"
  echo "mem=$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
  commit="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  [ -z "$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null)" ] || commit="$commit (dirty)"
  echo "git_commit=$commit"
  echo "bin=$bin"
  echo "bin_mtime=$(date -u -r "$bin/shoalctl" '+%Y-%m-%d %H:%M:%S UTC' 2>/dev/null || echo unknown)"
  echo "duration=$duration"
  echo "keys=$keys"
  echo "value_size=$vsize"
  echo "concurrency=$concs"
  echo "workloads=$workloads"
  echo "distributions=$dists"
  echo "systems=$systems"
  echo "etcd_args=${etcd_extra[*]+${etcd_extra[*]}}"
  echo "node_args=${node_extra[*]+${node_extra[*]}}"
  echo "data_fs=$(stat -f -c %T "$data_root")"
} >"$out/meta.txt"

# --- cluster state (one cluster at a time), cleaned up by the trap -------------------
kind="" # shoal | etcd while a cluster runs
pg_pid="" # the playground
server_pids=() # the 3 server processes
data="" # the cluster's data directory
bench_pid="" # the running `bench run`

# SIGTERM to PIDS, then wait up to GRACE seconds for them to exit, then SIGKILL.
stop_pids() {
  local grace="$1" p alive deadline
  shift
  [ $# -gt 0 ] || return 0
  kill -TERM "$@" 2>/dev/null || true
  deadline=$((SECONDS + grace))
  while :; do
    alive=()
    for p in "$@"; do kill -0 "$p" 2>/dev/null && alive+=("$p"); done
    [ ${#alive[@]} -gt 0 ] || break
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "SIGKILL to ${alive[*]} (still running after ${grace}s)"
      kill -KILL "${alive[@]}" 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
  for p in "$@"; do wait "$p" 2>/dev/null || true; done
}

# Stops the running cluster, keeps the end of its logs, deletes its data.
stop_cluster() {
  local label="${1:-cluster}" f
  if [ -n "$pg_pid" ]; then
    # The playground stops its nodes (SIGTERM, 10 s grace, SIGKILL) when it gets SIGTERM.
    stop_pids 25 "$pg_pid"
    stop_pids 5 ${server_pids[@]+"${server_pids[@]}"}
  else
    # One member at a time: an etcd leader stopping hands leadership over first, and
    # waits 7 s for that when the member it picked is stopping too.
    for f in ${server_pids[@]+"${server_pids[@]}"}; do stop_pids 20 "$f"; done
  fi
  if [ -n "$data" ] && [ -d "$data" ]; then
    mkdir -p "$out/logs/$label"
    for f in "$data"/*.log "$data"/*.out; do
      [ -f "$f" ] && tail -n 2000 "$f" >"$out/logs/$label/$(basename "$f")"
    done
    rm -rf "$data"
  fi
  kind="" pg_pid="" server_pids=() data=""
}

on_exit() {
  local rc=$?
  trap - EXIT INT TERM
  [ -z "$bench_pid" ] || stop_pids 10 "$bench_pid"
  if [ -n "$kind" ] || [ -n "$data" ]; then
    log "cleaning up"
    stop_cluster interrupted
  fi
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Prints the first of N consecutive free loopback ports at or above FROM.
free_block() {
  python3 - "$1" "$2" <<'EOF'
import socket, sys
n, port = int(sys.argv[1]), int(sys.argv[2])
while port + n < 65536:
    socks = []
    try:
        for p in range(port, port + n):
            s = socket.socket()
            socks.append(s)
            s.bind(("127.0.0.1", p))
        print(port)
        sys.exit(0)
    except OSError:
        port += n
    finally:
        for s in socks:
            s.close()
sys.exit(1)
EOF
}

# base port for the cluster of system number $1 (0, 1, 2)
base_port() {
  if [ -n "${BENCH_BASE_PORT:-}" ]; then echo $((BENCH_BASE_PORT + 20 * $1)); else free_block 6 $((27100 + 20 * $1)); fi
}

# Starts a 3-node Shoal playground on BASE..BASE+5; sets eps, server_pids.
start_shoal() {
  local base="$1" deadline pgargs=() a p
  for a in ${node_extra[@]+"${node_extra[@]}"}; do pgargs+=("--node-arg=$a"); done
  data="$(mktemp -d "$data_root/bench-compare-shoal.XXXXXX")"
  kind=shoal
  "$bin/shoalctl" playground --nodes 3 --base-port "$base" --data-dir "$data" \
    --ready-timeout-secs "$ready_timeout" ${pgargs[@]+"${pgargs[@]}"} >"$data/playground.out" 2>&1 &
  pg_pid=$!
  deadline=$((SECONDS + ready_timeout + 10))
  until grep -q '^ready:' "$data/playground.out"; do
    if ! kill -0 "$pg_pid" 2>/dev/null; then
      log "playground exited before ready: $(tail -n 5 "$data/playground.out" | tr '\n' ' ')"
      return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "playground not ready after ${ready_timeout}s"
      return 1
    fi
    sleep 0.2
  done
  eps="127.0.0.1:$base,127.0.0.1:$((base + 2)),127.0.0.1:$((base + 4))"
  # The nodes are the playground's children; its "node: nI pid=..." lines say the same.
  mapfile -t server_pids < <(pgrep -P "$pg_pid" -x shoal-node || true)
  if [ ${#server_pids[@]} -ne 3 ]; then
    mapfile -t server_pids < <(sed -n 's/^node: .* pid=\([0-9][0-9]*\) .*/\1/p' "$data/playground.out")
  fi
  for p in ${server_pids[@]+"${server_pids[@]}"}; do [ -r "/proc/$p/io" ] || { log "cannot read /proc/$p/io"; return 1; }; done
  [ ${#server_pids[@]} -eq 3 ] || { log "found ${#server_pids[@]} shoal-node processes, not 3"; return 1; }
  log "shoal ready at $eps (pids ${server_pids[*]})"
}

# Starts 3 etcd members of binary $1 on BASE..BASE+5 (client BASE+2i, peer BASE+2i+1).
start_etcd() {
  local etcd="$1" base="$2" i cluster="" deadline p ok pdeath=()
  data="$(mktemp -d "$data_root/bench-compare-etcd.XXXXXX")"
  kind=etcd
  for i in 0 1 2; do cluster+="${cluster:+,}e$i=http://127.0.0.1:$((base + 2 * i + 1))"; done
  # Members die with this script even if it is SIGKILLed (the trap cannot run then).
  setpriv --help 2>/dev/null | grep -q pdeathsig && pdeath=(setpriv --pdeathsig KILL --)
  for i in 0 1 2; do
    ${pdeath[@]+"${pdeath[@]}"} "$etcd" --name "e$i" --data-dir "$data/e$i" \
      --listen-client-urls "http://127.0.0.1:$((base + 2 * i))" \
      --advertise-client-urls "http://127.0.0.1:$((base + 2 * i))" \
      --listen-peer-urls "http://127.0.0.1:$((base + 2 * i + 1))" \
      --initial-advertise-peer-urls "http://127.0.0.1:$((base + 2 * i + 1))" \
      --initial-cluster "$cluster" --initial-cluster-state new \
      --initial-cluster-token "bench-$$-$base" --logger zap \
      ${etcd_extra[@]+"${etcd_extra[@]}"} >"$data/e$i.log" 2>&1 &
    server_pids+=($!)
  done
  eps="127.0.0.1:$base,127.0.0.1:$((base + 2)),127.0.0.1:$((base + 4))"
  deadline=$((SECONDS + ready_timeout))
  while :; do
    ok=1
    for i in 0 1 2; do
      p="${server_pids[$i]}"
      if ! kill -0 "$p" 2>/dev/null; then
        log "etcd e$i exited while starting: $(tail -n 3 "$data/e$i.log" | tr '\n' ' ')"
        return 1
      fi
      curl -sf --max-time 2 "http://127.0.0.1:$((base + 2 * i))/health" | grep -q '"health":"true"' || ok=0
    done
    [ "$ok" = 1 ] && break
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "etcd not healthy after ${ready_timeout}s"
      return 1
    fi
    sleep 0.2
  done
  log "etcd ready at $eps (pids ${server_pids[*]})"
}

# Prints "CPU_TICKS WRITE_BYTES" summed over the servers, or fails if one is gone.
sample() {
  local p ticks=0 bytes=0 t b
  for p in "${server_pids[@]}"; do
    t="$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}')" || return 1
    b="$(awk '/^write_bytes:/ {print $2}' "/proc/$p/io" 2>/dev/null)" || return 1
    [ -n "$t" ] && [ -n "$b" ] || return 1
    ticks=$((ticks + t)) bytes=$((bytes + b))
  done
  echo "$ticks $bytes"
}

wl_args() {
  case "$1" in
    put) echo "--workload custom --read-ratio 0" ;;
    mixed50) echo "--workload custom --read-ratio 0.5" ;;
    mixed95) echo "--workload custom --read-ratio 0.95" ;;
    get) echo "--workload custom --read-ratio 1" ;;
    scan) echo "--workload e --scan-length 100" ;;
  esac
}

# row SYSTEM VERSION WORKLOAD DIST CONC JSON STATUS TICKS BYTES NOTE
row() {
  local note="${10//$'\t'/ }"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "$6" "$7" "$8" "$9" "$clk_tck" "${note//$'\n'/ }" >>"$runs"
}

# Records every run of a system that could not be measured.
skip_all() {
  local sys="$1" ver="$2" why="$3" w d c
  for w in $workloads; do for d in $dists; do for c in $concs; do
    row "$sys" "$ver" "$w" "$d" "$c" - skipped "" "" "$why"
  done; done; done
}

per_sys=$(($(wc -w <<<"$workloads") * $(wc -w <<<"$dists") * $(wc -w <<<"$concs")))
nruns=$(($(wc -w <<<"$systems") * per_sys))
log "out: $out; $nruns runs of ${duration}s; $keys keys of $vsize B"
i_sys=-1
n=0
for sys in $systems; do
  i_sys=$((i_sys + 1))
  case "$sys" in
    shoal) target=shoal; ver="$("$bin/shoal-node" --version 2>/dev/null | awk '{print $2}') @ $(sed -n 's/^git_commit=//p' "$out/meta.txt")" ;;
    etcd3.4 | etcd3.6)
      target=etcd
      [ "$sys" = etcd3.4 ] && etcd="$etcd34" || etcd="$etcd36"
      if [ ! -x "$etcd" ]; then
        log "warning: $sys: no etcd binary at $etcd; skipping it"
        skip_all "$sys" "" "no etcd binary at $etcd"
        n=$((n + per_sys))
        continue
      fi
      ver="$("$etcd" --version | sed -n 's/^etcd Version: //p')"
      [[ "$ver" == "${sys#etcd}"* ]] || log "warning: $etcd is etcd $ver, not ${sys#etcd}"
      ;;
  esac
  echo "version_$sys=$ver" >>"$out/meta.txt"
  if ! base="$(base_port "$i_sys")"; then
    log "$sys: no free ports"
    skip_all "$sys" "$ver" "no free ports"
    n=$((n + per_sys))
    continue
  fi
  log "== $sys $ver: starting a 3-member cluster on ports $base-$((base + 5))"
  if [ "$target" = shoal ]; then started=start_shoal; else started="start_etcd $etcd"; fi
  if ! $started "$base"; then
    stop_cluster "$sys"
    skip_all "$sys" "$ver" "cluster did not start (see logs/$sys)"
    n=$((n + per_sys))
    continue
  fi
  log "$sys: loading $keys keys of $vsize B (concurrency 64)"
  if ! load_out="$(timeout -k 5 600 "$bin/shoalctl" --endpoints "$eps" bench load --target "$target" \
    --keys "$keys" --value-size "$vsize" --concurrency 64 2>&1)"; then
    log "$sys: bench load failed: $load_out"
    stop_cluster "$sys"
    skip_all "$sys" "$ver" "bench load failed: $(tail -n 1 <<<"$load_out")"
    n=$((n + per_sys))
    continue
  fi
  log "$sys: $load_out"
  echo "load_$sys=$load_out" >>"$out/meta.txt"
  sleep "$settle"
  for w in $workloads; do
    for d in $dists; do
      for c in $concs; do
        n=$((n + 1))
        name="$sys-$w-$d-c$c"
        json="raw/$name.json"
        log "[$n/$nruns] $sys $w $d concurrency $c"
        before="$(sample)" || before=""
        rc=0
        # In the background so that a signal to this script interrupts `wait` and the
        # trap runs at once (it stops the bench too), not only when the run is over.
        # shellcheck disable=SC2046
        timeout -k 5 $((duration + 120)) "$bin/shoalctl" --endpoints "$eps" --output json bench run --target "$target" \
          $(wl_args "$w") --distribution "$d" --concurrency "$c" --keys "$keys" --value-size "$vsize" \
          --duration "$duration" >"$out/$json" 2>"$out/raw/$name.err" &
        bench_pid=$!
        wait "$bench_pid" || rc=$?
        bench_pid=""
        after="$(sample)" || after=""
        [ -s "$out/raw/$name.err" ] || rm -f "$out/raw/$name.err"
        ticks="" bytes="" note=""
        if [ -n "$before" ] && [ -n "$after" ]; then
          read -r t0 b0 <<<"$before"
          read -r t1 b1 <<<"$after"
          ticks=$((t1 - t0)) bytes=$((b1 - b0))
        else
          note="a server process is gone; "
        fi
        if [ "$rc" -ne 0 ] || ! python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$out/$json" 2>/dev/null; then
          err="$(tail -n 1 "$out/raw/$name.err" 2>/dev/null || true)"
          log "   failed (exit $rc): $err"
          row "$sys" "$ver" "$w" "$d" "$c" "$json" failed "$ticks" "$bytes" "${note}run failed (exit $rc): $err"
        else
          log "   $(python3 -c 'import json,sys; t=json.load(open(sys.argv[1])); print("%d ops/s, p99 %.2f ms, errors %d" % (t["total"]["ops_per_sec"], t["total"]["p99_us"]/1000, t["errors"]))' "$out/$json")"
          row "$sys" "$ver" "$w" "$d" "$c" "$json" ok "$ticks" "$bytes" "${note%; }"
        fi
        sleep "$pause"
      done
    done
  done
  log "== $sys: stopping"
  stop_cluster "$sys"
done

log "writing the report"
python3 "$root/scripts/bench_report.py" "$out"
log "done: $out/results.md, results.csv, *.svg"
cat "$out/results.md"
