#!/usr/bin/env bash
# The one test command of the repository: lint, then the whole test suite
# against a local AWS emulator and real recorded GitHub webhook payloads.
#
#   scripts/test.sh                 # fmt, clippy, cargo test --workspace
#   scripts/test.sh -p cca-store    # extra arguments go to `cargo test`
#   CCA_SKIP_LINT=1 scripts/test.sh # skip fmt and clippy for quick local runs
#
# Everything it installs goes under ${CCA_CACHE:-$HOME/.cache/cca} and is
# reused on the next run, so only the first run on a machine needs the
# package registries; Chromium, for the preview proxy's browser test, comes
# from Debian's packages (installed as root when /usr/bin/chromium is
# missing). It needs no standard input.
set -euo pipefail

MOTO_VERSION=5.2.1
WEBHOOK_EXAMPLES_VERSION=7.6.1
CLAUDE_CODE_VERSION=2.1.330
VITE_VERSION=7.3.8
PLAYWRIGHT_CORE_VERSION=1.65.1
CHROMIUM=/usr/bin/chromium
MOTO_START_TIMEOUT_SECS=30
SANDBOX_USER=cca-sandbox

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

export CCA_CACHE="${CCA_CACHE:-$HOME/.cache/cca}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CCA_CACHE/target}"
# Every part of the stand is provided below: a test that finds one missing fails (see
# crates/testkit/src/stand.rs) instead of skipping.
export CCA_REQUIRE_STAND=1
mkdir -p "$CCA_CACHE"

step() { printf '\n==> %s\n' "$*"; }
fail() {
    printf '\nFAILED: %s\n' "$*" >&2
    exit 1
}

