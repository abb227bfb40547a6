#!/usr/bin/env bash
# Webhook intake benchmark: verify + parse + decide on real GitHub payloads, next to the
# HMAC-SHA256 check alone. Figures go to docs/PERFORMANCE.md.
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
export CCA_CACHE="${CCA_CACHE:-$HOME/.cache/cca}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CCA_CACHE/target}"
examples="$CCA_CACHE/npm/node_modules/@octokit/webhooks-examples/api.github.com/index.json"
if [[ ! -f "$examples" ]]; then
    npm install --prefix "$CCA_CACHE/npm" --no-audit --no-fund --loglevel=error \
        "@octokit/webhooks-examples@7.6.1" </dev/null
fi
export CCA_WEBHOOK_EXAMPLES="$examples"
exec cargo bench -p cca-webhook --bench intake -- "$@"
