# Names and derived values used across the configuration. The containers' environments are in
# containers.tf.json, where a test reads them.

locals {
  prefix    = var.name_prefix
  partition = data.aws_partition.current.partition
  account   = data.aws_caller_identity.current.account_id
  region    = data.aws_region.current.name
  domain    = var.uat_domain_suffix

  tags = merge({ Project = var.name_prefix }, var.tags)

  proxy_subnet_ids       = coalesce(var.proxy_subnet_ids, var.agent_subnet_ids)
  alb_security_group_ids = coalesce(var.alb_security_group_ids, tolist(data.aws_lb.this.security_groups))

  # The proxy forwards only inside the VPC, whatever address a session record holds.
  proxy_allowed_cidrs = join(",", distinct(concat(
    [data.aws_vpc.this.cidr_block],
    [for a in data.aws_vpc.this.cidr_block_associations : a.cidr_block],
  )))

  # Session tasks: coding sessions (`cca-agent run`) and PR previews (`cca-agent preview`), each
  # on two image channels. A staging channel is a family of its own, so registering it never
  # changes what a `latest` launch runs; the webhook derives `<family>-staging` the same way.
  channels = ["latest", "staging"]

  # The session containers' names as containers.tf.json gives them (crates/cca/tests/infra.rs
  # checks that it does), stated apart: the webhook's settings need them, and referring to that
  # file's containers would make a cycle through CCA_TOKEN_URL, the webhook's own URL.
  session_containers = { agent = "agent", preview = "preview" }
  families = {
    agent   = "${local.prefix}-agent"
    preview = "${local.prefix}-preview"
    proxy   = "${local.prefix}-uat-proxy"
  }
  family = {
    for pair in setproduct(keys(local.families), local.channels) :
    "${pair[0]}-${pair[1]}" => pair[1] == "latest" ? local.families[pair[0]] : "${local.families[pair[0]]}-staging"
  }
  session_task_definitions = {
    for pair in setproduct(["agent", "preview"], local.channels) : "${pair[0]}-${pair[1]}" => {
      kind    = pair[0]
      channel = pair[1]
      cpu     = pair[0] == "agent" ? var.agent_cpu : var.preview_cpu
      memory  = pair[0] == "agent" ? var.agent_memory : var.preview_memory
    }
  }

  # Secrets: the ones given, else the ones made here.
  github_app_secret_arn = coalesce(var.github_app_secret_arn, one(aws_secretsmanager_secret.github_app[*].arn))
  jira_secret_arn       = var.enable_jira ? coalesce(var.jira_secret_arn, one(aws_secretsmanager_secret.jira[*].arn)) : ""
  anthropic_secret_arn  = var.model_access == "anthropic_secret" ? aws_secretsmanager_secret.anthropic[0].arn : ""
  bedrock_flag          = var.model_access == "bedrock" ? "1" : ""
  idle_timeout_secs     = var.idle_timeout_secs == null ? "" : tostring(var.idle_timeout_secs)

  # Bedrock: Claude foundation models in any region (a cross-region inference profile routes a
  # request to one of several) and this account's inference profiles of them.
  bedrock_model_arns = coalesce(var.bedrock_model_arns, [
    "arn:${local.partition}:bedrock:*::foundation-model/anthropic.claude-*",
    "arn:${local.partition}:bedrock:*:${local.account}:inference-profile/*anthropic.claude-*",
    "arn:${local.partition}:bedrock:*:${local.account}:application-inference-profile/*",
  ])

  # A container environment as ECS takes it: string values (a template that is a single
  # reference keeps its type), the unset (empty) ones left out, in a stable order.
  environment = {
    for kind, container in local.containers : kind => [
      for name in sort(keys(container.environment)) : {
        name  = name
        value = tostring(container.environment[name])
      } if tostring(container.environment[name]) != ""
    ]
  }

  # A container's secrets as ECS takes them, the unset (empty) ones left out.
  secrets = {
    for kind, container in local.containers : kind => [
      # A map is walked in the order of its keys.
      for name, reference in try(container.secrets, {}) : {
        name      = name
        valueFrom = tostring(reference)
      } if tostring(reference) != ""
    ]
  }

  log_groups = {
    agent   = "/ecs/${local.prefix}/agent"
    preview = "/ecs/${local.prefix}/preview"
    proxy   = "/ecs/${local.prefix}/uat-proxy"
    webhook = "/aws/lambda/${local.prefix}-webhook"
  }
}
