#!/usr/bin/env bash
# End-to-end test of Shoal on a real Kubernetes cluster, for users.
#
#   CI DOES NOT RUN THIS SCRIPT: it has no kind (nor a registry to pull kind's
#   node image from). CI covers the chart with tests/tests/helm.rs (helm lint,
#   helm template + kubernetes-validate, the example against the CRD schema), the
#   operator on a real control plane built from source with our own node agent
#   (tests/tests/kubernetes.rs), and the images with scripts/docker-images.sh
#   (built offline and run); this script is the check with real images on kind.
#
# Needs: docker (with BuildKit), kind, kubectl, helm (v3). Run from anywhere:
#
#   tests/kind/e2e.sh
#
# What it does: creates a kind cluster, builds both images from docker/, loads
# them into kind, installs charts/shoal-operator, applies examples/kvcluster.yaml
# (with smaller CPU/memory requests so it fits on a laptop), waits until the
# KvCluster is Available, writes keys with shoalctl (run inside a storage pod,
# where the stores' advertised addresses resolve), scales to 5 stores and back
# to 3 with `kubectl scale kvcluster/demo`, waiting for each, reads every key
# back and checks the status. The kind cluster is deleted on exit, pass or fail.
#
# Environment:
#   SHOAL_KIND_CLUSTER   name of the kind cluster (default shoal-e2e); it must not exist yet
#   SHOAL_E2E_KEEP=1     keep the cluster after the run (to poke around)
#   SHOAL_E2E_SKIP_BUILD=1  do not build the images (they exist in the local Docker already)
#   SHOAL_E2E_TIMEOUT    each wait's timeout in seconds (default 600)
#   SHOAL_E2E_KEYS       keys written and read back (default 100)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CLUSTER="${SHOAL_KIND_CLUSTER:-shoal-e2e}"
CONTEXT="kind-${CLUSTER}"
KEEP="${SHOAL_E2E_KEEP:-0}"
SKIP_BUILD="${SHOAL_E2E_SKIP_BUILD:-0}"
TIMEOUT="${SHOAL_E2E_TIMEOUT:-600}"
KEYS="${SHOAL_E2E_KEYS:-100}"
VERSION="0.1.0"
NODE_IMAGE="shoal/shoal-node:${VERSION}"
OPERATOR_IMAGE="shoal/shoal-operator:${VERSION}"
OPERATOR_NS="shoal-system"
NS="shoal-e2e"
KVC="demo"

created_cluster=0
workdir="$(mktemp -d)"

log() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'e2e: FAIL: %s\n' "$*" >&2; exit 1; }
k() { kubectl --context "$CONTEXT" "$@"; }
kn() { k -n "$NS" "$@"; }

diagnostics() {
  log "diagnostics"
  k get nodes -o wide || true
  k -n "$OPERATOR_NS" get all || true
  kn get kvclusters,statefulsets,pods,pvc,services,pdb -o wide || true
  kn get kvcluster "$KVC" -o yaml || true
  kn get events --sort-by=.lastTimestamp | tail -n 50 || true
  k -n "$OPERATOR_NS" logs deployment/shoal-operator --all-containers --tail=200 || true
}

cleanup() {
  local rc=$?
  if [ "$rc" -ne 0 ] && [ "$created_cluster" -eq 1 ]; then diagnostics; fi
  if [ "$created_cluster" -eq 1 ]; then
    if [ "$KEEP" = "1" ]; then
      log "keeping kind cluster ${CLUSTER} (delete it with: kind delete cluster --name ${CLUSTER})"
    else
      log "deleting kind cluster ${CLUSTER}"
      kind delete cluster --name "$CLUSTER" || true
    fi
  fi
  rm -rf "$workdir"
  if [ "$rc" -eq 0 ]; then echo "e2e: PASS" >&2; fi
  exit "$rc"
}
trap cleanup EXIT

