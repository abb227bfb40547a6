#!/usr/bin/env bash
# Builds, promotes and deploys Claude Cloud Agent: the agent and proxy images in ECR and the
# webhook Lambda.
#
#   deploy.sh staging  [--dry-run]    build both images (linux/amd64) and push them as :staging
#                                     and :<git sha>
#   deploy.sh promote  [--dry-run]    make :latest the very manifests of :staging, without a
#                                     rebuild, keeping the replaced :latest as :previous; then
#                                     roll the proxy service
#   deploy.sh lambda   [--dry-run]    build the webhook package (scripts/build-lambda.sh), upload
#                                     it, publish a version and move the alias to it, keeping
#                                     the version it had under the alias `previous`
#   deploy.sh rollback [images | lambda] [--dry-run]
#                                     :latest back to :previous (rolling the proxy service), and
#                                     the alias back to the version under `previous`; both when
#                                     neither is named
#
# Before its first change each command reads everything it needs: the tools, the repositories
# and the images it moves, the proxy service it rolls, the function and its alias. When one is
# missing it names it and how to make it, and exits 1 having changed nothing.
#
# --dry-run changes nothing: it prints each command that would change something as
# "would run: command", what that would do ("would move", "would start"), and ends with "dry run:
# nothing was changed". The read-only queries the plan is made of (describe-repositories,
# batch-get-image, describe-services, list-aliases, get-function-configuration) still run, so the
# printed plan names the real digests and versions, and a dry run refuses what a real run would
# refuse; the webhook package is not built (its build is printed). Values known only once an
# earlier command has run appear in capitals (NEW_VERSION).
#
# Settings (environment; an empty value counts as unset):
#   AWS_REGION               region of every AWS call (else AWS_DEFAULT_REGION, else the
#                            profile's); AWS_PROFILE and the credentials as the AWS CLI reads them
#   AWS_ENDPOINT_URL         one endpoint for every AWS call, e.g. a local emulator
#   CCA_NAME_PREFIX          the deployment's name_prefix in infra/ (default claude-cloud-agent);
#                            the names below default to the ones infra/ derives from it
#   CCA_AGENT_REPOSITORY     ECR repository of the agent image        (<prefix>-agent)
#   CCA_PROXY_REPOSITORY     ECR repository of the proxy image        (<prefix>-uat-proxy)
#   CCA_CLUSTER              ECS cluster of the proxy service         (<prefix>)
#   CCA_PROXY_SERVICE        proxy service on :latest, rolled by promote and rollback
#                            (<prefix>-uat-proxy)
#   CCA_PROXY_SERVICE_STAGING  a proxy service on :staging, rolled by staging (default: none)
#   CCA_LAMBDA_FUNCTION      the webhook function                     (<prefix>-webhook)
#   CCA_LAMBDA_ALIAS         alias the function URL and the schedule invoke (default live)
#   CCA_LAMBDA_ZIP           a webhook package to deploy instead of building one
#
# Registries are the repositories' own (their repositoryUri), so nothing names an account.
# Requires the AWS CLI (v1 or v2); staging also needs git and docker with buildx, lambda openssl.
set -euo pipefail

# Platform of every image: the task definitions of infra/ run on X86_64 (infra/ecs.tf).
readonly PLATFORM=linux/amd64
# Tag and alias holding what :latest and the live alias pointed at before the last change, which
# rollback returns to. Rolling back leaves them in place, so a second rollback changes nothing.
readonly PREVIOUS=previous
# Media types asked of ECR, so that every manifest comes back as it was pushed.
MANIFEST_TYPES=(
    application/vnd.docker.distribution.manifest.v2+json
    application/vnd.docker.distribution.manifest.list.v2+json
    application/vnd.oci.image.manifest.v1+json
    application/vnd.oci.image.index.v1+json
)

# Where a refusal sends the operator for what terraform apply makes.
readonly FIRST_DEPLOYMENT="docs/OPERATIONS.md, First deployment"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

