# Image of a Shoal storage node: `shoal-node` (and `shoalctl`, for `kubectl exec`).
#
# Build from the repository root (the context needs the whole workspace):
#   docker build -f docker/shoal-node.Dockerfile -t shoal/shoal-node:0.1.0 .
# (BuildKit: `docker buildx build`, or DOCKER_BUILDKIT=1 with a client older than 23.)
#
# Two build arguments let an offline machine build it (scripts/docker-images.sh,
# run by .ci/run where a Docker engine answers, which reaches no registry):
#   BASE      the runtime base image (default debian:bookworm-slim; CI imports a
#             debootstrap'd Debian bookworm)
#   BINARIES  `source` (default: compile in rust:1.95-bookworm) or `prebuilt`
#             (the context is a directory holding out/shoal-node and out/shoalctl)
# BuildKit builds only the stages the final one needs, so `prebuilt` pulls no
# Rust image.
#
# Ports: 20160 gRPC (Kv, Raft, Admin), 20180 status HTTP (/metrics, /healthz, /readyz).

ARG BASE=debian:bookworm-slim
ARG BINARIES=source

FROM rust:1.95-bookworm AS binaries-source
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

FROM scratch AS binaries-prebuilt
COPY out/shoal-node out/shoalctl /out/

FROM binaries-${BINARIES} AS binaries

FROM ${BASE}
# ca-certificates only where the base lacks it (the offline base has it).
RUN if [ ! -e /etc/ssl/certs/ca-certificates.crt ]; then \
      apt-get update \
      && apt-get install -y --no-install-recommends ca-certificates \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
 && groupadd --system --gid 10001 shoal \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/shoal --no-create-home --shell /usr/sbin/nologin shoal \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/shoal
COPY --from=binaries /out/shoal-node /out/shoalctl /usr/local/bin/
USER 10001:10001
WORKDIR /var/lib/shoal
VOLUME ["/var/lib/shoal"]
EXPOSE 20160 20180
ENTRYPOINT ["/usr/local/bin/shoal-node"]
