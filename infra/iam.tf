# Roles, each allowed what its code calls and nothing more (no action on every resource):
#
#   execution[agent|preview|proxy]  ECS pulls the image and writes the container's log group;
#                  for the proxy it also reads the App secret, whose `client_id` and
#                  `client_secret` ECS puts in the proxy's environment (sign-in in front of
#                  previews): the proxy's own code never reads the secret, nor its private key.
#   task[agent]    the coding session: its record, the App, control (and JIRA, Anthropic) secrets,
#                  Bedrock's Claude models.
#   task[preview]  a PR preview: its record, the App and control secrets.
#   task[proxy]    the UAT proxy: reads records, and writes only the activity of one.
#   webhook        the Lambda: the table, RunTask/StopTask of the session task definitions in the
#                  cluster (PassRole of their roles only), its secrets, the sweeper's clean-up of
#                  the listener's leftover rules and target groups, its log group, its VPC network
#                  interfaces.
#
# Every secret is read through Secrets Manager only (kms:ViaService), so a role that may decrypt
# with the key still cannot decrypt anything else with it.

locals {
  kinds = toset(["agent", "preview", "proxy"])

  table_arn = aws_dynamodb_table.sessions.arn
  repository_of = {
    agent   = aws_ecr_repository.this["agent"].arn
    preview = aws_ecr_repository.this["agent"].arn
    proxy   = aws_ecr_repository.this["uat-proxy"].arn
  }
  secrets_of = {
    # Sessions never read the GitHub App or the control key: the webhook mints their tokens.
    agent   = compact([local.jira_secret_arn, local.anthropic_secret_arn])
    preview = []
    webhook = compact([local.github_app_secret_arn, aws_secretsmanager_secret.control.arn, local.jira_secret_arn])
  }
  cluster_tasks = "arn:${local.partition}:ecs:${local.region}:${local.account}:task/${aws_ecs_cluster.this.name}/*"
}

# --- Trust -----------------------------------------------------------------------------------

data "aws_iam_policy_document" "ecs_tasks_trust" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }

    # Only ECS acting for this account's tasks (no confused deputy).
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:ecs:${local.region}:${local.account}:*"]
    }
  }
}

data "aws_iam_policy_document" "lambda_trust" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }
}

# --- Task execution roles --------------------------------------------------------------------

resource "aws_iam_role" "execution" {
  for_each           = local.kinds
  name               = "${local.prefix}-${each.key}-execution"
  description        = "ECS pulls the ${each.key} image and writes its logs"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_trust.json
}

data "aws_iam_policy_document" "execution" {
  for_each = local.kinds

  statement {
    sid = "EcrLogin"
    # GetAuthorizationToken names no repository: it cannot be scoped.
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid       = "PullTheImage"
    actions   = ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"]
    resources = [local.repository_of[each.key]]
  }

  statement {
    sid       = "WriteTheLogGroup"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.this[each.key].arn}:*"]
  }

  dynamic "statement" {
    for_each = each.key == "proxy" && var.preview_sign_in ? [1] : []
    content {
      sid       = "InjectTheSignInClient"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = [local.github_app_secret_arn]
    }
  }

  dynamic "statement" {
    for_each = each.key == "proxy" && var.preview_sign_in ? [1] : []
    content {
      sid       = "DecryptTheSignInClientThroughSecretsManager"
      actions   = ["kms:Decrypt"]
      resources = [aws_kms_key.this.arn]

      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["secretsmanager.${local.region}.amazonaws.com"]
      }
    }
  }
}

resource "aws_iam_role_policy" "execution" {
  for_each = local.kinds
  name     = "pull-and-log"
  role     = aws_iam_role.execution[each.key].id
  policy   = data.aws_iam_policy_document.execution[each.key].json
}

# --- Task roles ------------------------------------------------------------------------------

resource "aws_iam_role" "task" {
  for_each           = local.kinds
  name               = "${local.prefix}-${each.key}-task"
  description        = "What the ${each.key} container's code may do"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_trust.json
}

# Sessions (agent and preview) read their record and update it (address, status, heartbeat,
# cost; ending a session also releases its active-key pointer in the same transaction). They
# never create, delete, query or scan.
data "aws_iam_policy_document" "session_task" {
  for_each = toset(["agent", "preview"])

  statement {
    sid       = "OwnSessionRecord"
    actions   = ["dynamodb:GetItem", "dynamodb:UpdateItem"]
    resources = [local.table_arn]
  }

  dynamic "statement" {
    for_each = length(local.secrets_of[each.key]) > 0 ? [1] : []
    content {
      sid       = "ReadSecrets"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = local.secrets_of[each.key]
    }
  }

  dynamic "statement" {
    for_each = length(local.secrets_of[each.key]) > 0 ? [1] : []
    content {
      sid       = "DecryptSecretsThroughSecretsManager"
      actions   = ["kms:Decrypt"]
      resources = [aws_kms_key.this.arn]

      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["secretsmanager.${local.region}.amazonaws.com"]
      }
    }
  }

  # Claude Code on Bedrock (CLAUDE_CODE_USE_BEDROCK=1): the agent's model gateway signs its
  # requests with the task role.
  dynamic "statement" {
    for_each = each.key == "agent" && var.model_access == "bedrock" ? [1] : []

    content {
      sid       = "InvokeClaudeOnBedrock"
      actions   = ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"]
      resources = local.bedrock_model_arns
    }
  }
}