usage() {
    cat <<'USAGE'
usage: deploy.sh staging | promote | lambda | rollback [images | lambda] [--dry-run]

  staging    build the agent and proxy images and push them as :staging and :<git sha>
  promote    make :latest the manifests of :staging (no rebuild); roll the proxy service
  lambda     build the webhook package, publish it as a version, move the alias to it
  rollback   :latest back to :previous and the alias back to the previous version
             (rollback images or rollback lambda for one of the two)

  --dry-run  print what would change and the commands that would change it; change nothing

Each command first checks what it needs (tools, repositories, images, the proxy service, the
function and its alias) and changes nothing when one is missing.

Settings: AWS_REGION, AWS_ENDPOINT_URL, CCA_NAME_PREFIX (claude-cloud-agent), and, named
after it, CCA_AGENT_REPOSITORY (<prefix>-agent), CCA_PROXY_REPOSITORY (<prefix>-uat-proxy),
CCA_CLUSTER (<prefix>), CCA_PROXY_SERVICE (<prefix>-uat-proxy), CCA_LAMBDA_FUNCTION
(<prefix>-webhook); CCA_PROXY_SERVICE_STAGING, CCA_LAMBDA_ALIAS (live), CCA_LAMBDA_ZIP.
See the top of deploy.sh.
USAGE
}

die() {
    echo "deploy.sh: $*" >&2
    exit 1
}

usage_error() {
    echo "deploy.sh: $*" >&2
    usage >&2
    exit 1
}

note() {
    echo "$*" >&3
}

# Says what a step did, or in a dry run what it would have done: `tell WOULD DID`.
tell() {
    if [[ "$DRY_RUN" == 1 ]]; then
        note "$1"
    else
        note "$2"
    fi
}

need_tool() {
    command -v "$1" >/dev/null || die "$1 is not on PATH: $2"
}

# ---------------------------------------------------------------------------------------------
# AWS

# `aws`, with the endpoint and region of the settings. Commands are printed without them.
aws() {
    local global=()
    if [[ -n "${AWS_ENDPOINT_URL:-}" ]]; then
        global+=(--endpoint-url "$AWS_ENDPOINT_URL")
    fi
    if [[ -n "$REGION" ]]; then
        global+=(--region "$REGION")
    fi
    command aws ${global[@]+"${global[@]}"} "$@"
}

# A read-only AWS query. On failure the CLI's message stays in $WORK/aws.err, for the caller to
# tell a missing resource (not_found) from any other error (query_error).
query() {
    aws "$@" 2>"$WORK/aws.err"
}

not_found() {
    grep -qE '(RepositoryNotFound|ResourceNotFound|ClusterNotFound)Exception' "$WORK/aws.err"
}

# The CLI's message of the last failed query, on one line.
query_error() {
    tr -s '\n' ' ' <"$WORK/aws.err" | sed 's/^ *//; s/ *$//'
}

in_region() {
    if [[ -n "$REGION" ]]; then
        printf ' in %s' "$REGION"
    fi
}

# Prints a command that changes something: "+ command" as it runs, "would run: command" in a
# dry run.
announce() {
    if [[ "$DRY_RUN" == 1 ]]; then
        note "would run: $*"
    else
        note "+ $*"
    fi
}

# Runs a command that changes something, after printing it; with --dry-run, only prints it.
# The print goes to descriptor 3 (the script's standard output), so a caller may capture what
# the command itself prints.
run() {
    local line
    line="$(printf ' %q' "$@")"
    announce "${line# }"
    if [[ "$DRY_RUN" == 1 ]]; then
        return 0
    fi
    "$@"
}

# Refuses unless an ECS service of the cluster exists and is active. `what` names it in the
# message and `remedy` says how to make it when the cluster exists.
require_service() {
    local service="$1" what="$2" remedy="$3" status
    if ! status="$(query ecs describe-services --cluster "$CLUSTER" --services "$service" \
        --query 'services[0].status' --output text)"; then
        if not_found; then
            die "the cluster $CLUSTER does not exist$(in_region), so neither does the $what $service: run terraform apply first ($FIRST_DEPLOYMENT), or name the deployment's cluster in CCA_CLUSTER or CCA_NAME_PREFIX"
        fi
        die "cannot read the $what $service of cluster $CLUSTER: $(query_error)"
    fi
    case "$status" in
    ACTIVE) ;;
    None | "") die "the $what $service does not exist in cluster $CLUSTER$(in_region): $remedy" ;;
    *) die "the $what $service of cluster $CLUSTER is $status, not ACTIVE: $remedy" ;;
    esac
}

# ---------------------------------------------------------------------------------------------
# Images