# Polls "$@" (a command) once a second until it succeeds, or dies after $TIMEOUT s.
wait_until() {
  local what="$1"
  shift
  local deadline=$((SECONDS + TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then die "timed out after ${TIMEOUT}s waiting for ${what}"; fi
    sleep 2
  done
}

# shoalctl inside the first storage pod: the client discovers every store from
# there and routes to region leaders by their in-cluster addresses.
shoalctl() { kn exec "${KVC}-0" -- shoalctl "$@"; }

count_words() { wc -w | tr -d ' '; }

# True when the KvCluster has settled at $1 stores: ready pods, $1 stores Up, no
# scaling operation in progress, condition Available=True.
settled_at() {
  local n="$1" ready up scaling available
  ready="$(kn get kvcluster "$KVC" -o jsonpath='{.status.readyReplicas}')"
  up="$(kn get kvcluster "$KVC" -o jsonpath='{.status.stores[?(@.state=="Up")].pod}' | count_words)"
  scaling="$(kn get kvcluster "$KVC" -o jsonpath='{.status.scaling}')"
  available="$(kn get kvcluster "$KVC" -o jsonpath='{.status.conditions[?(@.type=="Available")].status}')"
  [ "$ready" = "$n" ] && [ "$up" = "$n" ] && [ -z "$scaling" ] && [ "$available" = "True" ]
}

# True when no PVC of a pod with ordinal >= $1 is left.
no_pvcs_from() {
  local from="$1" name ord
  for name in $(kn get pvc -o name); do
    ord="${name##*-}"
    case "$ord" in '' | *[!0-9]*) continue ;; esac
    if [ "$ord" -ge "$from" ]; then return 1; fi
  done
}

scale_to() {
  local n="$1"
  log "kubectl scale kvcluster/${KVC} --replicas=${n}"
  kn scale kvcluster "$KVC" --replicas="$n"
  wait_until "kvcluster/${KVC} settled at ${n} stores" settled_at "$n"
  kn get kvcluster "$KVC" -o wide
  [ "$(kn get statefulset "$KVC" -o jsonpath='{.spec.replicas}')" = "$n" ] || die "statefulset/${KVC} does not have ${n} replicas"
}

check_keys() {
  log "reading ${KEYS} keys back"
  local got
  # One exec; the pod's shell compares every value and prints what differs.
  # shellcheck disable=SC2016 # expanded by the pod's shell, not this one
  kn exec "${KVC}-0" -- sh -c '
    n="$1"; bad=0; i=0
    while [ "$i" -lt "$n" ]; do
      v="$(shoalctl get "e2e/key-$i")" || { echo "missing e2e/key-$i" >&2; bad=1; }
      [ "$v" = "value-$i" ] || { echo "e2e/key-$i = \"$v\", want value-$i" >&2; bad=1; }
      u="$(shoalctl get --cf users "user-$i")" || { echo "missing users/user-$i" >&2; bad=1; }
      [ "$u" = "name-$i" ] || { echo "users/user-$i = \"$u\", want name-$i" >&2; bad=1; }
      i=$((i + 1))
    done
    exit "$bad"' sh "$KEYS" || die "keys read back differ from what was written"
  got="$(shoalctl scan --start e2e/ --end e2e0 | wc -l | tr -d ' ')"
  [ "$got" = "$KEYS" ] || die "scan of e2e/ returned ${got} keys, want ${KEYS}"
}

# --- preflight ---------------------------------------------------------------
for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null 2>&1 || die "${tool} is not installed (this script needs docker, kind, kubectl and helm)"
done
docker info >/dev/null 2>&1 || die "cannot talk to the Docker engine (is it running?)"
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  die "kind cluster ${CLUSTER} already exists; delete it (kind delete cluster --name ${CLUSTER}) or set SHOAL_KIND_CLUSTER"
fi

# --- cluster and images ------------------------------------------------------
log "creating kind cluster ${CLUSTER}"
created_cluster=1
kind create cluster --name "$CLUSTER" --wait 180s

if [ "$SKIP_BUILD" != "1" ]; then
  log "building ${NODE_IMAGE} and ${OPERATOR_IMAGE} (the first build compiles RocksDB: several minutes)"
  export DOCKER_BUILDKIT=1
  docker build -f "$ROOT/docker/shoal-node.Dockerfile" -t "$NODE_IMAGE" "$ROOT"
  docker build -f "$ROOT/docker/shoal-operator.Dockerfile" -t "$OPERATOR_IMAGE" "$ROOT"
fi
log "loading the images into kind"
kind load docker-image --name "$CLUSTER" "$NODE_IMAGE" "$OPERATOR_IMAGE"

# --- operator ----------------------------------------------------------------
log "helm install shoal-operator"
helm --kube-context "$CONTEXT" install shoal-operator "$ROOT/charts/shoal-operator" \
  --namespace "$OPERATOR_NS" --create-namespace \
  --set image.repository=shoal/shoal-operator --set image.tag="$VERSION" --set image.pullPolicy=IfNotPresent \
  --set-string 'logLevel=info\,shoal_operator=debug' \
  --wait --timeout "${TIMEOUT}s"
k wait crd/kvclusters.shoal.dev --for=condition=Established --timeout="${TIMEOUT}s"
k -n "$OPERATOR_NS" rollout status deployment/shoal-operator --timeout="${TIMEOUT}s"

# --- the example cluster -----------------------------------------------------
log "applying examples/kvcluster.yaml (requests trimmed to fit kind)"
k create namespace "$NS"
sed -e 's/cpu: 500m/cpu: 100m/' -e 's/memory: 1Gi/memory: 256Mi/' "$ROOT/examples/kvcluster.yaml" >"$workdir/kvcluster.yaml"
kn apply -f "$workdir/kvcluster.yaml"
kn wait kvcluster "$KVC" --for=condition=Available --timeout="${TIMEOUT}s"
wait_until "kvcluster/${KVC} settled at 3 stores" settled_at 3
kn get kvcluster "$KVC" -o wide

log "writing ${KEYS} keys (default and users column families)"
# shellcheck disable=SC2016 # expanded by the pod's shell, not this one
kn exec "${KVC}-0" -- sh -c '
  n="$1"; i=0
  while [ "$i" -lt "$n" ]; do
    shoalctl put "e2e/key-$i" "value-$i" >/dev/null
    shoalctl put --cf users "user-$i" "name-$i" >/dev/null
    i=$((i + 1))
  done' sh "$KEYS"
check_keys

# --- scale out and in --------------------------------------------------------
scale_to 5
check_keys
scale_to 3
wait_until "PVCs of ordinals 3 and 4 retired" no_pvcs_from 3
check_keys

log "status"
shoalctl status
shoalctl store list
phase="$(kn get kvcluster "$KVC" -o jsonpath='{.status.phase}')"
[ "$phase" = "Running" ] || die "kvcluster/${KVC} phase is ${phase:-empty}, want Running"
degraded="$(kn get kvcluster "$KVC" -o jsonpath='{.status.conditions[?(@.type=="Degraded")].status}')"
[ "$degraded" != "True" ] || die "kvcluster/${KVC} is Degraded"