# The proxy reads whole records (GetItem; it never queries or scans) and records activity: one
# UpdateItem (`touch`) that sets `last_activity` and `updated_at`, on condition that the record
# exists (`session_id`) and has not ended (`status`), asking for nothing back. IAM's
# dynamodb:Attributes counts every attribute a request names, whether it writes or only tests it;
# the list also names every key attribute of the table and its index (`repo_full_name`,
# `pr_number` of pr-index), as DynamoDB requires of such a list, and a request under it may not ask
# for ALL_OLD or ALL_NEW. No deny on the index keys: should DynamoDB count them in a write that
# changes the index, a deny would refuse every touch. crates/cca/tests/iam.rs checks the code's
# requests against this.
data "aws_iam_policy_document" "proxy_task" {
  statement {
    sid       = "ReadSessions"
    actions   = ["dynamodb:GetItem"]
    resources = [local.table_arn]
  }

  statement {
    sid       = "RecordActivityOnly"
    actions   = ["dynamodb:UpdateItem"]
    resources = [local.table_arn]

    condition {
      test     = "ForAllValues:StringEquals"
      variable = "dynamodb:Attributes"
      values   = ["session_id", "repo_full_name", "pr_number", "status", "last_activity", "updated_at"]
    }

    condition {
      test     = "StringEqualsIfExists"
      variable = "dynamodb:ReturnValues"
      values   = ["NONE", "UPDATED_OLD", "UPDATED_NEW"]
    }
  }
}

resource "aws_iam_role_policy" "task" {
  for_each = local.kinds
  name     = "${each.key}-permissions"
  role     = aws_iam_role.task[each.key].id
  policy   = each.key == "proxy" ? data.aws_iam_policy_document.proxy_task.json : data.aws_iam_policy_document.session_task[each.key].json
}

# --- The webhook Lambda ----------------------------------------------------------------------

resource "aws_iam_role" "webhook" {
  name               = "${local.prefix}-webhook"
  description        = "cca-webhook: intake, session launches and the scheduled sweep"
  assume_role_policy = data.aws_iam_policy_document.lambda_trust.json
}

