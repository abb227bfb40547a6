#!/usr/bin/env bash
# Builds the webhook Lambda package: `cca-webhook` as `bootstrap` in a zip, for the
# provided.al2023 runtime on x86_64, with cargo-lambda. cargo-lambda links with zig against an
# old glibc, so the same command gives a package that runs on Lambda from Linux, macOS or
# Windows, with no Docker.
#
#   scripts/build-lambda.sh            # prints the path of the zip on standard output
#
# Settings (environment):
#   CCA_CACHE              where tools and the build go (default ~/.cache/cca)
#   CCA_LAMBDA_TARGET_DIR  cargo's build directory for the package (default
#                          $CCA_CACHE/lambda-target: apart from the development build, whose
#                          artifacts are for another target and compiler)
#   CCA_CARGO_LAMBDA       a cargo-lambda executable to use instead of the pinned one, which is
#                          installed from PyPI, with zig, into the venv $CCA_CACHE/deploy-tools
#
# Only the zip's path goes to standard output; cargo's progress goes to standard error. A cold
# build takes 20 to 30 minutes on two cores (fat LTO in one code generation unit).
set -euo pipefail

# cargo-lambda, and the zig it links with (PyPI's ziglang), both pinned so that every machine
# builds the same package.
readonly CARGO_LAMBDA_VERSION=1.9.2
readonly ZIGLANG_VERSION=0.17.1
# Lambda's x86_64 architecture. The function's architecture (infra/) must match.
readonly TARGET=x86_64-unknown-linux-gnu
readonly PACKAGE=cca-webhook

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

if [[ $# -gt 0 ]]; then
    case "$1" in
    -h | --help)
        sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "usage: scripts/build-lambda.sh" >&2
        exit 1
        ;;
    esac
fi

cache="${CCA_CACHE:-$HOME/.cache/cca}"
target_dir="${CCA_LAMBDA_TARGET_DIR:-$cache/lambda-target}"
lambda_dir="$target_dir/lambda"

cargo_lambda="${CCA_CARGO_LAMBDA:-}"
if [[ -z "$cargo_lambda" ]]; then
    tools="$cache/deploy-tools"
    cargo_lambda="$tools/bin/cargo-lambda"
    pins="cargo-lambda==$CARGO_LAMBDA_VERSION ziglang==$ZIGLANG_VERSION"
    if [[ ! -x "$cargo_lambda" || "$(cat "$tools/.build-lambda-pins" 2>/dev/null || true)" != "$pins" ]]; then
        echo "installing $pins into $tools" >&2
        if [[ ! -x "$tools/bin/python" ]]; then
            python3 -m venv "$tools" >&2
        fi
        # shellcheck disable=SC2086 # one word per requirement
        "$tools/bin/python" -m pip install --quiet --disable-pip-version-check $pins </dev/null >&2
        echo "$pins" >"$tools/.build-lambda-pins"
    fi
    # zig comes from the same venv (`python3 -m ziglang`), found through PATH.
    export PATH="$tools/bin:$PATH"
fi

# The build directory is given to cargo through its environment: cargo-lambda 1.9 passes a
# --target-dir flag on to `cargo metadata` too, which refuses it.
export CARGO_TARGET_DIR="$target_dir"

# The package is built for size, on top of the workspace's [profile.release]: Lambda fetches and
# unpacks it on every cold start. The zip goes from 10.1 MB to 6.1 MB (docs/PERFORMANCE.md,
# "Lambda package"). The images and the benchmarks keep the workspace profile.
export CARGO_PROFILE_RELEASE_OPT_LEVEL=z
export CARGO_PROFILE_RELEASE_LTO=fat
export CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1
export CARGO_PROFILE_RELEASE_STRIP=symbols
# ... except the code every delivery runs before anything else: the signature check (hmac, sha2),
# the parser (sonic-rs) and the webhook's own intake and decision. Optimised for size, the
# HMAC-SHA256 took six times as long (the SHA extensions' intrinsics are no longer inlined);
# with these at opt-level 3 intake stays within 30% of the workspace build. The setting holds per
# function, so it survives the fat LTO.
fast_packages=(sha2 hmac sonic-rs cca-domain cca-webhook)
package_configs=()
for package in "${fast_packages[@]}"; do
    package_configs+=(--config "profile.release.package.$package.opt-level=3")
done

# --disable-optimizations: cargo-lambda would otherwise add panic = "abort" to the profile. Panics
# unwind as in the tested build, so the Lambda runtime answers a panicking invocation with an
# error instead of losing the process (and the warm state with it).
"$cargo_lambda" lambda build \
    --release \
    --locked \
    --disable-optimizations \
    --target "$TARGET" \
    --package "$PACKAGE" \
    --bin "$PACKAGE" \
    --output-format zip \
    --lambda-dir "$lambda_dir" \
    "${package_configs[@]}" >&2

zip="$lambda_dir/$PACKAGE/bootstrap.zip"
[[ -f "$zip" ]] || {
    echo "build-lambda.sh: cargo-lambda reported success but $zip is missing" >&2
    exit 1
}
echo "$zip"
