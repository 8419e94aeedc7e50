#!/usr/bin/env bash
# Builds (once, cached) and runs a real Kubernetes control plane on loopback, for
# Shoal's end-to-end tests: etcd, kube-apiserver, kube-controller-manager and
# kube-scheduler, all listening on 127.0.0.1 on free ports. There are no nodes and
# no kubelet: a test may register a Node object itself and play the node agent.
#
# Usage:
#   scripts/k8s-control-plane.sh build       build the binaries if needed; print their directory
#   scripts/k8s-control-plane.sh start DIR   build if needed, start the control plane in DIR
#                                            and wait until it is ready (idempotent)
#   scripts/k8s-control-plane.sh stop DIR    stop what `start DIR` started (safe to repeat)
#
# Binaries: built with Go from scripts/k8s-control-plane/go.mod (k8s.io/kubernetes
# v1.34.4 and go.etcd.io/etcd/server/v3, see its `tool` block) into
# $SHOAL_K8S_DIR/bin (default ~/.cache/shoal-k8s/bin): etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl. The Go module and build caches
# live in ~/.cache/shoal-go/{mod,build}. $SHOAL_K8S_DIR/bin/.go-mod.sha256 holds the
# hash of go.mod+go.sum (+ the -ldflags that set Kubernetes' version) the binaries
# were built from; they are rebuilt only when one is missing or that hash changed.
# A cold build takes many minutes (a relink with a warm Go cache about 30 s). Go is
# $GO (default /usr/local/go/bin/go, else the one on PATH), run with
# GOFLAGS=-mod=mod GOTOOLCHAIN=local.
#
# What `start DIR` leaves in DIR:
#   pki/                 CA, API server serving cert, client certs (admin,
#                        controller-manager, scheduler), service-account key pair,
#                        front-proxy CA + client cert (aggregation layer); made with
#                        openssl once per DIR, reused on a restart
#   flexvolume/          kube-controller-manager's flex volume dir (empty; else it
#                        would create /usr/libexec/kubernetes/...)
#   etcd/                etcd's data
#   <name>.log <name>.pid  for etcd, kube-apiserver, kube-controller-manager, kube-scheduler
#   kubeconfig           admin kubeconfig (CN=kubernetes-admin, O=system:masters)
#   controller-manager.kubeconfig, scheduler.kubeconfig
#   env                  KEY=VALUE lines (no quotes): KUBECONFIG, SHOAL_K8S_BIN, APISERVER
# and prints `control plane ready: kubeconfig=DIR/kubeconfig` once the API server
# is ready and the controller-manager has made the `default` ServiceAccount and the
# `kube-root-ca.crt` ConfigMap in namespace default. On failure it prints the tail
# of the relevant log, stops what it started and exits non-zero.
#
# Env:
#   SHOAL_K8S_DIR            cache root for the binaries (default ~/.cache/shoal-k8s)
#   SHOAL_K8S_START_TIMEOUT  seconds `start` waits for readiness (default 120)
#   SHOAL_K8S_WATCH_PID      optional: a pid (e.g. the test process); when it exits,
#                            a small watchdog runs `stop DIR`
#
# Notes: the service range is 10.96.0.0/16 (never contacted). The API server
# advertises 127.0.0.1 with --endpoint-reconciler-type=none because Endpoints may not
# hold loopback addresses. etcd runs with --unsafe-no-fsync: the data is throwaway.
set -euo pipefail

SELF="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
MOD_DIR="$(dirname "$SELF")/k8s-control-plane"
K8S_DIR="${SHOAL_K8S_DIR:-$HOME/.cache/shoal-k8s}"
BIN="$K8S_DIR/bin"
GO_CACHE_ROOT="$HOME/.cache/shoal-go"
STAMP="$BIN/.go-mod.sha256"
START_TIMEOUT="${SHOAL_K8S_START_TIMEOUT:-120}"