# Background processes started here are stopped on every exit path, so a
# failed or interrupted run never leaves an emulator holding a port.
moto_pid=""
moto_log=""
cleanup() {
    if [[ -n "$moto_pid" ]] && kill -0 "$moto_pid" 2>/dev/null; then
        kill "$moto_pid" 2>/dev/null || true
        wait "$moto_pid" 2>/dev/null || true
    fi
    if [[ -n "$moto_log" ]]; then
        rm -f "$moto_log"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step "Python venv with moto[server]==$MOTO_VERSION"
venv="$CCA_CACHE/venv"
if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv" || fail "could not create a Python venv at $venv (is python3-venv installed?)"
fi
if "$venv/bin/python" -c "import sys, moto; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null; then
    echo "moto $MOTO_VERSION already installed in $venv"
else
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION" ||
        fail "pip could not install moto[server]==$MOTO_VERSION"
fi

step "GitHub webhook examples (@octokit/webhooks-examples@$WEBHOOK_EXAMPLES_VERSION)"
npm_prefix="$CCA_CACHE/npm"
examples_dir="$npm_prefix/node_modules/@octokit/webhooks-examples"
installed_examples_version=""
if [[ -f "$examples_dir/package.json" ]]; then
    installed_examples_version="$(node -p "require(process.argv[1]).version" "$examples_dir/package.json" 2>/dev/null || true)"
fi
if [[ "$installed_examples_version" == "$WEBHOOK_EXAMPLES_VERSION" ]]; then
    echo "already installed in $npm_prefix"
else
    mkdir -p "$npm_prefix"
    npm install --prefix "$npm_prefix" --no-audit --no-fund --loglevel=error \
        "@octokit/webhooks-examples@$WEBHOOK_EXAMPLES_VERSION" </dev/null ||
        fail "npm could not install @octokit/webhooks-examples@$WEBHOOK_EXAMPLES_VERSION"
fi
export CCA_WEBHOOK_EXAMPLES="$examples_dir/api.github.com/index.json"
[[ -f "$CCA_WEBHOOK_EXAMPLES" ]] || fail "missing $CCA_WEBHOOK_EXAMPLES after install"

step "Claude Code CLI (@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION)"
# The package's postinstall copies the native executable of this platform,
# shipped in an optional dependency, over bin/claude.exe; without it the file
# stays a stub, so the install counts only when the executable reports the
# pinned version.
claude_prefix="$CCA_CACHE/claude-npm"
claude_cli="$claude_prefix/node_modules/@anthropic-ai/claude-code/bin/claude.exe"
claude_cli_version() {
    if [[ -x "$claude_cli" ]]; then
        "$claude_cli" --version </dev/null 2>/dev/null | awk 'NR == 1 { print $1 }' || true
    fi
}
if [[ "$(claude_cli_version)" == "$CLAUDE_CODE_VERSION" ]]; then
    echo "already installed in $claude_prefix"
else
    mkdir -p "$claude_prefix"
    npm install --prefix "$claude_prefix" --save-exact --include=optional --no-audit --no-fund --loglevel=error \
        "@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION" </dev/null ||
        fail "npm could not install @anthropic-ai/claude-code@$CLAUDE_CODE_VERSION"
    [[ "$(claude_cli_version)" == "$CLAUDE_CODE_VERSION" ]] ||
        fail "$claude_cli does not run as Claude Code $CLAUDE_CODE_VERSION (native package missing?)"
fi
export CCA_CLAUDE_CLI="$claude_cli"

step "Browser test tools (Chromium, vite@$VITE_VERSION, playwright-core@$PLAYWRIGHT_CORE_VERSION)"
if [[ -x "$CHROMIUM" ]]; then
    echo "Chromium present at $CHROMIUM"
else
    [[ "$(id -u)" == "0" ]] ||
        fail "$CHROMIUM is missing; install Debian's chromium package as root (apt-get install chromium)"
    apt-get update -qq </dev/null || fail "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium </dev/null >/dev/null ||
        fail "apt-get could not install chromium"
    [[ -x "$CHROMIUM" ]] || fail "chromium installed but $CHROMIUM is missing"
fi
browser_prefix="$CCA_CACHE/browser-npm"
# The version of an npm package installed under $browser_prefix, or nothing.
installed_version() {
    local manifest="$browser_prefix/node_modules/$1/package.json"
    if [[ -f "$manifest" ]]; then
        node -p "require(process.argv[1]).version" "$manifest" 2>/dev/null || true
    fi
}
if [[ "$(installed_version vite)" == "$VITE_VERSION" &&
    "$(installed_version playwright-core)" == "$PLAYWRIGHT_CORE_VERSION" ]]; then
    echo "already installed in $browser_prefix"
else
    mkdir -p "$browser_prefix"
    npm install --prefix "$browser_prefix" --save-exact --no-audit --no-fund --loglevel=error \
        "vite@$VITE_VERSION" "playwright-core@$PLAYWRIGHT_CORE_VERSION" </dev/null ||
        fail "npm could not install vite@$VITE_VERSION and playwright-core@$PLAYWRIGHT_CORE_VERSION"
fi
export CCA_BROWSER_TESTS=1
export CCA_NODE_PREFIX="$browser_prefix"
export CCA_CHROMIUM="$CHROMIUM"

step "Agent sandbox (bubblewrap, the unprivileged user ${SANDBOX_USER})"
# The agent confines the coding CLI and the repository's commands with bubblewrap and, run as
# root as here, as an unprivileged user (agent/src/sandbox.rs); the tests run both for real.
if command -v bwrap >/dev/null 2>&1; then
    echo "bubblewrap present: $(bwrap --version)"
else
    [[ "$(id -u)" == "0" ]] ||
        fail "bwrap is missing; install Debian's bubblewrap package as root (apt-get install bubblewrap)"
    apt-get update -qq </dev/null || fail "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap </dev/null >/dev/null ||
        fail "apt-get could not install bubblewrap"
fi
if [[ "$(id -u)" == "0" ]]; then
    if ! id "$SANDBOX_USER" >/dev/null 2>&1; then
        useradd --system --user-group --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin "$SANDBOX_USER" || fail "useradd $SANDBOX_USER failed"
    fi
    echo "sandbox user: $(id "$SANDBOX_USER")"
fi

step "Starting the AWS emulator (moto)"
port="$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
moto_log="$(mktemp "${TMPDIR:-/tmp}/cca-moto.XXXXXX")"
"$venv/bin/python" scripts/moto_server.py --host 127.0.0.1 --port "$port" >"$moto_log" 2>&1 </dev/null &
moto_pid=$!
export CCA_MOTO_URL="http://127.0.0.1:$port"
deadline=$((SECONDS + MOTO_START_TIMEOUT_SECS))
until "$venv/bin/python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/moto-api/data.json", timeout=2)' "$CCA_MOTO_URL" 2>/dev/null; do
    if ! kill -0 "$moto_pid" 2>/dev/null; then
        cat "$moto_log" >&2
        fail "moto exited before answering"
    fi
    if ((SECONDS >= deadline)); then
        cat "$moto_log" >&2
        fail "moto did not answer on $CCA_MOTO_URL within ${MOTO_START_TIMEOUT_SECS}s"
    fi
    sleep 0.3
