#!/usr/bin/env bash
# Tests the Terraform of infra/:
#   - shellcheck of this script, `terraform fmt -check`, and checkov (every skipped check is
#     justified on the line that skips it);
#   - with the offline provider mirror and the AWS emulator: `init`, `validate`, then `plan` and
#     `apply` against the emulator, in which infra/test/fixture.py first makes the existing VPC,
#     subnets and load balancer listener that infra/ takes as inputs, a second `plan` that must
#     find nothing to change, and a plan of the choices the applied one did not take.
#
#   CCA_MOTO_URL=http://127.0.0.1:5000 infra/test/run.sh
#
# scripts/test.sh runs it once the emulator is up. Without the provider mirror (TF_PLUGIN_MIRROR,
# default /opt/tf-plugins) or CCA_MOTO_URL, the emulator part is skipped with a message. The
# applied deployment stays in the emulator; when CCA_INFRA_OUTPUTS names a file, `terraform
# output -json` is written there (`.doctor_environment.value` holds the variables `cca doctor`
# reads), and the file is removed first, so it never describes an earlier emulator.
set -euo pipefail

CHECKOV_VERSION=3.3.30
# The AWS CLI that terraform_data.webhook_url_invoke runs (as scripts/test-deploy.sh pins it).
AWSCLI_VERSION=1.46.3
PLUGIN_MIRROR="${TF_PLUGIN_MIRROR:-/opt/tf-plugins}"

infra="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${CCA_CACHE:-$HOME/.cache/cca}"
moto_venv="$cache/venv"
checkov_venv="$cache/checkov-venv"
awscli_venv="$cache/awscli-venv"

step() { printf '\n--> infra: %s\n' "$*"; }
fail() {
    printf '\ninfra/test/run.sh FAILED: %s\n' "$*" >&2
    exit 1
}

timings=()
# Runs a command and records how long it took under a label; keeps its exit status.
timed() {
    local label="$1" start="$SECONDS" status=0
    shift
    "$@" || status=$?
    timings+=("$label $((SECONDS - start))s")
    return "$status"
}

work="$(mktemp -d "${TMPDIR:-/tmp}/cca-infra.XXXXXX")"
trap 'rm -rf "$work"' EXIT

if [[ -n "${CCA_INFRA_OUTPUTS:-}" ]]; then
    rm -f "$CCA_INFRA_OUTPUTS" "$(dirname "$CCA_INFRA_OUTPUTS")/policies.json"
fi

# Terraform installs providers from the offline mirror only, never from the registry.
cat >"$work/cli.tfrc" <<EOF
provider_installation {
  filesystem_mirror {
    path    = "$PLUGIN_MIRROR"
    include = ["registry.terraform.io/*/*"]
  }
}
EOF
export TF_CLI_CONFIG_FILE="$work/cli.tfrc"
export TF_IN_AUTOMATION=1
export TF_INPUT=0

step "shellcheck"
if command -v shellcheck >/dev/null; then
    shellcheck "${BASH_SOURCE[0]}" || fail "shellcheck found problems in ${BASH_SOURCE[0]}"
else
    echo "shellcheck is not installed: skipped"
fi

command -v terraform >/dev/null || fail "terraform is not on PATH"

step "terraform fmt -check -recursive"
terraform fmt -check -recursive -diff "$infra" || fail "formatting differs: run 'terraform fmt -recursive infra'"

step "checkov $CHECKOV_VERSION (every skip is justified where it is made)"
if ! "$checkov_venv/bin/checkov" --version 2>/dev/null | grep -qx "$CHECKOV_VERSION"; then
    # A venv of its own: checkov pins versions of boto3 that moto's venv must not get.
    python3 -m venv "$checkov_venv" || fail "could not create a Python venv at $checkov_venv"
    "$checkov_venv/bin/python" -m pip install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION" ||
        fail "pip could not install checkov==$CHECKOV_VERSION"
fi
timed checkov "$checkov_venv/bin/checkov" --directory "$infra" --framework terraform \
    --quiet --compact --skip-download ||
    fail "checkov reported failed checks"
echo "checkov: no failed check"

