#!/usr/bin/env bash
# Builds both images from docker/ on a machine that reaches no container
# registry, and checks that they run: part of .ci/run.
#
#   scripts/docker-images.sh
#
# 1. An engine: if `docker info` answers, that one. Otherwise, as root with
#    dockerd installed (Debian's docker.io, which scripts/setup.sh installs), it
#    starts a private dockerd of its own: socket, data and exec roots under
#    $SHOAL_DOCKER_DIR (default ~/.cache/shoal-docker), no bridge and no iptables
#    rules (nothing here needs a container network), stopped on exit. If neither
#    works, it says why and exits 0: the images are then not checked.
# 2. A base image without a registry: Debian bookworm (minbase, with
#    ca-certificates) from `debootstrap`, `docker import`ed as
#    shoal-ci/debian:bookworm once and kept in the private data root.
# 3. Both images with BuildKit, BASE=shoal-ci/debian:bookworm and
#    BINARIES=prebuilt: the binaries of the workspace build ($CARGO_TARGET_DIR,
#    profile $SHOAL_DOCKER_PROFILE, default debug), stripped, are the context.
#    The Dockerfiles' compile stage (rust:1.95-bookworm) is the one part not built
#    here: it needs Docker Hub.
# 4. Checks, in containers without a network: `shoal-node --version` and
#    `shoalctl --version` print the workspace's version; both run as uid 10001;
#    `shoal-operator crd` prints exactly crds/kvcluster.yaml; a one-store
#    cluster in the node image bootstraps from its data volume and serves a put
#    and a linearizable get through `docker exec shoalctl`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${SHOAL_DOCKER_DIR:-$HOME/.cache/shoal-docker}"
TARGET="${CARGO_TARGET_DIR:-$HOME/.cache/shoal-target}"
PROFILE="${SHOAL_DOCKER_PROFILE:-debug}"
BASE="shoal-ci/debian:bookworm"
VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/Cargo.toml" | head -1)"
NODE_IMAGE="shoal/shoal-node:ci"
OPERATOR_IMAGE="shoal/shoal-operator:ci"

say() { echo "docker-images: $*"; }
fail() { say "FAILED: $*" >&2; exit 1; }

work="$(mktemp -d)"
dockerd_pid=""
node_container=""
cleanup() {
  if [ -n "$node_container" ]; then docker rm -f "$node_container" >/dev/null 2>&1 || true; fi
  if [ -n "$dockerd_pid" ]; then
    kill "$dockerd_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$dockerd_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# 1. The engine.
if ! docker info >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ] || ! command -v dockerd >/dev/null 2>&1; then
    say "no Docker engine answers \`docker info\`, and none can be started here (needs root and dockerd); images not built"
    exit 0
  fi
  mkdir -p "$DIR/data" "$DIR/exec"
  export DOCKER_HOST="unix://$DIR/docker.sock"
  dockerd --host "$DOCKER_HOST" --data-root "$DIR/data" --exec-root "$DIR/exec" --pidfile "$DIR/dockerd.pid" \
    --bridge=none --iptables=false --ip-masq=false >"$DIR/dockerd.log" 2>&1 &
  dockerd_pid=$!
  for _ in $(seq 1 600); do
    docker info >/dev/null 2>&1 && break
    kill -0 "$dockerd_pid" 2>/dev/null || break
    sleep 0.1
  done
  if ! docker info >/dev/null 2>&1; then
    say "dockerd did not start (last lines of $DIR/dockerd.log below); images not built"
    tail -5 "$DIR/dockerd.log" | sed 's/^/  /'
    exit 0
  fi
  say "started a private dockerd ($(docker version --format '{{.Server.Version}}'))"
fi

# A client that builds with BuildKit (the legacy builder would build every
# stage, the Rust one too): buildx, or a client older than 23 (DOCKER_BUILDKIT=1).
build=()
if docker buildx version >/dev/null 2>&1; then
  build=(docker buildx build --load)