done
echo "moto answers on $CCA_MOTO_URL (pid $moto_pid)"

export AWS_ENDPOINT_URL="$CCA_MOTO_URL"
export AWS_ACCESS_KEY_ID=testing
export AWS_SECRET_ACCESS_KEY=testing
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true

step "Building cca (cca doctor checks the deployment infra/ applies)"
cargo build -p cca --bin cca || fail "cargo build -p cca"
export CCA_BIN="$CARGO_TARGET_DIR/debug/cca"

step "Terraform (infra/): fmt, checkov, then plan and apply against moto"
# The applied deployment stays in moto; tests find its outputs in CCA_INFRA_OUTPUTS.
export CCA_INFRA_OUTPUTS="$CCA_CACHE/infra/outputs.json"
bash infra/test/run.sh || fail "infra/test/run.sh"

# The delivery tooling, before the Rust tests: they reset moto, which would take away the
# deployment deploy.sh's default names are checked against. It runs with the whole suite only,
# not when packages were picked. Building the Lambda package takes minutes;
# CCA_TEST_LAMBDA_BUILD=0 skips that one test.
picked=0
for arg in "$@"; do
    case "$arg" in
    --) break ;;
    -p | -p* | --package | --package=*) picked=1 ;;
    esac
done
if ((picked == 0)); then
    step "deploy.sh, Dockerfiles and the Lambda package (scripts/test-deploy.sh)"
    CCA_TEST_LAMBDA_BUILD="${CCA_TEST_LAMBDA_BUILD:-1}" scripts/test-deploy.sh || fail "scripts/test-deploy.sh"
fi

if [[ "${CCA_SKIP_LINT:-0}" == "1" ]]; then
    step "Skipping cargo fmt and clippy (CCA_SKIP_LINT=1)"
else
    step "cargo fmt --all -- --check"
    cargo fmt --all -- --check || fail "formatting differs: run 'cargo fmt --all'"

    step "cargo clippy --workspace --all-targets -- -D warnings"
    cargo clippy --workspace --all-targets -- -D warnings || fail "clippy reported warnings or errors"
fi

# `--workspace` would override any `-p` given to the script, so it is added
# only when the caller did not pick packages.
scope=(--workspace)
for arg in "$@"; do
    case "$arg" in
    --) break ;;
    -p | -p* | --package | --package=*) scope=() ;;
    esac
done
# --no-fail-fast: one failing test binary does not hide the results of the others.
step "cargo test --no-fail-fast ${scope[*]} $*"
if ! cargo test --no-fail-fast "${scope[@]}" "$@"; then
    echo "--- last lines of the moto log ---" >&2
    tail -n 40 "$moto_log" >&2 || true
    fail "cargo test"
fi

step "All checks passed"