data "aws_iam_policy_document" "webhook" {
  # The store: sessions, active-key pointers and delivery ids, all in the one table; the PR index
  # for a PR's sessions; a scan for the sweeper's list.
  statement {
    sid = "Sessions"
    actions = [
      "dynamodb:GetItem",
      "dynamodb:PutItem",
      "dynamodb:UpdateItem",
      "dynamodb:DeleteItem",
      "dynamodb:Scan",
    ]
    resources = [local.table_arn]
  }

  statement {
    sid       = "SessionsOfAPullRequest"
    actions   = ["dynamodb:Query"]
    resources = ["${local.table_arn}/index/pr-index"]
  }

  statement {
    sid       = "ReadSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = local.secrets_of.webhook
  }

  statement {
    sid       = "DecryptSecretsThroughSecretsManager"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.this.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["secretsmanager.${local.region}.amazonaws.com"]
    }
  }

  # Conversations: the webhook presigns, for the session whose token asks, a URL of that
  # session's own object; the URL acts with these rights, so they are the objects' only reader and
  # writer besides the account's administrators (infra/conversations.tf).
  statement {
    sid       = "KeepConversations"
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = ["${aws_s3_bucket.conversations.arn}/sessions/*"]
  }

  # Listing makes a conversation never kept a 404, not a 403 like any refusal, so an agent
  # tells "nothing kept yet" from "not allowed".
  statement {
    sid       = "TellMissingConversations"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.conversations.arn]
  }

  statement {
    sid       = "EncryptConversationsThroughS3"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [aws_kms_key.this.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${local.region}.amazonaws.com"]
    }

    # With bucket keys, S3 asks KMS in the bucket's name: the key serves this bucket only.
    condition {
      test     = "StringEquals"
      variable = "kms:EncryptionContext:aws:s3:arn"
      values   = [aws_s3_bucket.conversations.arn]
    }
  }

  # Session tasks: started from the four session task definitions, in this cluster only.
  statement {
    sid       = "RunSessionTasks"
    actions   = ["ecs:RunTask"]
    resources = [for key in keys(local.session_task_definitions) : "arn:${local.partition}:ecs:${local.region}:${local.account}:task-definition/${local.family[key]}:*"]

    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [aws_ecs_cluster.this.arn]
    }
  }

  # RunTask tags each task with its session (cca:session-id, cca:kind).
  statement {
    sid       = "TagTasksItStarts"
    actions   = ["ecs:TagResource"]
    resources = [local.cluster_tasks]

    condition {
      test     = "StringEquals"
      variable = "ecs:CreateAction"
      values   = ["RunTask"]
    }
  }

  statement {
    sid       = "StopAndDescribeTasks"
    actions   = ["ecs:StopTask", "ecs:DescribeTasks"]
    resources = [local.cluster_tasks]

    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [aws_ecs_cluster.this.arn]
    }
  }

  # ListTasks is authorised against the cluster it lists, not a task ARN.
  statement {
    sid       = "ListTasksOfTheCluster"
    actions   = ["ecs:ListTasks"]
    resources = ["*"]

    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [aws_ecs_cluster.this.arn]
    }
  }

  statement {
    sid     = "PassSessionRolesToEcs"
    actions = ["iam:PassRole"]
    resources = [
      aws_iam_role.execution["agent"].arn,
      aws_iam_role.execution["preview"].arn,
      aws_iam_role.task["agent"].arn,
      aws_iam_role.task["preview"].arn,
    ]

    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ecs-tasks.amazonaws.com"]
    }
  }

  # The sweeper reads the listener's rules and the target groups (ELB's describe calls cannot be
  # scoped to a resource) and deletes the per-session rules and target groups the original system
  # left behind; it deletes only what a record proves belongs to an ended session.
  statement {
    sid       = "ReadListenerRulesAndTargetGroups"
    actions   = ["elasticloadbalancing:DescribeRules", "elasticloadbalancing:DescribeTargetGroups"]
    resources = ["*"]
  }

  statement {
    sid       = "DeleteLeftoverRulesOfTheListener"
    actions   = ["elasticloadbalancing:DeleteRule"]
    resources = ["${replace(var.alb_listener_arn, ":listener/", ":listener-rule/")}/*"]
  }

  # The original's target groups are named `<session id>-tg`, with no tag or common prefix to
  # scope by; ELB refuses to delete one a rule or listener still uses.
  statement {
    sid       = "DeleteLeftoverTargetGroups"
    actions   = ["elasticloadbalancing:DeleteTargetGroup"]
    resources = ["arn:${local.partition}:elasticloadbalancing:${local.region}:${local.account}:targetgroup/*"]
  }

  # Never the system's own routing, whatever the sweeper decides.
  statement {
    sid       = "KeepTheProxyRouting"
    effect    = "Deny"
    actions   = ["elasticloadbalancing:DeleteRule", "elasticloadbalancing:DeleteTargetGroup"]
    resources = [aws_lb_listener_rule.previews.arn, aws_lb_target_group.proxy.arn]
  }

  statement {
    sid       = "WriteItsLogGroup"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.this["webhook"].arn}:*"]
  }
}

resource "aws_iam_role_policy" "webhook" {
  name   = "webhook-permissions"
  role   = aws_iam_role.webhook.id
  policy = data.aws_iam_policy_document.webhook.json
}

# The network interfaces of a Lambda in a VPC, which Lambda manages with the function's role.
# Lambda checks CreateNetworkInterface and the describe calls on every resource when the
# function is configured, so only the others are scoped (to this account and region, as AWS
# documents for DeleteNetworkInterface).
data "aws_iam_policy_document" "webhook_vpc" {
  #checkov:skip=CKV_AWS_111:Lambda refuses a VPC configuration unless the function's role may call ec2:CreateNetworkInterface on every resource; the interfaces it makes are in the function's own subnets and security group.
  #checkov:skip=CKV_AWS_356:Lambda refuses a VPC configuration unless the function's role may call ec2:CreateNetworkInterface on every resource; the interfaces it makes are in the function's own subnets and security group.
  statement {
    sid       = "ManageNetworkInterfacesInTheVpc"
    actions   = ["ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"]
    resources = ["*"]
  }

  statement {
    sid = "ReleaseNetworkInterfaces"
    actions = [
      "ec2:DeleteNetworkInterface",
      "ec2:AssignPrivateIpAddresses",
      "ec2:UnassignPrivateIpAddresses",
    ]
    resources = ["arn:${local.partition}:ec2:${local.region}:${local.account}:*/*"]
  }
}

resource "aws_iam_role_policy" "webhook_vpc" {
  name   = "webhook-vpc-access"
  role   = aws_iam_role.webhook.id
  policy = data.aws_iam_policy_document.webhook_vpc.json
}
