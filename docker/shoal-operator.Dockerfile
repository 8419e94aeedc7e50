# syntax=docker/dockerfile:1
#
# Image of the Shoal operator: `shoal-operator run` (the chart's Deployment passes
# `run` and its flags as args).
#
# NOTE: this file is not built or tested on the project's CI machines, which have
# no Docker engine (and no Kubernetes). tests/kind/e2e.sh builds and exercises it
# for users who have Docker and kind.
#
# Build from the repository root (the context needs the whole workspace):
#   docker build -f docker/shoal-operator.Dockerfile -t shoal/shoal-operator:0.1.0 .
#
# Port: 8080 metrics HTTP (/metrics, /healthz, /readyz).

FROM rust:1.95-bookworm AS builder
# libclang: for RocksDB's bindings. The operator itself does not link RocksDB, but
# the builder is the same as the node's so that one layer cache serves both images.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libclang-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p shoal-operator --bin shoal-operator \
 && install -D -m 0755 target/release/shoal-operator /out/shoal-operator

FROM debian:bookworm-slim
# ca-certificates: the API server's CA comes from the service account, but
# webhooks and cloud endpoints may need the system roots.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 shoal \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin shoal
COPY --from=builder /out/shoal-operator /usr/local/bin/shoal-operator
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/shoal-operator"]
CMD ["run"]
