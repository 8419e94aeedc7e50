#!/usr/bin/env bash
# Runs the end-to-end tests against a real Kubernetes control plane
# (tests/tests/kubernetes.rs): builds the control plane once (cached under
# ~/.cache, see scripts/k8s-control-plane.sh) and the project's binaries, then
# runs the tests and prints the runner's `N passed` line. Needs root (each test
# runs in a private mount namespace with the cluster's /etc/hosts). .ci/run
# runs the same tests as part of the whole suite.
#
#   scripts/e2e-kubernetes.sh            # every test
#   scripts/e2e-kubernetes.sh helm_      # the tests whose name matches
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
scripts/k8s-control-plane.sh build
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/shoal-target}"
cargo build --workspace --bins --locked
cargo nextest run -p shoal-tests --test kubernetes --locked --no-fail-fast --profile ci "$@"
