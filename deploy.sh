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
# --dry-run prints each command that would change something, as "+ command", and runs none of
# them. The read-only queries the plan is made of (describe-repositories, batch-get-image,
# list-aliases, get-function-configuration) still run, so the printed plan names the real
# digests and versions; the webhook package is not built (its build is printed). Values known
# only once an earlier command has run appear in capitals (NEW_VERSION).
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

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

usage() {
    cat <<'EOF'
usage: deploy.sh staging | promote | lambda | rollback [images | lambda] [--dry-run]

  staging    build the agent and proxy images and push them as :staging and :<git sha>
  promote    make :latest the manifests of :staging (no rebuild); roll the proxy service
  lambda     build the webhook package, publish it as a version, move the alias to it
  rollback   :latest back to :previous and the alias back to the previous version
             (rollback images or rollback lambda for one of the two)

  --dry-run  print the commands that would change something, run none of them

Settings: AWS_REGION, AWS_ENDPOINT_URL, CCA_NAME_PREFIX (claude-cloud-agent), and, named
after it, CCA_AGENT_REPOSITORY (<prefix>-agent), CCA_PROXY_REPOSITORY (<prefix>-uat-proxy),
CCA_CLUSTER (<prefix>), CCA_PROXY_SERVICE (<prefix>-uat-proxy), CCA_LAMBDA_FUNCTION
(<prefix>-webhook); CCA_PROXY_SERVICE_STAGING, CCA_LAMBDA_ALIAS (live), CCA_LAMBDA_ZIP.
See the top of deploy.sh.
EOF
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

# Runs a command that changes something, after printing it; with --dry-run, only prints it.
# The print goes to descriptor 3 (the script's standard output), so a caller may capture what
# the command itself prints.
run() {
    {
        printf '+'
        printf ' %q' "$@"
        printf '\n'
    } >&3
    if [[ "$DRY_RUN" == 1 ]]; then
        return 0
    fi
    "$@"
}

# ---------------------------------------------------------------------------------------------
# Images

# The URI of an ECR repository (registry/name), which also proves that it exists.
repository_uri() {
    local repository="$1" uri
    uri="$(aws ecr describe-repositories --repository-names "$repository" \
        --query 'repositories[0].repositoryUri' --output text)" ||
        die "cannot read the ECR repository $repository (is it created, and are the region and credentials right?)"
    echo "$uri"
}

# "<digest> <media type>" of a tag, or nothing when the repository has no such tag.
image_of() {
    local repository="$1" tag="$2" out
    out="$(aws ecr batch-get-image --repository-name "$repository" --image-ids "imageTag=$tag" \
        --accepted-media-types "${MANIFEST_TYPES[@]}" \
        --query 'images[0].[imageId.imageDigest,imageManifestMediaType]' --output text)" ||
        die "cannot read $repository:$tag"
    if [[ "$out" != None ]]; then
        echo "$out"
    fi
}

# Writes the manifest of a digest to a file, byte for byte as ECR returns it. (The command
# substitution drops the newline the CLI adds after a text value; the manifests that docker
# pushes do not end in one. put-image's answer is checked against the digest anyway.)
save_manifest() {
    local repository="$1" digest="$2" file="$3" manifest
    manifest="$(aws ecr batch-get-image --repository-name "$repository" \
        --image-ids "imageDigest=$digest" --accepted-media-types "${MANIFEST_TYPES[@]}" \
        --query 'images[0].imageManifest' --output text)" ||
        die "cannot read the manifest of $repository@$digest"
    [[ -n "$manifest" && "$manifest" != None ]] || die "ECR returned no manifest for $repository@$digest"
    printf '%s' "$manifest" >"$file"
}

# Planned tag moves, executed only once every read of the plan has succeeded.
PUT_REPOSITORY=()
PUT_TAG=()
PUT_DIGEST=()
PUT_MEDIA_TYPE=()
PUT_FILE=()

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
}

# Plans `tag` of a repository to become what `from_tag` is, keeping the replaced image under
# :previous when asked. Sets MOVED to 1 when the tag moves, 0 when it already is that image.
plan_retag() {
    local repository="$1" from_tag="$2" tag="$3" keep_previous="$4"
    local from from_digest from_type current current_digest="" current_type="" previous
    local previous_digest=""
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
    fi
    plan_tag "$repository" "$tag" "$from_digest" "$from_type"
    note "$repository: :$tag ${current_digest:-(none)} -> $from_digest (:$from_tag)"
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
    note "$service: new deployment started in $CLUSTER (follow it with: aws ecs wait services-stable --cluster $CLUSTER --services $service)"
}

cmd_staging() {
    local sha agent_uri proxy_uri registry logged_in=""
    command -v git >/dev/null || die "git is needed to tag the images with the commit"
    sha="$(git -C "$repo_root" rev-parse --short=12 HEAD)" || die "$repo_root is not a git work tree"
    if [[ -n "$(git -C "$repo_root" status --porcelain)" ]]; then
        if [[ "$DRY_RUN" == 1 ]]; then
            note "warning: the work tree has uncommitted changes; deploy.sh staging would refuse to build it"
        else
            die "the work tree has uncommitted changes, which :$sha would not name; commit or stash them first"
        fi
    fi
    if [[ "$DRY_RUN" != 1 ]]; then
        docker buildx version >/dev/null 2>&1 || die "docker with the buildx plug-in is needed to build the images"
    fi
    agent_uri="$(repository_uri "$AGENT_REPOSITORY")"
    proxy_uri="$(repository_uri "$PROXY_REPOSITORY")"
    for registry in "${agent_uri%%/*}" "${proxy_uri%%/*}"; do
        if [[ "$registry" != "$logged_in" ]]; then
            note "+ aws ecr get-login-password | docker login --username AWS --password-stdin $registry"
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
    note "pushed $agent_uri and $proxy_uri as :staging and :$sha"
}