# go package -> binary name (the etcd server's main package builds as `server`).
GO_PACKAGES=(
  go.etcd.io/etcd/server/v3
  k8s.io/kubernetes/cmd/kube-apiserver
  k8s.io/kubernetes/cmd/kube-controller-manager
  k8s.io/kubernetes/cmd/kube-scheduler
  k8s.io/kubernetes/cmd/kubectl
)
BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl)
# Started in this order, stopped in the reverse one.
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler)

SERVICE_CIDR="10.96.0.0/16"
SERVICE_FIRST_IP="10.96.0.1"
SA_ISSUER="https://kubernetes.default.svc.cluster.local"

log() { echo "k8s-control-plane: $*" >&2; }
die() { log "$*"; exit 1; }

# ---------------------------------------------------------------------------- build

# `go build` of a module dependency leaves Kubernetes' version variables at their
# placeholders (v0.0.0-master+$Format:%H$), which kubectl, Helm and clients that check
# the server version reject; Kubernetes' own build sets them with -X, so do we.
k8s_ldflags() {
  local v major minor p ldflags=""
  v="$(awk '$1 == "k8s.io/kubernetes" { print $2 }' "$MOD_DIR/go.mod")"
  [[ "$v" =~ ^v([0-9]+)\.([0-9]+)\.[0-9]+$ ]] || die "no k8s.io/kubernetes vX.Y.Z in $MOD_DIR/go.mod"
  major="${BASH_REMATCH[1]}" minor="${BASH_REMATCH[2]}"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $p.gitVersion=$v -X $p.gitMajor=$major -X $p.gitMinor=$minor"
    ldflags+=" -X $p.gitTreeState=clean -X $p.gitCommit="
  done
  echo "${ldflags# }"
}

# What the binaries are built from: go.mod, go.sum and the ldflags.
mod_hash() { { cat "$MOD_DIR/go.mod" "$MOD_DIR/go.sum"; k8s_ldflags; } | sha256sum | cut -c1-64; }

