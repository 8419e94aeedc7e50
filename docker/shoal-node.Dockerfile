# syntax=docker/dockerfile:1
#
# Image of a Shoal storage node: `shoal-node` (and `shoalctl`, for `kubectl exec`).
#
# NOTE: this file is not built or tested on the project's CI machines, which have
# no Docker engine (and no Kubernetes). tests/kind/e2e.sh builds and exercises it
# for users who have Docker and kind.
#
# Build from the repository root (the context needs the whole workspace):
#   docker build -f docker/shoal-node.Dockerfile -t shoal/shoal-node:0.1.0 .
#
# Ports: 20160 gRPC (Kv, Raft, Admin), 20180 status HTTP (/metrics, /healthz, /readyz).

FROM rust:1.95-bookworm AS builder
# libclang: bindgen generates RocksDB's Rust bindings with it (protoc is vendored).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libclang-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The cache mounts keep the registry and the target directory between builds;
# the binaries are copied out of the cached target directory.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p shoal-node -p shoal-client --bin shoal-node --bin shoalctl \
 && install -D -m 0755 target/release/shoal-node /out/shoal-node \
 && install -D -m 0755 target/release/shoalctl /out/shoalctl

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 shoal \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/shoal --no-create-home --shell /usr/sbin/nologin shoal \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/shoal
COPY --from=builder /out/shoal-node /out/shoalctl /usr/local/bin/
USER 10001:10001
WORKDIR /var/lib/shoal
VOLUME ["/var/lib/shoal"]
EXPOSE 20160 20180
ENTRYPOINT ["/usr/local/bin/shoal-node"]
