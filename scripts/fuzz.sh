#!/usr/bin/env bash
# Builds the fuzz targets in fuzz/ (cargo fuzz: libFuzzer, nightly) and runs
# each for FUZZ_SECONDS (default 20, what .ci/run does) from the committed
# seeds in fuzz/seeds/<target>; inputs that find new coverage are kept under
# ~/.cache/shoal-fuzz/corpus, a crash under fuzz/artifacts/<target>.
#
#   scripts/fuzz.sh                                # every target, 20 s each
#   FUZZ_SECONDS=3600 scripts/fuzz.sh raft_message # one target, an hour
#   cargo +nightly fuzz run --fuzz-dir fuzz -s none -a TARGET fuzz/artifacts/TARGET/crash-...   # replay a crash
#
# RocksDB's C++ is not compiled again with coverage instrumentation: it is
# linked from the workspace's build (ROCKSDB_LIB_DIR), which must exist
# (`cargo build --workspace`); the targets fuzz Shoal's Rust decoders.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${FUZZ_SECONDS:-20}"
workspace_target="${CARGO_TARGET_DIR:-$HOME/.cache/shoal-target}"
export CARGO_TARGET_DIR="${SHOAL_FUZZ_TARGET_DIR:-$HOME/.cache/shoal-fuzz/target}"
corpus_root="$HOME/.cache/shoal-fuzz/corpus"

if ! rustup toolchain list | grep -q '^nightly'; then
  rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null; then
  cargo install cargo-fuzz --locked --version 0.13.2
fi

# The fuzz crate has its own lock file; its RocksDB must be the workspace's.
version() { grep -A1 '^name = "librocksdb-sys"$' "$1" | sed -n 's/^version = "\(.*\)"/\1/p'; }
if [ "$(version Cargo.lock)" != "$(version fuzz/Cargo.lock)" ]; then
  echo "fuzz: librocksdb-sys $(version fuzz/Cargo.lock) in fuzz/Cargo.lock, $(version Cargo.lock) in Cargo.lock: run \`cargo update --manifest-path fuzz/Cargo.toml -p librocksdb-sys --precise $(version Cargo.lock)\`" >&2
  exit 1
fi

lib="$(ls -t "$workspace_target"/debug/build/librocksdb-sys-*/out/librocksdb.a 2>/dev/null | head -1 || true)"
if [ -n "$lib" ]; then
  dir="$(dirname "$lib")"
  export ROCKSDB_LIB_DIR="$dir" ROCKSDB_STATIC=1 SNAPPY_LIB_DIR="$dir" SNAPPY_STATIC=1
  echo "fuzz: linking RocksDB from $dir"
else
  echo "fuzz: no RocksDB build under $workspace_target; compiling it (slow)"
fi

targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list --fuzz-dir fuzz)
fi
cargo +nightly fuzz build --fuzz-dir fuzz -s none -a -O
for t in "${targets[@]}"; do
  mkdir -p "$corpus_root/$t" "fuzz/seeds/$t"
  echo "fuzz: $t for ${secs}s"
  cargo +nightly fuzz run --fuzz-dir fuzz -s none -a -O "$t" "$corpus_root/$t" "fuzz/seeds/$t" -- \
    -max_total_time="$secs" -rss_limit_mb=4096 -max_len=65536 -print_final_stats=1 2>&1 |
    grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb|==|SUMMARY|thread .* panicked|Done)' || true
  # A crash leaves its input in fuzz/artifacts/<target>/ and fails the run.
  if compgen -G "fuzz/artifacts/$t/*" >/dev/null; then
    echo "fuzz: $t found a crash: $(ls fuzz/artifacts/"$t")" >&2
    exit 1
  fi
done
echo "fuzz: ${#targets[@]} targets ran ${secs}s each without a crash"