if [[ ! -d "$PLUGIN_MIRROR/registry.terraform.io/hashicorp/aws" ]]; then
    echo "infra: skipped init, validate, plan and apply: no provider mirror at $PLUGIN_MIRROR (set TF_PLUGIN_MIRROR)"
    exit 0
fi
if [[ -z "${CCA_MOTO_URL:-}" ]]; then
    echo "infra: skipped init, validate, plan and apply: CCA_MOTO_URL is not set (scripts/test.sh starts the emulator)"
    exit 0
fi
[[ -x "$moto_venv/bin/python" ]] || fail "no Python venv with boto3 at $moto_venv (scripts/test.sh makes it)"

# A copy of the configuration, with the test's provider settings added as an override file, so
# that infra/ itself never points at the emulator.
config="$work/config"
mkdir "$config"
cp "$infra"/*.tf "$infra"/*.tf.json "$config"/
{
    echo '# Written by infra/test/run.sh: the AWS provider talks to the emulator.'
    echo 'provider "aws" {'
    echo '  access_key                  = "testing"'
    echo '  secret_key                  = "testing"'
    echo '  skip_credentials_validation = true'
    echo '  skip_metadata_api_check     = true'
    echo '  s3_use_path_style           = true'
    echo '  endpoints {'
    for service in cloudwatch dynamodb ec2 ecr ecs elbv2 events iam kms lambda logs secretsmanager sts; do
        printf '    %-14s = "%s"\n' "$service" "$CCA_MOTO_URL"
    done
    echo '  }'
    echo '}'
} >"$config/moto_override.tf"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
unset AWS_PROFILE
export AWS_ENDPOINT_URL="$CCA_MOTO_URL" # a service missed above still never reaches AWS
tf() { terraform -chdir="$config" "$@"; }

# The configuration runs the AWS CLI for the one permission the provider cannot express.
if ! "$awscli_venv/bin/aws" --version 2>&1 | grep -q "^aws-cli/$AWSCLI_VERSION "; then
    python3 -m venv "$awscli_venv" || fail "could not create a Python venv at $awscli_venv"
    "$awscli_venv/bin/python" -m pip install --quiet --disable-pip-version-check "awscli==$AWSCLI_VERSION" </dev/null ||
        fail "pip could not install awscli==$AWSCLI_VERSION"
fi
export PATH="$awscli_venv/bin:$PATH"

step "terraform init (offline, from $PLUGIN_MIRROR)"
timed init tf init -backend=false -input=false -no-color >"$work/init.log" ||
    {
        cat "$work/init.log" >&2
        fail "terraform init"
    }

step "terraform validate"
tf validate -no-color || fail "terraform validate"

step "the existing VPC, subnets and load balancer listener, made in the emulator"
# Unique names, so that runs against one emulator do not meet.
prefix="cca-t$(od -An -N4 -tx4 /dev/urandom | tr -d ' \n')"
"$moto_venv/bin/python" "$infra/test/fixture.py" "$CCA_MOTO_URL" "$prefix" "$work/fixture" ||
    fail "could not make the fixture in the emulator at $CCA_MOTO_URL"
vars=(-var-file="$work/fixture/test.tfvars.json")

step "terraform plan"
timed plan tf plan -no-color -input=false "${vars[@]}" -out="$work/tfplan" >"$work/plan.log" ||
    {
        cat "$work/plan.log" >&2
        fail "terraform plan"
    }
grep -E '^Plan:' "$work/plan.log"

step "terraform apply"
timed apply tf apply -no-color -input=false "$work/tfplan" >"$work/apply.log" ||
    {
        cat "$work/apply.log" >&2
        fail "terraform apply"
    }
grep -E '^Apply complete' "$work/apply.log"

step "no session task role may read the GitHub App secret or the control key"
tf show -json >"$work/state.json" || fail "terraform show -json"
python3 "$infra/test/session_secrets.py" --doctored <"$work/state.json" ||
    fail "a session task role can read the GitHub App secret or the control key"
if [[ -n "${CCA_INFRA_OUTPUTS:-}" ]]; then
    # For crates/cca/tests/iam.rs: the code's DynamoDB requests against these policies.
    mkdir -p "$(dirname "$CCA_INFRA_OUTPUTS")"
    python3 "$infra/test/policies.py" "$(dirname "$CCA_INFRA_OUTPUTS")/policies.json" <"$work/state.json" ||
        fail "could not write the roles' policies"
fi

step "terraform plan again: nothing may change"
status=0
timed replan tf plan -no-color -input=false -detailed-exitcode "${vars[@]}" >"$work/replan.log" || status=$?
case "$status" in
0) echo "No changes." ;;
2)
    cat "$work/replan.log" >&2
    fail "the second plan wants changes: the configuration does not converge"
    ;;
*)
    cat "$work/replan.log" >&2
    fail "the second terraform plan"
    ;;
esac

# Plans that must refuse a network the system cannot work in, before changing anything.
refused_plan() {
    local label="$1" expected="$2" status=0
    shift 2
    tf plan -no-color -input=false -refresh=false "${vars[@]}" "$@" >"$work/refused.log" 2>&1 || status=$?
    # Terraform wraps its messages: compare on one line.
    if [[ "$status" == 0 ]] || ! tr -s '\n ' '  ' <"$work/refused.log" | grep -qF "$expected"; then
        cat "$work/refused.log" >&2
        fail "the plan with $label was not refused with \"$expected\" (exit status $status)"
    fi
    echo "refused as it must be: $label"
}
subnet() { "$moto_venv/bin/python" -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$work/fixture/subnets.json" "$1"; }
step "a Lambda in subnets without a NAT, and a proxy outside the load balancer's zones, are refused"
timed refused-plans refused_plan "the Lambda in public subnets" "route table sends 0.0.0.0/0 to a NAT gateway" \
    -var="lambda_subnet_ids=[\"$(subnet public-a)\"]"
refused_plan "the proxy in us-east-1c" "must be in the availability zones of the load balancer" \
    -var="proxy_subnet_ids=[\"$(subnet public-c)\"]"

step "terraform plan of the other choices: Anthropic key, the original's GitHub App secret, no JIRA"
other=(
    -var=model_access=anthropic_secret
    -var=enable_jira=false
    -var=github_app_secret_arn=arn:aws:secretsmanager:us-east-1:123456789012:secret:claude-dev/github-app-AbCdEf
)
status=0
timed other-plan tf plan -no-color -input=false -refresh=false -detailed-exitcode "${vars[@]}" "${other[@]}" >"$work/other.log" || status=$?
if [[ "$status" != 2 ]]; then
    cat "$work/other.log" >&2
    fail "the plan of the other choices (exit status $status, expected changes)"
fi
grep -E '^Plan:' "$work/other.log"

if [[ -n "${CCA_INFRA_OUTPUTS:-}" ]]; then
    mkdir -p "$(dirname "$CCA_INFRA_OUTPUTS")"
    tf output -json >"$CCA_INFRA_OUTPUTS" || fail "terraform output"
    echo "outputs of the applied deployment: $CCA_INFRA_OUTPUTS"
fi

step "cca doctor against the applied deployment: the Terraform and the code agree"
if [[ -z "${CCA_BIN:-}" || ! -x "${CCA_BIN:-}" ]]; then
    echo "skipped: CCA_BIN does not name a built cca (scripts/test.sh builds it first)"
else
    tf output -json >"$work/outputs.json" || fail "terraform output"
    "$moto_venv/bin/python" "$infra/test/operate.py" "$CCA_MOTO_URL" "$work/outputs.json" \
        "$infra/../crates/testkit/keys/app.pem" || fail "setting the secrets and the proxy target"
    doctor_env=()
    while IFS= read -r assignment; do
        doctor_env+=("$assignment")
    done < <("$moto_venv/bin/python" -c '
import json, sys
for name, value in json.load(open(sys.argv[1]))["doctor_environment"]["value"].items():
    print(f"{name}={value}")
' "$work/outputs.json")
    env "${doctor_env[@]}" "$CCA_BIN" doctor || fail "cca doctor found problems in the applied deployment"
fi

step "passed (${timings[*]})"
