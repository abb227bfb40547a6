# syntax=docker/dockerfile:1
#
# The preview proxy image: `cca-uat-proxy serve` alone on a distroless base (glibc, libgcc,
# CA certificates and time zones; no shell, no package manager), as the unprivileged user
# `nonroot` (uid 65532).
#
#   docker buildx build --platform linux/amd64 -f docker/proxy.Dockerfile -t cca-uat-proxy .
#
# The program is part of the command, as in the agent image, so a task definition's command
# (`cca-uat-proxy serve`, with LISTEN in the environment) replaces the one below whole. The proxy
# is the container's first process and starts no other, so it needs no init: it handles SIGTERM
# itself (draining for PROXY_DRAIN_SECS) and has no children to reap. It writes no file, so the
# root file system may be read-only.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p cca-uat-proxy \
    && install -D -m 0755 target/release/cca-uat-proxy /out/cca-uat-proxy

# Debian 12 (bookworm), the release the binary was built on, so its glibc is recent enough.
FROM gcr.io/distroless/cc-debian12:nonroot

COPY --from=build /out/cca-uat-proxy /usr/local/bin/cca-uat-proxy

USER 65532:65532

# The listener the load balancer's target group sends to.
EXPOSE 8081

CMD ["cca-uat-proxy", "serve", "--listen", "0.0.0.0:8081"]