# The URI of an ECR repository (registry/name); refuses when it cannot be read. `setting` is
# the variable that names it.
repository_uri() {
    local repository="$1" setting="$2" uri
    if uri="$(query ecr describe-repositories --repository-names "$repository" \
        --query 'repositories[0].repositoryUri' --output text)"; then
        echo "$uri"
        return
    fi
    if not_found; then
        die "the ECR repository $repository does not exist$(in_region): make it with terraform apply (-target=aws_ecr_repository.this makes the repositories alone; $FIRST_DEPLOYMENT), or name the deployment's in $setting or CCA_NAME_PREFIX"
    fi
    die "cannot read the ECR repository $repository: $(query_error)"
}

# The proxy service promote and rollback roll, which terraform apply makes.
require_proxy_service() {
    require_service "$PROXY_SERVICE" "proxy service" \
        "run terraform apply first ($FIRST_DEPLOYMENT), or name the deployment's in CCA_PROXY_SERVICE"
}

# "<digest> <media type>" of a tag, or nothing when the repository has no such tag.
image_of() {
    local repository="$1" tag="$2" out
    out="$(query ecr batch-get-image --repository-name "$repository" --image-ids "imageTag=$tag" \
        --accepted-media-types "${MANIFEST_TYPES[@]}" \
        --query 'images[0].[imageId.imageDigest,imageManifestMediaType]' --output text)" ||
        die "cannot read $repository:$tag: $(query_error)"
    if [[ "$out" != None ]]; then
        echo "$out"
    fi
}

# Writes the manifest of a digest to a file, byte for byte as ECR returns it. (The command
# substitution drops the newline the CLI adds after a text value; the manifests that docker
# pushes do not end in one. put-image's answer is checked against the digest anyway.)
save_manifest() {
    local repository="$1" digest="$2" file="$3" manifest
    manifest="$(query ecr batch-get-image --repository-name "$repository" \
        --image-ids "imageDigest=$digest" --accepted-media-types "${MANIFEST_TYPES[@]}" \
        --query 'images[0].imageManifest' --output text)" ||
        die "cannot read the manifest of $repository@$digest: $(query_error)"
    [[ -n "$manifest" && "$manifest" != None ]] || die "ECR returned no manifest for $repository@$digest"
    printf '%s' "$manifest" >"$file"
}

# Planned tag moves, executed only once every read of the plan has succeeded, and what each
# means, said once they are done.
PUT_REPOSITORY=()
PUT_TAG=()
PUT_DIGEST=()
PUT_MEDIA_TYPE=()
PUT_FILE=()
MOVE_REPOSITORY=()
MOVE_TEXT=()

plan_tag() {
    local repository="$1" tag="$2" digest="$3" media_type="$4" file
    file="$WORK/$repository.${digest#sha256:}.json"
    if [[ ! -f "$file" ]]; then
        save_manifest "$repository" "$digest" "$file"
    fi
    PUT_REPOSITORY+=("$repository")
    PUT_TAG+=("$tag")
    PUT_DIGEST+=("$digest")
    PUT_MEDIA_TYPE+=("$media_type")
    PUT_FILE+=("$file")
}

