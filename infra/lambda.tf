# The webhook: cca-webhook as a Lambda with a function URL (GitHub and JIRA deliveries), also
# invoked by an EventBridge schedule to run the sweeper. It lives in the VPC because it calls the
# agents' control API at their private addresses.

resource "aws_lambda_function" "webhook" {
  #checkov:skip=CKV_AWS_50:The Rust binary emits no X-Ray segments; its logs carry each delivery's spans (session, repository, PR) as JSON.
  #checkov:skip=CKV_AWS_116:Deliveries are synchronous (GitHub redelivers on failure, and a failed delivery is forgotten so the redelivery runs again); the only asynchronous event is the sweep schedule, whose next run repeats a failed one within minutes.
  #checkov:skip=CKV_AWS_173:The environment holds names, ARNs and ports only; every credential is read from Secrets Manager at start-up.
  #checkov:skip=CKV_AWS_272:The package is a single static binary built by `deploy.sh lambda`; no code-signing profile exists in this deployment.
  #checkov:skip=CKV_AWS_115:Concurrency is lambda_reserved_concurrency, unreserved by default: accounts with the default quota of 10 cannot reserve any, and deliveries are deduplicated by the store whatever the concurrency.
  function_name                  = "${local.prefix}-webhook"
  description                    = "cca-webhook: GitHub and JIRA webhook intake, and the scheduled sweeper"
  role                           = aws_iam_role.webhook.arn
  runtime                        = "provided.al2023"
  handler                        = "bootstrap"
  architectures                  = ["x86_64"] # what scripts/build-lambda.sh builds
  filename                       = var.lambda_zip_path
  source_code_hash               = filebase64sha256(var.lambda_zip_path)
  memory_size                    = var.lambda_memory_mb
  timeout                        = var.lambda_timeout_seconds
  reserved_concurrent_executions = var.lambda_reserved_concurrency
  publish                        = true

  vpc_config {
    subnet_ids         = var.lambda_subnet_ids
    security_group_ids = [aws_security_group.webhook.id]
  }

  environment {
    variables = local.webhook_environment
  }

  lifecycle {
    # A Lambda in a VPC never gets a public address: without a NAT its calls to GitHub and the
    # AWS APIs time out, which shows only when the first delivery arrives.
    precondition {
      condition     = length(local.lambda_subnets_without_nat) == 0
      error_message = "lambda_subnet_ids must be private subnets whose route table sends 0.0.0.0/0 to a NAT gateway (a Lambda never gets a public address); these do not: ${join(", ", local.lambda_subnets_without_nat)}."
    }
  }

  # Logs go to /aws/lambda/<function name>, made beforehand with its retention.
  depends_on = [
    aws_cloudwatch_log_group.this,
    aws_iam_role_policy.webhook,
    aws_iam_role_policy.webhook_vpc,
  ]
}

locals {
  # Where session containers get their installation tokens: the webhook's token broker.
  token_url = trimsuffix(aws_lambda_function_url.webhook.function_url, "/")

  # What cca-webhook reads (docs/CONFIGURATION.md, "cca-webhook"); empty values are left out. In
  # Lambda it always logs JSON.
  webhook_environment = { for name, value in merge(var.webhook_settings, {
    SESSIONS_TABLE = aws_dynamodb_table.sessions.name
    LAUNCHER       = "ecs"
    ECS_CLUSTER    = aws_ecs_cluster.this.name
    # Family names, not the task definitions' attributes: those hold the function's URL
    # (CCA_TOKEN_URL), which would make a cycle.
    AGENT_TASK_DEFINITION         = local.family["agent-latest"]
    AGENT_TASK_DEFINITION_STAGING = local.family["agent-staging"]
    UAT_TASK_DEFINITION           = local.family["preview-latest"]
    UAT_TASK_DEFINITION_STAGING   = local.family["preview-staging"]
    AGENT_CONTAINER_NAME          = local.session_containers.agent
    UAT_CONTAINER_NAME            = local.session_containers.preview
    AGENT_SUBNETS                 = join(",", var.agent_subnet_ids)
    AGENT_SECURITY_GROUPS         = aws_security_group.sessions.id
    AGENT_ASSIGN_PUBLIC_IP        = tostring(var.assign_public_ip)
    UAT_DOMAIN_SUFFIX             = local.domain
    GITHUB_API_URL                = var.github_api_url
    GITHUB_APP_SECRET_ARN         = local.github_app_secret_arn
    CONTROL_SECRET_ARN            = aws_secretsmanager_secret.control.arn
    JIRA_SECRET_ARN               = local.jira_secret_arn
    ALB_LISTENER_ARN              = var.alb_listener_arn
    IDLE_TIMEOUT_SECS             = local.idle_timeout_secs
    CONVERSATION_BUCKET           = aws_s3_bucket.conversations.bucket
  }) : name => value if value != "" }
}