built_ok() {
  local b
  for b in "${BINARIES[@]}"; do [ -x "$BIN/$b" ] || return 1; done
  [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(mod_hash)" ]
}

ensure_built() {
  built_ok && return 0
  mkdir -p "$K8S_DIR"
  # One build at a time (tests may start several control planes in parallel).
  exec 9>"$K8S_DIR/.build.lock"
  flock 9
  if built_ok; then exec 9>&-; return 0; fi
  local go="${GO:-/usr/local/go/bin/go}"
  [ -x "$go" ] || go="$(command -v go)" || die "Go not found (set GO=/path/to/go)"
  local staging="$K8S_DIR/bin.new"
  rm -rf "$staging"
  mkdir -p "$staging" "$GO_CACHE_ROOT/mod" "$GO_CACHE_ROOT/build"
  log "building ${BINARIES[*]} into $BIN (a cold build takes a long time)..."
  if ! (cd "$MOD_DIR" && GOMODCACHE="$GO_CACHE_ROOT/mod" GOCACHE="$GO_CACHE_ROOT/build" \
        GOFLAGS=-mod=mod GOTOOLCHAIN=local "$go" build -ldflags "$(k8s_ldflags)" -o "$staging/" "${GO_PACKAGES[@]}") >&2; then
    rm -rf "$staging"
    die "go build failed"
  fi
  mv "$staging/server" "$staging/etcd"
  mkdir -p "$BIN"
  local b
  for b in "${BINARIES[@]}"; do mv -f "$staging/$b" "$BIN/$b"; done
  rm -rf "$staging" "$BIN/server"
  # Hashed after the build: -mod=mod may have tidied go.mod/go.sum.
  mod_hash >"$STAMP"
  exec 9>&-
  log "built into $BIN"
}

# ---------------------------------------------------------------------------- processes

# The pid in DIR/<name>.pid if that process is alive and really is <name> started
# for DIR (its command line names the binary and DIR), so a recycled pid is never hit.
live_pid() {
  local dir="$1" name="$2" pid
  [ -f "$dir/$name.pid" ] || return 1
  pid="$(cat "$dir/$name.pid" 2>/dev/null)" || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  local -a argv
  mapfile -d '' -t argv 2>/dev/null <"/proc/$pid/cmdline" || return 1
  ((${#argv[@]} > 0)) && [ "${argv[0]##*/}" = "$name" ] || return 1
  case " ${argv[*]} " in *"$dir/"*) echo "$pid" ;; *) return 1 ;; esac
}

all_running() {
  local dir="$1" c
  for c in "${COMPONENTS[@]}"; do live_pid "$dir" "$c" >/dev/null || return 1; done
}

# launch DIR NAME ARGS...: starts $BIN/NAME in the background, detached from our
# stdio (a caller reading our output must see EOF when we exit). The background job
# is a fork of this shell, then nohup, and only then NAME; live_pid knows a
# component by its command line, so launch returns once the job has become NAME (or
# has exited). Otherwise a loaded machine shows wait_for a fork not yet exec'd, and
# a component that is starting passes for one that died (CI saw this).
launch() {
  local dir="$1" name="$2" pid argv0 state give_up
  shift 2
  nohup "$BIN/$name" "$@" </dev/null >"$dir/$name.log" 2>&1 &
  pid=$!
  give_up=$((SECONDS + 30))
  while ((SECONDS < give_up)); do
    state="$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$pid/status" 2>/dev/null)"
    [ -n "$state" ] && [ "$state" != Z ] || break # gone, or exited and not yet reaped
    argv0="$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | head -n 1)"
    [ "${argv0##*/}" = "$name" ] && break
    sleep 0.02
  done
  echo "$pid" >"$dir/$name.pid"
}

cmd_stop() {
  local dir="$1" c pid pids=() i
  [ -d "$dir" ] || return 0
  dir="$(cd "$dir" && pwd)"
  # The watchdog (if any); it may be us, running `stop` after its watched pid died.
  if [ -f "$dir/watchdog.pid" ]; then
    pid="$(cat "$dir/watchdog.pid" 2>/dev/null || true)"
    rm -f "$dir/watchdog.pid"
    if [[ "$pid" =~ ^[0-9]+$ ]] && [ "$pid" != "$$" ] \
        && tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF "shoal-k8s-watchdog"; then
      kill -TERM "$pid" 2>/dev/null || true
    fi
  fi
  for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
    c="${COMPONENTS[i]}"
    if pid="$(live_pid "$dir" "$c")"; then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$c:$pid")
    fi
  done
  # Up to 10 s for all of them to exit, then SIGKILL.
  local deadline=$((SECONDS + 10)) left
  while :; do
    left=()
    for c in ${pids[@]+"${pids[@]}"}; do live_pid "$dir" "${c%%:*}" >/dev/null && left+=("$c"); done
    ((${#left[@]} == 0)) && break
    if ((SECONDS >= deadline)); then
      for c in "${left[@]}"; do
        log "${c%%:*} (pid ${c##*:}) ignored SIGTERM; sending SIGKILL"
        kill -KILL "${c##*:}" 2>/dev/null || true
      done
      sleep 0.2
      break
    fi
    sleep 0.1
  done
  # Dead, but maybe not yet reaped by whoever inherited them: give that up to 2 s,
  # so that `pgrep` right after `stop` finds nothing.
  deadline=$((SECONDS + 2))
  for c in ${pids[@]+"${pids[@]}"}; do
    while [ -e "/proc/${c##*:}" ] && ((SECONDS < deadline)); do sleep 0.05; done
  done
  for c in "${COMPONENTS[@]}"; do rm -f "$dir/$c.pid"; done
  rm -f "$dir/env"
}

# ---------------------------------------------------------------------------- pki

# new_ca PKI NAME CN: a self-signed CA, pki/NAME.{key,crt}.
new_ca() {
  local pki="$1" name="$2" cn="$3"
  openssl genrsa -out "$pki/$name.key" 2048 2>/dev/null
  openssl req -x509 -new -key "$pki/$name.key" -subj "/CN=$cn" -days 3650 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    -out "$pki/$name.crt"
}

# sign PKI CA NAME SUBJECT EXTENSIONS: key pki/NAME.key and cert pki/NAME.crt
# signed by the CA pki/CA.{crt,key}.
sign() {
  local pki="$1" ca="$2" name="$3" subj="$4" ext="$5"
  openssl genrsa -out "$pki/$name.key" 2048 2>/dev/null
  openssl req -new -key "$pki/$name.key" -subj "$subj" -out "$pki/$name.csr"
  openssl x509 -req -in "$pki/$name.csr" -CA "$pki/$ca.crt" -CAkey "$pki/$ca.key" \
    -CAcreateserial -CAserial "$pki/$ca.srl" -days 3650 -sha256 \
    -extfile <(printf '%s\n' "$ext") -out "$pki/$name.crt" 2>/dev/null
  rm -f "$pki/$name.csr"
}

gen_pki() {
  local dir="$1" pki="$1/pki"
  [ -f "$pki/.complete" ] && return 0
  rm -rf "$pki"
  mkdir -p "$pki"
  chmod 700 "$pki"
  new_ca "$pki" ca shoal-k8s-ca
  # Separate CA for the aggregation layer's front proxy, as kubeadm does: only
  # its certs may assert X-Remote-User headers.
  new_ca "$pki" front-proxy-ca shoal-k8s-front-proxy-ca
  local client="basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
  sign "$pki" ca apiserver "/CN=kube-apiserver" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:$SERVICE_FIRST_IP"
  sign "$pki" ca admin "/O=system:masters/CN=kubernetes-admin" "$client"
  sign "$pki" ca controller-manager "/CN=system:kube-controller-manager" "$client"
  sign "$pki" ca scheduler "/CN=system:kube-scheduler" "$client"
  sign "$pki" front-proxy-ca front-proxy-client "/CN=front-proxy-client" "$client"
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  touch "$pki/.complete"
}

# write_kubeconfig FILE USER SERVER PKI_NAME: certs embedded, so the file stands alone.
write_kubeconfig() {
  local file="$1" user="$2" server="$3" pki="$4"
  cat >"$file.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: shoal-k8s
  cluster:
    server: $server
    certificate-authority-data: $(base64 -w0 <"$pki/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 <"$pki/$user.crt")
    client-key-data: $(base64 -w0 <"$pki/$user.key")
contexts:
- name: $user@shoal-k8s
  context:
    cluster: shoal-k8s
    user: $user
current-context: $user@shoal-k8s
EOF
  chmod 600 "$file.tmp"
  mv -f "$file.tmp" "$file"
}

# ---------------------------------------------------------------------------- start

# N distinct free TCP ports on 127.0.0.1 (held open together while chosen).
free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

DEADLINE=0
FAILED_LOG=""

# wait_for DIR NAME WHAT CMD...: polls CMD until it succeeds. Fails (FAILED_LOG=NAME)
# when the deadline passes or any started component has died.
wait_for() {
  local dir="$1" name="$2" what="$3" c
  shift 3
  until "$@" >/dev/null 2>&1; do
    for c in "${COMPONENTS[@]}"; do
      if [ -f "$dir/$c.pid" ] && ! live_pid "$dir" "$c" >/dev/null; then
        log "$c exited while waiting for $what"
        FAILED_LOG="$c"
        return 1
      fi
    done
    if ((SECONDS >= DEADLINE)); then
      log "timed out waiting for $what"
      FAILED_LOG="$name"
      return 1
    fi
    sleep 0.25
  done
}

kubectl_admin() { "$BIN/kubectl" --kubeconfig "$DIR/kubeconfig" --request-timeout=5s "$@"; }

etcd_healthy() { curl -sf --max-time 2 "http://127.0.0.1:$1/health" | grep -q '"health":"true"'; }

https_ok() {
  curl -sf --max-time 3 --cacert "$DIR/pki/ca.crt" --cert "$DIR/pki/admin.crt" \
    --key "$DIR/pki/admin.key" "$1" | grep -qx ok
}

# kube-controller-manager / kube-scheduler serve /healthz anonymously on their
# secure port, with a self-signed cert.
healthz_ok() { curl -skf --max-time 3 "https://127.0.0.1:$1/healthz" | grep -qx ok; }

# Readiness of a running control plane: the checks `start` promises.
wait_ready() {
  local api="$1"
  wait_for "$DIR" kube-apiserver "kube-apiserver /readyz" https_ok "$api/readyz" &&
    wait_for "$DIR" kube-apiserver "kubectl get --raw /readyz" kubectl_admin get --raw /readyz &&
    wait_for "$DIR" kube-controller-manager "ServiceAccount default/default" \
      kubectl_admin -n default get serviceaccount default &&
    wait_for "$DIR" kube-controller-manager "ConfigMap default/kube-root-ca.crt" \
      kubectl_admin -n default get configmap kube-root-ca.crt
}

# One attempt at starting everything on fresh free ports; non-zero on failure
# (FAILED_LOG names the log to show; see port_race for a lost race for a port).
start_components() {
  local pki="$DIR/pki" etcd_port peer_port api_port kcm_port sched_port
  read -r etcd_port peer_port api_port kcm_port sched_port <<<"$(free_ports 5)" || true
  [ -n "$sched_port" ] || { log "could not pick free ports"; return 1; }
  local api="https://127.0.0.1:$api_port"
  write_kubeconfig "$DIR/kubeconfig" admin "$api" "$pki"
  write_kubeconfig "$DIR/controller-manager.kubeconfig" controller-manager "$api" "$pki"
  write_kubeconfig "$DIR/scheduler.kubeconfig" scheduler "$api" "$pki"

  launch "$DIR" etcd \
    --name=shoal-k8s \
    --data-dir="$DIR/etcd" \
    --listen-client-urls="http://127.0.0.1:$etcd_port" \
    --advertise-client-urls="http://127.0.0.1:$etcd_port" \
    --listen-peer-urls="http://127.0.0.1:$peer_port" \
    --initial-advertise-peer-urls="http://127.0.0.1:$peer_port" \
    --initial-cluster="shoal-k8s=http://127.0.0.1:$peer_port" \
    --unsafe-no-fsync=true \
    --log-level=warn
  wait_for "$DIR" etcd "etcd /health" etcd_healthy "$etcd_port" || return 1

  launch "$DIR" kube-apiserver \
    --etcd-servers="http://127.0.0.1:$etcd_port" \
    --bind-address=127.0.0.1 \
    --secure-port="$api_port" \
    --advertise-address=127.0.0.1 \
    --endpoint-reconciler-type=none \
    --cert-dir="$DIR/kube-apiserver-certs" \
    --tls-cert-file="$pki/apiserver.crt" \
    --tls-private-key-file="$pki/apiserver.key" \
    --client-ca-file="$pki/ca.crt" \
    --authorization-mode=Node,RBAC \
    --enable-admission-plugins=NodeRestriction \
    --service-account-issuer="$SA_ISSUER" \
    --service-account-key-file="$pki/sa.pub" \
    --service-account-signing-key-file="$pki/sa.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --allow-privileged=true \
    --requestheader-client-ca-file="$pki/front-proxy-ca.crt" \
    --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User \
    --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$pki/front-proxy-client.crt" \
    --proxy-client-key-file="$pki/front-proxy-client.key"
  wait_for "$DIR" kube-apiserver "kube-apiserver /readyz" https_ok "$api/readyz" || return 1

  launch "$DIR" kube-controller-manager \
    --kubeconfig="$DIR/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$DIR/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$DIR/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 \
    --secure-port="$kcm_port" \
    --cert-dir="$DIR/kube-controller-manager-certs" \
    --leader-elect=false \
    --use-service-account-credentials=true \
    --service-account-private-key-file="$pki/sa.key" \
    --root-ca-file="$pki/ca.crt" \
    --cluster-signing-cert-file="$pki/ca.crt" \
    --cluster-signing-key-file="$pki/ca.key" \
    --flex-volume-plugin-dir="$DIR/flexvolume" \
    --controllers='*,-node-ipam-controller,-cloud-node-lifecycle-controller,-service-lb-controller,-node-route-controller'
  launch "$DIR" kube-scheduler \
    --kubeconfig="$DIR/scheduler.kubeconfig" \
    --authentication-kubeconfig="$DIR/scheduler.kubeconfig" \
    --authorization-kubeconfig="$DIR/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 \
    --secure-port="$sched_port" \
    --cert-dir="$DIR/kube-scheduler-certs" \
    --leader-elect=false
  wait_for "$DIR" kube-controller-manager "kube-controller-manager /healthz" healthz_ok "$kcm_port" &&
    wait_for "$DIR" kube-scheduler "kube-scheduler /healthz" healthz_ok "$sched_port" &&
    wait_ready "$api" || return 1

  cat >"$DIR/env.tmp" <<EOF
KUBECONFIG=$DIR/kubeconfig
SHOAL_K8S_BIN=$BIN
APISERVER=$api
EOF
  mv -f "$DIR/env.tmp" "$DIR/env"
}

port_race() {
  local c
  for c in "${COMPONENTS[@]}"; do
    [ -f "$DIR/$c.log" ] && grep -q "address already in use" "$DIR/$c.log" && return 0
  done
  return 1
}

start_watchdog() {
  local pid="$1"
  [[ "$pid" =~ ^[0-9]+$ ]] || die "SHOAL_K8S_WATCH_PID must be a pid"
  if [ -f "$DIR/watchdog.pid" ] && kill -0 "$(cat "$DIR/watchdog.pid")" 2>/dev/null; then return 0; fi
  nohup bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; exec "$2" stop "$3"' \
    shoal-k8s-watchdog "$pid" "$SELF" "$DIR" </dev/null >>"$DIR/watchdog.log" 2>&1 &
  echo $! >"$DIR/watchdog.pid"
}

cmd_start() {
  mkdir -p "$1"
  DIR="$(cd "$1" && pwd)"
  ensure_built
  DEADLINE=$((SECONDS + START_TIMEOUT))

  # Already running here: only check that it is (still) ready.
  if all_running "$DIR" && [ -f "$DIR/env" ]; then
    local api
    api="$(sed -n 's/^APISERVER=//p' "$DIR/env")"
    if ! wait_ready "$api"; then
      log "--- tail of $DIR/$FAILED_LOG.log"
      tail -n 40 "$DIR/$FAILED_LOG.log" >&2 || true
      exit 1
    fi
  else
    cmd_stop "$DIR" # leftovers of an earlier, partial start
    command -v openssl >/dev/null || die "openssl not found"
    command -v python3 >/dev/null || die "python3 not found"
    command -v curl >/dev/null || die "curl not found"
    gen_pki "$DIR"
    local attempt=1
    while :; do
      FAILED_LOG=""
      if start_components; then break; fi
      if port_race && ((attempt < 3)) && ((SECONDS < DEADLINE)); then
        log "a port was taken meanwhile; retrying on other ports"
        cmd_stop "$DIR"
        attempt=$((attempt + 1))
        continue
      fi
      if [ -n "$FAILED_LOG" ]; then
        log "--- tail of $DIR/$FAILED_LOG.log"
        tail -n 40 "$DIR/$FAILED_LOG.log" >&2 || true
      fi
      cmd_stop "$DIR"
      die "start failed; logs are in $DIR"
    done
  fi
  if [ -n "${SHOAL_K8S_WATCH_PID:-}" ]; then start_watchdog "$SHOAL_K8S_WATCH_PID"; fi
  echo "control plane ready: kubeconfig=$DIR/kubeconfig"
}

# ---------------------------------------------------------------------------- main

usage() { sed -n '/^# Usage:/,/^#$/p' "$SELF" | sed 's/^# \{0,1\}//' >&2; exit 2; }

case "${1:-}" in
  build)
    [ $# -eq 1 ] || usage
    ensure_built
    echo "$BIN"
    ;;
  start)
    [ $# -eq 2 ] || usage
    cmd_start "$2"
    ;;
  stop)
    [ $# -eq 2 ] || usage
    cmd_stop "$2"
    ;;
  *) usage ;;
esac