# put-image of every planned move. ECR refuses to put a manifest under a tag that already
# names it, so the plan never holds such a move.
apply_tags() {
    local i got
    for ((i = 0; i < ${#PUT_TAG[@]}; i++)); do
        got="$(run aws ecr put-image --repository-name "${PUT_REPOSITORY[i]}" \
            --image-tag "${PUT_TAG[i]}" --image-manifest "file://${PUT_FILE[i]}" \
            --image-manifest-media-type "${PUT_MEDIA_TYPE[i]}" \
            --query 'image.imageId.imageDigest' --output text)"
        if [[ "$DRY_RUN" != 1 && "$got" != "${PUT_DIGEST[i]}" ]]; then
            die "${PUT_REPOSITORY[i]}:${PUT_TAG[i]} is now $got, not ${PUT_DIGEST[i]}: the manifest changed on its way"
        fi
    done
    for ((i = 0; i < ${#MOVE_TEXT[@]}; i++)); do
        tell "${MOVE_REPOSITORY[i]}: would move ${MOVE_TEXT[i]}" "${MOVE_REPOSITORY[i]}: moved ${MOVE_TEXT[i]}"
    done
}

# Plans `tag` of a repository to become what `from_tag` is, keeping the replaced image under
# :previous when asked. Sets MOVED to 1 when the tag moves, 0 when it already is that image.
plan_retag() {
    local repository="$1" from_tag="$2" tag="$3" keep_previous="$4"
    local from from_digest from_type current current_digest="" current_type="" previous
    local previous_digest="" kept=""
    from="$(image_of "$repository" "$from_tag")"
    [[ -n "$from" ]] || die "$repository has no :$from_tag image$(hint_for "$from_tag")"
    read -r from_digest from_type <<<"$from"
    current="$(image_of "$repository" "$tag")"
    if [[ -n "$current" ]]; then
        read -r current_digest current_type <<<"$current"
    fi
    if [[ "$current_digest" == "$from_digest" ]]; then
        note "$repository: :$tag is already $from_digest (:$from_tag)"
        MOVED=0
        return
    fi
    if [[ "$keep_previous" == 1 && -n "$current_digest" ]]; then
        previous="$(image_of "$repository" "$PREVIOUS")"
        previous_digest="${previous%%[[:space:]]*}"
        if [[ "$previous_digest" != "$current_digest" ]]; then
            plan_tag "$repository" "$PREVIOUS" "$current_digest" "$current_type"
        fi
        kept=", the replaced image kept as :$PREVIOUS"
    fi
    plan_tag "$repository" "$tag" "$from_digest" "$from_type"
    MOVE_REPOSITORY+=("$repository")
    MOVE_TEXT+=(":$tag from ${current_digest:-(none)} to $from_digest (:$from_tag)$kept")
    MOVED=1
}

hint_for() {
    case "$1" in
    staging) echo "; run deploy.sh staging first" ;;
    "$PREVIOUS") echo "; nothing to roll back to (promote keeps the replaced :latest as :$PREVIOUS)" ;;
    esac
}

roll_service() {
    local service="$1"
    run aws ecs update-service --cluster "$CLUSTER" --service "$service" --force-new-deployment \
        --query 'service.deployments[0].id' --output text >/dev/null
    tell "$service: would start a new deployment in $CLUSTER" \
        "$service: new deployment started in $CLUSTER (follow it with: aws ecs wait services-stable --cluster $CLUSTER --services $service)"
}

cmd_staging() {
    local sha agent_uri proxy_uri registry logged_in=""
    need_tool git "deploy.sh staging tags the images with the commit"
    sha="$(git -C "$repo_root" rev-parse --short=12 HEAD)" || die "$repo_root is not a git work tree"
    if [[ -n "$(git -C "$repo_root" status --porcelain)" ]]; then
        if [[ "$DRY_RUN" == 1 ]]; then
            note "warning: the work tree has uncommitted changes; deploy.sh staging would refuse to build it"
        else
            die "the work tree has uncommitted changes, which :$sha would not name; commit or stash them first"
        fi
    fi
    # A dry run runs no docker at all, so it only looks for the program.
    if [[ "$DRY_RUN" == 1 ]]; then
        command -v docker >/dev/null ||
            note "warning: docker is not on PATH; deploy.sh staging would refuse to build the images"
    else
        docker buildx version >/dev/null 2>&1 || die "docker with the buildx plug-in is needed to build the images"
    fi
    agent_uri="$(repository_uri "$AGENT_REPOSITORY" CCA_AGENT_REPOSITORY)"
    proxy_uri="$(repository_uri "$PROXY_REPOSITORY" CCA_PROXY_REPOSITORY)"
    if [[ -n "$PROXY_SERVICE_STAGING" ]]; then
        require_service "$PROXY_SERVICE_STAGING" "staging proxy service" \
            "infra/ makes none; make it, or leave CCA_PROXY_SERVICE_STAGING unset"
    fi
    for registry in "${agent_uri%%/*}" "${proxy_uri%%/*}"; do
        if [[ "$registry" != "$logged_in" ]]; then
            announce "aws ecr get-login-password | docker login --username AWS --password-stdin $registry"
            if [[ "$DRY_RUN" != 1 ]]; then
                aws ecr get-login-password | docker login --username AWS --password-stdin "$registry"
            fi
            logged_in="$registry"
        fi
    done
    build_image agent "$agent_uri" "$sha"
    build_image proxy "$proxy_uri" "$sha"
    if [[ -n "$PROXY_SERVICE_STAGING" ]]; then
        roll_service "$PROXY_SERVICE_STAGING"
    fi
    tell "would push $agent_uri and $proxy_uri as :staging and :$sha" \
        "pushed $agent_uri and $proxy_uri as :staging and :$sha"
}

build_image() {
    local name="$1" uri="$2" sha="$3"
    # --provenance=false: one platform, so one plain manifest per tag, which promote copies.
    run docker buildx build --platform "$PLATFORM" --provenance=false \
        --file "$repo_root/docker/$name.Dockerfile" \
        --tag "$uri:staging" --tag "$uri:$sha" --push "$repo_root"
}

# Plans :latest of both repositories to become what `from_tag` is, once both repositories and
# the proxy service are known to exist. Sets PROXY_MOVED.
plan_latest() {
    local from_tag="$1" keep_previous="$2"
    repository_uri "$AGENT_REPOSITORY" CCA_AGENT_REPOSITORY >/dev/null
    repository_uri "$PROXY_REPOSITORY" CCA_PROXY_REPOSITORY >/dev/null
    require_proxy_service
    plan_retag "$AGENT_REPOSITORY" "$from_tag" latest "$keep_previous"
    plan_retag "$PROXY_REPOSITORY" "$from_tag" latest "$keep_previous"
    PROXY_MOVED="$MOVED"
}

# Moves the planned tags, then rolls the proxy service if its image changed. Agent and preview
# tasks pull :latest each time one starts; only the proxy runs all the time.
apply_latest() {
    apply_tags
    if [[ "$PROXY_MOVED" == 1 ]]; then
        roll_service "$PROXY_SERVICE"
    fi
}

cmd_promote() {
    plan_latest staging 1
    apply_latest
}

# ---------------------------------------------------------------------------------------------
# Lambda

# Refuses unless the function exists.
require_function() {
    if query lambda get-function-configuration --function-name "$LAMBDA_FUNCTION" \
        --query FunctionArn --output text >/dev/null; then
        return
    fi
    if not_found; then
        die "the function $LAMBDA_FUNCTION does not exist$(in_region): run terraform apply first ($FIRST_DEPLOYMENT), or name the deployment's in CCA_LAMBDA_FUNCTION or CCA_NAME_PREFIX"
    fi
    die "cannot read the function $LAMBDA_FUNCTION: $(query_error)"
}

# The version an alias of the function points at, or nothing when there is no such alias.
alias_version() {
    local name="$1" version
    version="$(query lambda list-aliases --function-name "$LAMBDA_FUNCTION" \
        --query "Aliases[?Name=='$name'].FunctionVersion | [0]" --output text)" ||
        die "cannot list the aliases of $LAMBDA_FUNCTION: $(query_error)"
    if [[ "$version" != None ]]; then
        echo "$version"
    fi
}

# Sets LAMBDA_LIVE and LAMBDA_PREVIOUS to the versions of the two aliases, refusing when the
# function has no live alias: the function URL and the schedule invoke it, and Terraform makes
# it with them, so without it this is not the deployment's function.
read_aliases() {
    LAMBDA_LIVE="$(alias_version "$LAMBDA_ALIAS")"
    LAMBDA_PREVIOUS="$(alias_version "$PREVIOUS")"
    [[ -n "$LAMBDA_LIVE" ]] ||
        die "the function $LAMBDA_FUNCTION has no alias $LAMBDA_ALIAS, which its function URL and the sweep schedule invoke: run terraform apply, which makes it ($FIRST_DEPLOYMENT), or name the alias in CCA_LAMBDA_ALIAS"
}

# Lambda's CodeSha256 of a file: the base64 of its SHA-256.
code_sha256() {
    openssl dgst -sha256 -binary "$1" | openssl base64 -A
}

# Points an alias at a version, creating the alias if need be.
set_alias() {
    local name="$1" version="$2" exists="$3"
    local verb=update-alias
    if [[ -z "$exists" ]]; then
        verb=create-alias
    fi
    run aws lambda "$verb" --function-name "$LAMBDA_FUNCTION" --name "$name" \
        --function-version "$version" --query AliasArn --output text >/dev/null
}

# The settings of the function a version fixes (of the alias named, else of $LATEST), as one
# line of JSON.
function_settings() {
    local qualifier=()
    [[ -n "${1:-}" ]] && qualifier=(--qualifier "$1")
    aws lambda get-function-configuration --function-name "$LAMBDA_FUNCTION" "${qualifier[@]}" \
        --query '[Runtime,Handler,Role,MemorySize,Timeout,Environment.Variables,VpcConfig.SubnetIds,VpcConfig.SecurityGroupIds,Architectures,Layers[].Arn,EphemeralStorage.Size]' \
        --output json | tr -d ' \n'
}

cmd_lambda() {
    local zip sha dirty="" code_sha version
    need_tool openssl "deploy.sh lambda compares the package with the one the alias runs"
    require_function
    read_aliases
    sha="$(git -C "$repo_root" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
    if [[ -n "${CCA_LAMBDA_ZIP:-}" ]]; then
        zip="$CCA_LAMBDA_ZIP"
        [[ -f "$zip" ]] || die "CCA_LAMBDA_ZIP names no file: $zip"
        sha="$(basename "$zip")"
    else
        if [[ -n "$(git -C "$repo_root" status --porcelain 2>/dev/null)" ]]; then
            dirty="-dirty"
        fi
        announce scripts/build-lambda.sh
        if [[ "$DRY_RUN" == 1 ]]; then
            zip=BUILT_PACKAGE.zip
        else
            zip="$("$repo_root/scripts/build-lambda.sh")"
        fi
    fi
    # Nothing to do only when the alias runs this package with the function's current settings:
    # a change Terraform made to the function (its environment, memory, subnets…) reaches the
    # alias only through a new version, even with the same package.
    if [[ -f "$zip" ]] &&
        [[ "$(function_settings "$LAMBDA_ALIAS")" == "$(function_settings)" ]] &&
        [[ "$(aws lambda get-function-configuration --function-name "$LAMBDA_FUNCTION" \
            --qualifier "$LAMBDA_ALIAS" --query CodeSha256 --output text)" == "$(code_sha256 "$zip")" ]]; then
        note "$LAMBDA_FUNCTION: alias $LAMBDA_ALIAS (version $LAMBDA_LIVE) already runs this package with the function's settings"
        return
    fi

    code_sha="$(run aws lambda update-function-code --function-name "$LAMBDA_FUNCTION" \
        --zip-file "fileb://$zip" --query CodeSha256 --output text)"
    run aws lambda wait function-updated --function-name "$LAMBDA_FUNCTION"
    # Publishing names the code just uploaded, so a concurrent upload cannot be published in its
    # place. Unchanged code and configuration publish no new version: the latest is returned.
    version="$(run aws lambda publish-version --function-name "$LAMBDA_FUNCTION" \
        --code-sha256 "${code_sha:-UPLOADED_CODE_SHA256}" --description "deploy.sh lambda: $sha$dirty" \
        --query Version --output text)"
    version="${version:-NEW_VERSION}"
    if [[ "$DRY_RUN" != 1 && ! "$version" =~ ^[0-9]+$ ]]; then
        die "publish-version answered '$version', not a version number"
    fi
    run aws lambda wait published-version-active --function-name "$LAMBDA_FUNCTION" --qualifier "$version"
    if [[ "$LAMBDA_LIVE" != "$version" && "$LAMBDA_LIVE" != "$LAMBDA_PREVIOUS" ]]; then
        set_alias "$PREVIOUS" "$LAMBDA_LIVE" "$LAMBDA_PREVIOUS"
    fi
    if [[ "$LAMBDA_LIVE" == "$version" ]]; then
        note "$LAMBDA_FUNCTION: alias $LAMBDA_ALIAS is already version $version"
        return
    fi
    set_alias "$LAMBDA_ALIAS" "$version" "$LAMBDA_LIVE"
    tell "$LAMBDA_FUNCTION: would move alias $LAMBDA_ALIAS from version $LAMBDA_LIVE to version $version, the replaced one kept under the alias $PREVIOUS" \
        "$LAMBDA_FUNCTION: moved alias $LAMBDA_ALIAS from version $LAMBDA_LIVE to version $version, the replaced one kept under the alias $PREVIOUS"
}

# Plans the alias back to the version under `previous`. Sets LAMBDA_ROLLBACK to that version,
# or leaves it empty when the alias is already there.
plan_rollback_lambda() {
    require_function
    read_aliases
    LAMBDA_ROLLBACK=""
    [[ -n "$LAMBDA_PREVIOUS" ]] ||
        die "$LAMBDA_FUNCTION has no alias $PREVIOUS: nothing to roll back to (deploy.sh lambda records it)"
    if [[ "$LAMBDA_LIVE" == "$LAMBDA_PREVIOUS" ]]; then
        note "$LAMBDA_FUNCTION: alias $LAMBDA_ALIAS is already version $LAMBDA_PREVIOUS"
    else
        LAMBDA_ROLLBACK="$LAMBDA_PREVIOUS"
    fi
}

# Every read of the plan comes first, so a rollback of both stops before changing anything when
# either has nothing to return to or something it needs is missing.
cmd_rollback() {
    local target="$1"
    if [[ "$target" != lambda ]]; then
        plan_latest "$PREVIOUS" 0
    fi
    if [[ "$target" != images ]]; then
        plan_rollback_lambda
    fi
    if [[ "$target" != lambda ]]; then
        apply_latest
    fi
    if [[ "$target" != images && -n "$LAMBDA_ROLLBACK" ]]; then
        set_alias "$LAMBDA_ALIAS" "$LAMBDA_ROLLBACK" "$LAMBDA_LIVE"
        tell "$LAMBDA_FUNCTION: would move alias $LAMBDA_ALIAS from version $LAMBDA_LIVE back to version $LAMBDA_ROLLBACK" \
            "$LAMBDA_FUNCTION: moved alias $LAMBDA_ALIAS from version $LAMBDA_LIVE back to version $LAMBDA_ROLLBACK"
    fi
}

# ---------------------------------------------------------------------------------------------

main() {
    DRY_RUN=0
    local words=() arg
    for arg in "$@"; do
        case "$arg" in
        --dry-run) DRY_RUN=1 ;;
        -h | --help)
            usage
            exit 0
            ;;
        -*) usage_error "unknown option: $arg" ;;
        *) words+=("$arg") ;;
        esac
    done
    [[ ${#words[@]} -gt 0 ]] || usage_error "no command given"
    local command="${words[0]}" target=""
    case "$command" in
    staging | promote | lambda)
        [[ ${#words[@]} -eq 1 ]] || usage_error "$command takes no argument: ${words[1]}"
        ;;
    rollback)
        [[ ${#words[@]} -le 2 ]] || usage_error "rollback takes one target at most"
        target="${words[1]:-}"
        case "$target" in
        "" | images | lambda) ;;
        *) usage_error "unknown rollback target: $target (images or lambda)" ;;
        esac
        ;;
    *) usage_error "unknown command: $command" ;;
    esac

    need_tool aws "the AWS CLI (v1 or v2) makes every AWS call"
    REGION="${AWS_REGION:-${AWS_DEFAULT_REGION:-}}"
    local prefix="${CCA_NAME_PREFIX:-claude-cloud-agent}"
    AGENT_REPOSITORY="${CCA_AGENT_REPOSITORY:-$prefix-agent}"
    PROXY_REPOSITORY="${CCA_PROXY_REPOSITORY:-$prefix-uat-proxy}"
    CLUSTER="${CCA_CLUSTER:-$prefix}"
    PROXY_SERVICE="${CCA_PROXY_SERVICE:-$prefix-uat-proxy}"
    PROXY_SERVICE_STAGING="${CCA_PROXY_SERVICE_STAGING:-}"
    LAMBDA_FUNCTION="${CCA_LAMBDA_FUNCTION:-$prefix-webhook}"
    LAMBDA_ALIAS="${CCA_LAMBDA_ALIAS:-live}"
    [[ "$LAMBDA_ALIAS" != "$PREVIOUS" ]] || die "CCA_LAMBDA_ALIAS cannot be '$PREVIOUS', the alias rollback returns to"
    # AWS CLI v2 would page long answers through `less`.
    export AWS_PAGER=""

    WORK="$(mktemp -d "${TMPDIR:-/tmp}/cca-deploy.XXXXXX")"
    trap 'rm -rf "$WORK"' EXIT
    exec 3>&1
    if [[ "$DRY_RUN" == 1 ]]; then
        note "dry run: nothing will be changed; each command that would change something is printed as \"would run: <command>\""
    fi

    case "$command" in
    staging) cmd_staging ;;
    promote) cmd_promote ;;
    lambda) cmd_lambda ;;
    rollback) cmd_rollback "$target" ;;
    esac
    if [[ "$DRY_RUN" == 1 ]]; then
        note "dry run: nothing was changed"
    fi
}

main "$@"
