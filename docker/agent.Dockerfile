# syntax=docker/dockerfile:1
#
# The agent image: `cca-agent run` (a coding session) and `cca-agent preview` (a PR preview).
# It holds what a session needs to clone, build, serve and change a repository: git, Node.js with
# npm, Yarn 1 and pnpm (through corepack), Python 3 with a writable virtual environment, and the
# Claude Code CLI at a pinned version. The agent supervises as root; everything untrusted (the
# CLI, the repository's install and dev server, what they start) runs as the unprivileged user
# `cca-sandbox` (uid 1000), and also inside bubblewrap where the platform allows user namespaces
# (docs/SECURITY.md).
#
#   docker buildx build --platform linux/amd64 -f docker/agent.Dockerfile -t cca-agent .
#
# The task definitions and the ECS launcher set the container's command to `cca-agent run` or
# `cca-agent preview`: the program is part of the command, not of the entry point. The entry
# point is tini, the container's first process, which forwards signals to the agent and reaps
# the processes that dev servers and install scripts leave behind. Task definitions should not
# set an entry point of their own (nor need ECS's initProcessEnabled).

ARG RUST_VERSION=1.95
ARG NODE_MAJOR=24

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# The cargo registry and the build directory are cache mounts, so a rebuild after a source change
# does not fetch or compile the dependencies again; the binary is copied out of the mount.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p cca-agent \
    && install -D -m 0755 target/release/cca-agent /out/cca-agent

# The official Node.js image is Debian bookworm slim with Node.js, npm, corepack and Yarn 1 in
# /usr/local: the same Debian release the binary above was built on.
FROM node:${NODE_MAJOR}-bookworm-slim

# Version of the Claude Code CLI: the one the test suite drives (scripts/test.sh).
ARG CLAUDE_CODE_VERSION=2.1.330

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Debian's packages are left unpinned on purpose: a rebuild should pick up the release's
# security updates, and bookworm's versions do not change otherwise.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        ca-certificates \
        git \
        python3 \
        python3-venv \
        bubblewrap \
        tini \
    && rm -rf /var/lib/apt/lists/*

# The package's postinstall copies the native executable for this platform, shipped in an
# optional dependency, over bin/claude.exe; without optional dependencies the command is a stub.
# The check makes a build that got the stub fail here instead of in the first session.
RUN npm install --global --include=optional --no-audit --no-fund --loglevel=error \
        "@anthropic-ai/claude-code@${CLAUDE_CODE_VERSION}" \
    && npm cache clean --force \
    && test "$(claude --version | awk 'NR == 1 { print $1 }')" = "${CLAUDE_CODE_VERSION}" \
    && corepack enable pnpm

# The image's `node` user (uid 1000) becomes `cca-sandbox`, the identity of untrusted code; each
# session gives it a home of its own under /workspace. Python packages of a previewed app
# install into a virtual environment that user owns, since Debian's Python refuses
# `pip install` into the system (PEP 668). The workspace is root's and passable only: the agent
# keeps its own git directory there, out of the sandbox user's reach.
RUN groupmod --new-name cca-sandbox node \
    && usermod --login cca-sandbox --home /nonexistent --shell /usr/sbin/nologin node \
    && rm -rf /home/node \
    && install -d -m 0711 /workspace \
    && python3 -m venv /opt/venv \
    && chown -R cca-sandbox:cca-sandbox /opt/venv

COPY --from=build /out/cca-agent /usr/local/bin/cca-agent

ENV HOME=/root \
    AGENT_WORKSPACE=/workspace \
    AGENT_SANDBOX=auto \
    AGENT_SANDBOX_USER=cca-sandbox \
    CLAUDE_BIN=claude \
    DISABLE_AUTOUPDATER=1 \
    COREPACK_ENABLE_DOWNLOAD_PROMPT=0 \
    NPM_CONFIG_UPDATE_NOTIFIER=false \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# Root is the supervisor's, so that it can switch untrusted code to the sandbox user, keep its
# credentials and its git directory out of that user's reach, and end every process of that
# user on stop. The agent itself runs no repository code.
# hadolint ignore=DL3002
USER 0:0
WORKDIR /workspace

# APP_PORT (the app's dev server, which the proxy forwards to) and CONTROL_PORT (control API).
EXPOSE 3000 8080

ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["cca-agent", "run"]