build_image() {
    local name="$1" uri="$2" sha="$3"
    # --provenance=false: one platform, so one plain manifest per tag, which promote copies.
    run docker buildx build --platform "$PLATFORM" --provenance=false \
        --file "$repo_root/docker/$name.Dockerfile" \
        --tag "$uri:staging" --tag "$uri:$sha" --push "$repo_root"
}

# Plans :latest of both repositories to become what `from_tag` is. Sets PROXY_MOVED.
plan_latest() {
    local from_tag="$1" keep_previous="$2"
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

# The version an alias of the function points at, or nothing when there is no such alias.
alias_version() {
    local name="$1" version
    version="$(aws lambda list-aliases --function-name "$LAMBDA_FUNCTION" \
        --query "Aliases[?Name=='$name'].FunctionVersion | [0]" --output text)" ||
        die "cannot list the aliases of $LAMBDA_FUNCTION"
    if [[ "$version" != None ]]; then
        echo "$version"
    fi
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

cmd_lambda() {
    local zip sha dirty="" code_sha version live previous
    aws lambda get-function-configuration --function-name "$LAMBDA_FUNCTION" \
        --query FunctionArn --output text >/dev/null ||
        die "cannot read the function $LAMBDA_FUNCTION (is it created, and are the region and credentials right?)"
    sha="$(git -C "$repo_root" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
    if [[ -n "${CCA_LAMBDA_ZIP:-}" ]]; then
        zip="$CCA_LAMBDA_ZIP"
        [[ -f "$zip" ]] || die "CCA_LAMBDA_ZIP names no file: $zip"
        sha="$(basename "$zip")"
    else
        if [[ -n "$(git -C "$repo_root" status --porcelain 2>/dev/null)" ]]; then
            dirty="-dirty"
        fi
        note "+ scripts/build-lambda.sh"
        if [[ "$DRY_RUN" == 1 ]]; then
            zip=BUILT_PACKAGE.zip
        else
            zip="$("$repo_root/scripts/build-lambda.sh")"
        fi
    fi
    live="$(alias_version "$LAMBDA_ALIAS")"
    previous="$(alias_version "$PREVIOUS")"
    if [[ -n "$live" && -f "$zip" ]] &&
        [[ "$(aws lambda get-function-configuration --function-name "$LAMBDA_FUNCTION" \
            --qualifier "$LAMBDA_ALIAS" --query CodeSha256 --output text)" == "$(code_sha256 "$zip")" ]]; then
        note "$LAMBDA_FUNCTION: alias $LAMBDA_ALIAS (version $live) already runs this package"
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
    if [[ -n "$live" && "$live" != "$version" && "$live" != "$previous" ]]; then
        set_alias "$PREVIOUS" "$live" "$previous"
    fi
    if [[ "$live" == "$version" ]]; then
        note "$LAMBDA_FUNCTION: alias $LAMBDA_ALIAS is already version $version"
        return
    fi
    set_alias "$LAMBDA_ALIAS" "$version" "$live"
    note "$LAMBDA_FUNCTION: alias $LAMBDA_ALIAS ${live:-(none)} -> version $version"
}

# Plans the alias back to the version under `previous`. Sets LAMBDA_ROLLBACK to the version and
# LAMBDA_LIVE to the current one; LAMBDA_ROLLBACK stays empty when the alias is already there.
plan_rollback_lambda() {
    local previous
    LAMBDA_LIVE="$(alias_version "$LAMBDA_ALIAS")"
    previous="$(alias_version "$PREVIOUS")"
    LAMBDA_ROLLBACK=""
    [[ -n "$previous" ]] ||
        die "$LAMBDA_FUNCTION has no alias $PREVIOUS: nothing to roll back to (deploy.sh lambda records it)"
    if [[ "$LAMBDA_LIVE" == "$previous" ]]; then
        note "$LAMBDA_FUNCTION: alias $LAMBDA_ALIAS is already version $previous"
    else
        LAMBDA_ROLLBACK="$previous"
    fi
}

# Every read of the plan comes first, so a rollback of both stops before changing anything when
# either has nothing to return to.
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
        note "$LAMBDA_FUNCTION: alias $LAMBDA_ALIAS ${LAMBDA_LIVE:-(none)} -> version $LAMBDA_ROLLBACK"
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

    command -v aws >/dev/null || die "the AWS CLI (aws) is needed"
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
        note "dry run: the commands below are printed, not run"
    fi

    case "$command" in
    staging) cmd_staging ;;
    promote) cmd_promote ;;
    lambda) cmd_lambda ;;
    rollback) cmd_rollback "$target" ;;
    esac
}

main "$@"
