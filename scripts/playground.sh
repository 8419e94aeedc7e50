#!/usr/bin/env bash
# The README's quick start in one command: installs what the build needs
# (scripts/setup.sh), builds the release binaries, and starts a local
# 3-node cluster (`shoalctl playground`) in the foreground; Ctrl-C stops it.
# Arguments go to `shoalctl playground` (e.g. --nodes 5, --data-dir DIR).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release --bins --locked
exec "$CARGO_TARGET_DIR/release/shoalctl" playground "$@"
