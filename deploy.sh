#!/usr/bin/env bash
# Builds, promotes and deploys Claude Cloud Agent.
#
#   deploy.sh staging [--dry-run]    build the images, push them as :staging and :<git sha>
#   deploy.sh promote [--dry-run]    re-tag the staging manifests as :latest, without a rebuild
#   deploy.sh lambda [--dry-run]     build and deploy the webhook Lambda
#   deploy.sh rollback [--dry-run]   point :latest back at the previous release
#
# None of the commands is available yet: they come with the infrastructure (infra/).
set -euo pipefail

# Exit status of a command that is known but cannot run yet, distinct from a usage error.
readonly NOT_AVAILABLE=2

usage() {
    echo "usage: deploy.sh staging | promote | lambda | rollback [--dry-run]"
}

main() {
    if [[ $# -lt 1 || $# -gt 2 ]]; then
        usage >&2
        exit 1
    fi
    local command="$1"
    case "$command" in
    staging | promote | lambda | rollback) ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        echo "deploy.sh: unknown command: $command" >&2
        usage >&2
        exit 1
        ;;
    esac
    if [[ $# -eq 2 && "$2" != "--dry-run" ]]; then
        echo "deploy.sh: unknown option: $2" >&2
        usage >&2
        exit 1
    fi
    usage >&2
    echo "deploy.sh $command: not available yet; it comes with the infrastructure (infra/)." >&2
    exit "$NOT_AVAILABLE"
}

main "$@"
