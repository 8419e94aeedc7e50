# Image of the Shoal operator: `shoal-operator run` (the chart's Deployment passes
# `run` and its flags as args).
#
# Build from the repository root (the context needs the whole workspace):
#   docker build -f docker/shoal-operator.Dockerfile -t shoal/shoal-operator:0.1.0 .
# (BuildKit: `docker buildx build`, or DOCKER_BUILDKIT=1 with a client older than 23.)
#
# BASE and BINARIES as in shoal-node.Dockerfile (`prebuilt`: the context holds
# out/shoal-operator).
#
# Port: 8080 metrics HTTP (/metrics, /healthz, /readyz).

ARG BASE=debian:bookworm-slim
ARG BINARIES=source

FROM rust:1.95-bookworm AS binaries-source
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

FROM scratch AS binaries-prebuilt
COPY out/shoal-operator /out/

FROM binaries-${BINARIES} AS binaries

FROM ${BASE}
# ca-certificates: the API server's CA comes from the service account, but
# webhooks and cloud endpoints may need the system roots.
RUN if [ ! -e /etc/ssl/certs/ca-certificates.crt ]; then \
      apt-get update \
      && apt-get install -y --no-install-recommends ca-certificates \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
 && groupadd --system --gid 10001 shoal \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin shoal
COPY --from=binaries /out/shoal-operator /usr/local/bin/shoal-operator
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/shoal-operator"]
CMD ["run"]