else
  for client in docker /usr/bin/docker; do
    major="$("$client" version --format '{{.Client.Version}}' 2>/dev/null | cut -d. -f1 || true)"
    if [[ "$major" =~ ^[0-9]+$ ]] && [ "$major" -lt 23 ]; then
      build=(env DOCKER_BUILDKIT=1 "$client" build)
      break
    fi
  done
fi
((${#build[@]})) || fail "no client here builds with BuildKit (install docker-buildx)"

# 2. The base image.
if ! docker image inspect "$BASE" >/dev/null 2>&1; then
  command -v debootstrap >/dev/null 2>&1 || fail "debootstrap is needed for the offline base image"
  say "debootstrap Debian bookworm for $BASE"
  debootstrap --variant=minbase --include=ca-certificates bookworm "$work/rootfs" http://deb.debian.org/debian \
    >"$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log" >&2; fail "debootstrap"; }
  rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/*
  tar -C "$work/rootfs" -c . | docker import - "$BASE" >/dev/null
  rm -rf "$work/rootfs"
fi

# 3. The images, from the workspace's binaries.
context() {
  local ctx="$work/$1"
  shift
  mkdir -p "$ctx/out"
  for bin in "$@"; do
    [ -x "$TARGET/$PROFILE/$bin" ] || fail "$TARGET/$PROFILE/$bin is not built"
    strip -o "$ctx/out/$bin" "$TARGET/$PROFILE/$bin"
  done
  echo "$ctx"
}
image() {
  local tag="$1" dockerfile="$2" ctx="$3"
  "${build[@]}" --quiet --network=none --build-arg "BASE=$BASE" --build-arg BINARIES=prebuilt \
    -f "$ROOT/docker/$dockerfile" -t "$tag" "$ctx" >"$work/build.log" 2>&1 \
    || { cat "$work/build.log" >&2; fail "building $tag from docker/$dockerfile"; }
  say "built $tag ($(docker image inspect --format '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}'))"
}
image "$NODE_IMAGE" shoal-node.Dockerfile "$(context node shoal-node shoalctl)"
image "$OPERATOR_IMAGE" shoal-operator.Dockerfile "$(context operator shoal-operator)"

# 4. The checks.
run() { docker run --rm --network=none "$@"; }
expect() {
  local what="$1" want="$2" got="$3"
  [ "$got" = "$want" ] || fail "$what: wanted '$want', got '$got'"
  say "$what: $got"
}
expect "shoal-node --version" "shoal-node $VERSION" "$(run "$NODE_IMAGE" --version)"
expect "shoalctl --version" "shoalctl $VERSION" "$(run --entrypoint shoalctl "$NODE_IMAGE" --version)"
expect "node image user" "10001" "$(run --entrypoint id "$NODE_IMAGE" -u)"
expect "operator image user" "10001" "$(run --entrypoint id "$OPERATOR_IMAGE" -u)"
run "$OPERATOR_IMAGE" crd >"$work/crd.yaml"
cmp -s "$work/crd.yaml" "$ROOT/crds/kvcluster.yaml" || fail "shoal-operator crd in the image differs from crds/kvcluster.yaml"
say "shoal-operator crd: $(wc -l <"$work/crd.yaml") lines, the same as crds/kvcluster.yaml"

node_container="shoal-ci-node-$$"
docker run -d --name "$node_container" --network=none "$NODE_IMAGE" \
  --name n1 --data-dir /var/lib/shoal/n1 --listen-addr 127.0.0.1:20160 --status-addr 127.0.0.1:20180 \
  --initial-cluster n1=127.0.0.1:20160 >/dev/null
ctl() { docker exec "$node_container" shoalctl --endpoints 127.0.0.1:20160 "$@"; }
ok=""
for _ in $(seq 1 300); do
  if ctl put image-check works >/dev/null 2>&1; then ok=1; break; fi
  [ "$(docker inspect --format '{{.State.Running}}' "$node_container")" = "true" ] || break
  sleep 0.2
done
[ -n "$ok" ] || { docker logs --tail 20 "$node_container" >&2; fail "the store in $NODE_IMAGE never took a write"; }
expect "put, then linearizable get in the node image" "works" "$(ctl get image-check)"
