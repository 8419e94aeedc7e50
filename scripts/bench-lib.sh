# bench-lib.sh: playground helpers shared by the bench scripts (sourced, not run).
#
# The caller sets: bench_name (log prefix), bin (dir with shoalctl and
# shoal-node), port (the playground's base port), out (where outputs go).
# `start` sets endpoints and pids; `stop` ends the playground it started.

pg_pid=""
log() { printf '[%s %s] %s\n' "$bench_name" "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

stop() {
  [ -n "$pg_pid" ] || return 0
  kill -INT "$pg_pid" 2>/dev/null || true
  for _ in $(seq 1 300); do kill -0 "$pg_pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pg_pid" 2>/dev/null || true
  pg_pid=""
}

# start NAME DATA_DIR [node args...]: a playground of $bin on DATA_DIR, waits for `ready:`.
start() {
  local name="$1" dir="$2"; shift 2
  local args=()
  for a in "$@"; do args+=("--node-arg=$a"); done
  mkdir -p "$dir"
  "$bin/shoalctl" playground --data-dir "$dir" --base-port "$port" --ready-timeout-secs 600 "${args[@]}" \
    >"$out/$name.playground.out" 2>&1 &
  pg_pid=$!
  for _ in $(seq 1 6000); do
    grep -q '^ready:' "$out/$name.playground.out" && break
    kill -0 "$pg_pid" 2>/dev/null || die "$name: playground exited: $(tail -3 "$out/$name.playground.out")"
    sleep 0.1
  done
  grep -q '^ready:' "$out/$name.playground.out" || die "$name: not ready"
  grep -q '^node: n3 ' "$out/$name.playground.out" || sleep 1
  endpoints="$(sed -n 's/^ready: endpoints=//p' "$out/$name.playground.out")"
  pids="$(grep -o 'pid=[0-9]*' "$out/$name.playground.out" | cut -d= -f2 | tr '\n' ' ')"
}

# start_on_copy NAME RUN: `start` NAME on a fresh copy, $work/RUN, of bench-ab.sh's
# data set $work/$ds; on exit the playground stops and the copy goes.
start_on_copy() {
  local run="$work/$2"
  [ -d "$work/$ds" ] || die "no data set $work/$ds: run scripts/bench-ab.sh first"
  # shellcheck disable=SC2064 # expanded now: $run is local
  trap "stop; rm -rf '$run'" EXIT
  rm -rf "$run"; cp -a "$work/$ds" "$run"
  start "$1" "$run"
}

# metric PORT NAME: one unlabelled metric of the node whose status port is PORT.
metric() { curl -sf "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m { print $2 }'; }
regions() { metric $((port + 1)) shoal_store_regions; }
asleep() { metric $((port + 1)) shoal_store_hibernated_regions; }
# leaders: each node's leader count; leader_spread: the most minus the fewest.
leaders() { for p in $((port + 1)) $((port + 3)) $((port + 5)); do metric "$p" shoal_store_leaders; done | paste -sd' '; }
leader_spread() { leaders | tr ' ' '\n' | sort -n | sed -n '1p;$p' | paste -sd' ' | awk '{ print $2 - $1 }'; }