# What the function URL and the schedule invoke. `deploy.sh lambda` publishes each release as a
# version and moves this alias to it (`deploy.sh rollback` moves it back), so Terraform makes the
# alias, on the version it published first, and leaves the version it serves to those commands.
resource "aws_lambda_alias" "live" {
  name             = "live"
  description      = "The release GitHub, JIRA and the sweep schedule reach (moved by deploy.sh)"
  function_name    = aws_lambda_function.webhook.function_name
  function_version = aws_lambda_function.webhook.version

  lifecycle {
    ignore_changes = [function_version]
  }
}

# GitHub and JIRA cannot sign requests for IAM, so the URL is public and every delivery is
# authenticated by its HMAC signature before anything is parsed (webhook/src/verify.rs).
resource "aws_lambda_function_url" "webhook" {
  #checkov:skip=CKV_AWS_258:GitHub and JIRA cannot sign their deliveries with AWS credentials; each delivery's HMAC signature is checked, in constant time, before anything is parsed.
  function_name      = aws_lambda_function.webhook.function_name
  qualifier          = aws_lambda_alias.live.name
  authorization_type = "NONE"
}

resource "aws_lambda_permission" "webhook_url" {
  #checkov:skip=CKV_AWS_301:The public function URL is the webhook endpoint; GitHub and JIRA deliveries are checked against their HMAC signatures before anything else happens.
  statement_id           = "PublicFunctionUrl"
  function_name          = aws_lambda_function.webhook.function_name
  qualifier              = aws_lambda_alias.live.name
  action                 = "lambda:InvokeFunctionUrl"
  principal              = "*"
  function_url_auth_type = "NONE"
}

# Since October 2025 a public function URL also needs `lambda:InvokeFunction` limited to calls
# through a function URL (the condition lambda:InvokedViaFunctionUrl). The AWS provider 5.x
# cannot express that condition (6.x can: `invoked_via_function_url`), so the AWS CLI makes the
# statement, and checks it again whenever the function or the alias is replaced or updated
# (adding it only when it is missing, so a release never leaves the URL without it). It needs the AWS CLI, with the deployment's credentials, where Terraform
# runs. `cca doctor` checks both statements (webhook-url-permissions).
resource "terraform_data" "webhook_url_invoke" {
  input = {
    function  = aws_lambda_function.webhook.function_name
    qualifier = aws_lambda_alias.live.name
    statement = "PublicFunctionUrlInvoke"
  }

  provisioner "local-exec" {
    interpreter = ["/bin/sh", "-c"]
    command     = <<-EOT
      set -e
      policy="$(aws lambda get-policy --region "$REGION" --function-name "$FUNCTION" \
        --qualifier "$QUALIFIER" --query Policy --output text 2>/dev/null || true)"
      # Already there with its condition: nothing to change, so no moment without it.
      if printf '%s' "$policy" | grep -q "\"$STATEMENT\"" &&
        printf '%s' "$policy" | grep -q "InvokedViaFunctionUrl"; then
        exit 0
      fi
      if printf '%s' "$policy" | grep -q "\"$STATEMENT\""; then
        aws lambda remove-permission --region "$REGION" --function-name "$FUNCTION" \
          --qualifier "$QUALIFIER" --statement-id "$STATEMENT"
      fi
      aws lambda add-permission --region "$REGION" --function-name "$FUNCTION" \
        --qualifier "$QUALIFIER" --statement-id "$STATEMENT" --action lambda:InvokeFunction \
        --principal '*' --invoked-via-function-url >/dev/null
    EOT
    environment = {
      REGION    = data.aws_region.current.name
      FUNCTION  = self.input.function
      QUALIFIER = self.input.qualifier
      STATEMENT = self.input.statement
    }
  }

  lifecycle {
    replace_triggered_by = [aws_lambda_function.webhook, aws_lambda_alias.live]
  }

  # One change to the alias's policy at a time (Lambda refuses concurrent ones).
  depends_on = [
    aws_lambda_function_url.webhook,
    aws_lambda_permission.webhook_url,
    aws_lambda_permission.sweep,
  ]
}

# --- The sweeper's schedule ------------------------------------------------------------------

resource "aws_cloudwatch_event_rule" "sweep" {
  name                = "${local.prefix}-sweep"
  description         = "Runs the sweeper in the webhook Lambda: stops ended and idle sessions' tasks, fails sessions whose task is gone, removes leftover load balancer rules"
  schedule_expression = var.sweep_schedule
}

resource "aws_cloudwatch_event_target" "sweep" {
  rule = aws_cloudwatch_event_rule.sweep.name
  arn  = aws_lambda_alias.live.arn
}

resource "aws_lambda_permission" "sweep" {
  statement_id  = "SweepSchedule"
  function_name = aws_lambda_function.webhook.function_name
  qualifier     = aws_lambda_alias.live.name
  action        = "lambda:InvokeFunction"
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.sweep.arn
}
