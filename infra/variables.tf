# Inputs of the deployment. Every variable is described here and listed in README.md; the
# required ones (no default) are the existing network and load balancer, the preview domain,
# the region and the webhook's package.

# --- Where it runs -------------------------------------------------------------------------

variable "region" {
  description = "AWS region of every resource, e.g. us-east-1."
  type        = string
}

variable "name_prefix" {
  description = "Prefix of every name: the cluster is named after it, the table is `<prefix>-sessions`, task definition families `<prefix>-agent`, `<prefix>-preview`, `<prefix>-uat-proxy` (each with `-staging`). The default keeps the original deployment's names."
  type        = string
  default     = "claude-cloud-agent"

  validation {
    # The proxy's target group is `<prefix>-uat-proxy`, and target group names hold 32 characters.
    condition     = can(regex("^[a-z][a-z0-9-]{0,20}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 2 to 22 characters of lower-case letters, digits and '-', starting with a letter and not ending with '-'."
  }
}

variable "tags" {
  description = "Tags added to every resource, besides `Project = <name_prefix>`."
  type        = map(string)
  default     = {}
}

# --- The existing network and load balancer ------------------------------------------------

variable "vpc_id" {
  description = "The existing VPC of the tasks, the proxy's target group and the webhook Lambda."
  type        = string
}

variable "agent_subnet_ids" {
  description = "Subnets of session tasks (agents and previews), passed to RunTask as AGENT_SUBNETS. They need a way out to GitHub, the package registries and AWS APIs: a NAT gateway, or a public IP (assign_public_ip)."
  type        = list(string)

  validation {
    condition     = length(var.agent_subnet_ids) > 0
    error_message = "agent_subnet_ids needs at least one subnet."
  }
}

variable "proxy_subnet_ids" {
  description = "Subnets of the proxy service's tasks. Default: agent_subnet_ids."
  type        = list(string)
  default     = null
}

variable "lambda_subnet_ids" {
  description = "Subnets of the webhook Lambda, which must reach the agents' control port inside the VPC and GitHub outside it: private subnets routed through a NAT gateway (a Lambda never gets a public address)."
  type        = list(string)

  validation {
    condition     = length(var.lambda_subnet_ids) > 0
    error_message = "lambda_subnet_ids needs at least one subnet."
  }
}

variable "lambda_egress_checked" {
  description = "Refuse lambda_subnet_ids whose route table sends 0.0.0.0/0 to no NAT (or other translating) target. Set false only when the default route is propagated from a virtual private gateway, which Terraform cannot read; `cca doctor` still checks the routes it can see."
  type        = bool
  default     = true
}

variable "assign_public_ip" {
  description = "Give session tasks and proxy tasks a public IP: needed in public subnets without a NAT gateway, so they can pull images and reach GitHub. Sets AGENT_ASSIGN_PUBLIC_IP of the webhook."
  type        = bool
  default     = false
}

variable "alb_listener_arn" {
  description = "The existing listener (usually HTTPS:443) of the load balancer that `*.<uat_domain_suffix>` resolves to. The one wildcard rule is added to it; the sweeper cleans the rules the original system left on it (ALB_LISTENER_ARN)."
  type        = string
}

variable "alb_security_group_ids" {
  description = "Security groups of that load balancer, admitted to the proxy port. Default: the groups the load balancer has."
  type        = list(string)
  default     = null
}

variable "manage_alb_egress" {
  description = "Add an egress rule to each load balancer security group towards the proxy's group on the proxy port. Set false when those groups' egress is managed elsewhere (they must still reach the proxy)."
  type        = bool
  default     = true
}

variable "listener_rule_priority" {
  description = "Priority of the `*.<uat_domain_suffix>` rule. Lower numbers are evaluated first and a load balancer takes the first match, so the default, 1, is one no other rule can shadow. Pick another free number only if no rule before it can match a preview host."
  type        = number
  default     = 1

  validation {
    condition     = var.listener_rule_priority >= 1 && var.listener_rule_priority <= 50000 && floor(var.listener_rule_priority) == var.listener_rule_priority
    error_message = "listener_rule_priority must be a whole number from 1 to 50000."
  }
}

variable "uat_domain_suffix" {
  description = "Domain of every preview, `https://<session>.<uat_domain_suffix>` (UAT_DOMAIN_SUFFIX), e.g. uat.example.com. Its wildcard DNS record and certificate belong to the load balancer and are not managed here."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$", var.uat_domain_suffix))
    error_message = "uat_domain_suffix must be a lower-case domain name without a leading '.' or '*', e.g. uat.example.com."
  }
}

# --- Ports ---------------------------------------------------------------------------------

variable "app_port" {
  description = "Port of the app's dev server in session tasks unless the repository's .cca.toml names another (APP_PORT); the proxy may reach sessions on every port from 1024 to 65535 but control_port."
  type        = number
  default     = 3000

  validation {
    condition     = var.app_port >= 1024 && var.app_port <= 65535
    error_message = "app_port must be an unprivileged port (1024-65535), as a repository's app.port must."
  }
}

variable "control_port" {
  description = "Port of the agent's control API, which the webhook calls (CONTROL_PORT)."
  type        = number
  default     = 8080
}

variable "proxy_port" {
  description = "Port the proxy listens on (LISTEN=0.0.0.0:<port>) and its target group's port."
  type        = number
  default     = 8081
}

# --- Tasks ---------------------------------------------------------------------------------

variable "agent_cpu" {
  description = "CPU units of a coding session task (1024 = one vCPU): Claude Code, git, installs and the dev server share it."
  type        = number
  default     = 2048
}

variable "agent_memory" {
  description = "Memory (MiB) of a coding session task."
  type        = number
  default     = 8192
}

variable "preview_cpu" {
  description = "CPU units of a PR preview task."
  type        = number
  default     = 1024
}

variable "preview_memory" {
  description = "Memory (MiB) of a PR preview task."
  type        = number
  default     = 4096
}

variable "session_ephemeral_storage_gib" {
  description = "Task storage (GiB, 21 to 200) of coding session and preview tasks: a clone with its installed dependencies. Fargate gives 20 without it."
  type        = number
  default     = 40

  validation {
    condition     = var.session_ephemeral_storage_gib >= 21 && var.session_ephemeral_storage_gib <= 200
    error_message = "session_ephemeral_storage_gib must be from 21 to 200."
  }
}

variable "proxy_cpu" {
  description = "CPU units of a proxy task."
  type        = number
  default     = 256
}

variable "proxy_memory" {
  description = "Memory (MiB) of a proxy task."
  type        = number
  default     = 512
}

variable "proxy_desired_count" {
  description = "Proxy tasks to run; two or more keep previews up while one is replaced."
  type        = number
  default     = 2
}

# --- Model access --------------------------------------------------------------------------

variable "model_access" {
  description = "How Claude Code reaches the model: `bedrock` (Amazon Bedrock through the agent's task role, CLAUDE_CODE_USE_BEDROCK=1) or `anthropic_secret` (an Anthropic API key or OAuth token in a Secrets Manager secret made here, ANTHROPIC_SECRET_ARN)."
  type        = string
  default     = "bedrock"

  validation {
    condition     = contains(["bedrock", "anthropic_secret"], var.model_access)
    error_message = "model_access must be bedrock or anthropic_secret."
  }
}

variable "bedrock_model_arns" {
  description = "Bedrock models and inference profiles the agents may invoke, with model_access = bedrock. Default: Anthropic's Claude foundation models in every region (cross-region inference routes there) and this account's inference profiles of them."
  type        = list(string)
  default     = null
}

variable "claude_model" {
  description = "Model Claude Code uses (CLAUDE_MODEL, its --model), e.g. a Bedrock inference profile id. Empty: the CLI's default."
  type        = string
  default     = ""
}

# --- GitHub, JIRA and secrets --------------------------------------------------------------

variable "github_api_url" {
  description = "GitHub REST API root (GITHUB_API_URL): https://api.github.com, or https://<host>/api/v3 for GitHub Enterprise."
  type        = string
  default     = "https://api.github.com"
}

variable "github_app_secret_arn" {
  description = "An existing Secrets Manager secret with the GitHub App's credentials (the original's `claude-dev/github-app` works unchanged), encrypted with the account's default key. Default: a new, empty secret `<prefix>/github-app` whose value is set outside Terraform."
  type        = string
  default     = null
}

variable "preview_sign_in" {
  description = "Sign in with GitHub in front of every preview (the proxy gets the App's client_id and client_secret from the App secret). false opens every preview to anyone who reaches the load balancer (PREVIEW_SIGN_IN=off): insecure, see docs/SECURITY.md."
  type        = bool
  default     = true
}

variable "enable_jira" {
  description = "Serve JIRA: the webhook and the agents get JIRA_SECRET_ARN."
  type        = bool
  default     = false
}

variable "jira_secret_arn" {
  description = "With enable_jira: an existing JIRA secret, encrypted with the account's default key. Default: a new, empty secret `<prefix>/jira`."
  type        = string
  default     = null
}

variable "secret_recovery_window_days" {
  description = "Days a deleted secret made here can still be restored (0 deletes at once)."
  type        = number
  default     = 7
}

# --- The webhook Lambda --------------------------------------------------------------------

variable "lambda_zip_path" {
  description = "Path of the webhook's Lambda package: a zip holding `bootstrap`, the cca-webhook binary built for x86_64 (scripts/build-lambda.sh builds it, as `deploy.sh lambda` does, and prints its path). Terraform uploads it when the file changes; releases go out with `deploy.sh lambda`."
  type        = string
}

variable "lambda_memory_mb" {
  description = "Memory of the webhook Lambda (MiB); CPU grows with it."
  type        = number
  default     = 256
}

variable "lambda_timeout_seconds" {
  description = "Time-out of one webhook invocation. A delivery is answered within GitHub's 10 s; a scheduled sweep may take longer."
  type        = number
  default     = 60
}

variable "lambda_reserved_concurrency" {
  description = "Concurrent executions reserved for (and capped at) the webhook; -1 leaves it unreserved. New accounts with a concurrency quota of 10 cannot reserve any."
  type        = number
  default     = -1
}

variable "idle_timeout_secs" {
  description = "Seconds without a run, a request or (for previews) proxy traffic after which a session stops (IDLE_TIMEOUT_SECS), given to the agents and to the sweeper alike so that they agree. Default: the binaries' own, 3600."
  type        = number
  default     = null
}

variable "webhook_settings" {
  description = "Optional settings of cca-webhook (docs/CONFIGURATION.md), set in the Lambda's environment: TRIGGER_LABEL, TRIGGER_LABEL_STAGING, PLAN_LABEL, MAX_ACTIVE_SESSIONS, UAT_LABEL, UAT_LABEL_STAGING, CLAUDE_MENTION, FORWARD_ALL_COMMENTS, CONTROL_TIMEOUT_SECS, PREVIEW_URL_TEMPLATE, HEARTBEAT_TIMEOUT_SECS, RUST_LOG."
  type        = map(string)
  default     = {}

  validation {
    condition = alltrue([for name in keys(var.webhook_settings) : contains([
      "TRIGGER_LABEL", "TRIGGER_LABEL_STAGING", "PLAN_LABEL", "MAX_ACTIVE_SESSIONS", "UAT_LABEL", "UAT_LABEL_STAGING", "CLAUDE_MENTION",
      "FORWARD_ALL_COMMENTS", "CONTROL_TIMEOUT_SECS", "PREVIEW_URL_TEMPLATE", "HEARTBEAT_TIMEOUT_SECS",
      "RUST_LOG",
    ], name)])
    error_message = "webhook_settings may only set TRIGGER_LABEL, TRIGGER_LABEL_STAGING, PLAN_LABEL, MAX_ACTIVE_SESSIONS, UAT_LABEL, UAT_LABEL_STAGING, CLAUDE_MENTION, FORWARD_ALL_COMMENTS, CONTROL_TIMEOUT_SECS, PREVIEW_URL_TEMPLATE, HEARTBEAT_TIMEOUT_SECS or RUST_LOG; everything else is set by this configuration (the idle timeout by idle_timeout_secs)."
  }
}

variable "sweep_schedule" {
  description = "EventBridge schedule of the sweeper, which runs in the webhook Lambda."
  type        = string
  default     = "rate(5 minutes)"
}

# --- Storage, logs and alarms --------------------------------------------------------------

variable "table_deletion_protection" {
  description = "Refuse to delete the sessions table (turn off before a deliberate destroy)."
  type        = bool
  default     = true
}

variable "conversation_retention_days" {
  description = "Days a coding session's saved conversation is kept after its last run: as long as its session record (7 days after the session ends), so a follow-up that relaunches the session can resume it."
  type        = number
  default     = 7

  validation {
    condition     = var.conversation_retention_days >= 1 && floor(var.conversation_retention_days) == var.conversation_retention_days
    error_message = "conversation_retention_days must be a whole number of days, at least 1."
  }
}

variable "log_retention_days" {
  description = "Days the log groups keep logs. Session logs are for debugging, and they hold the output of the coding CLI, so they are not kept longer than needed."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a retention CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, …)."
  }
}

variable "ecr_untagged_image_days" {
  description = "Days before an untagged image (one neither a channel nor a git sha names any more) is removed from the repositories."
  type        = number
  default     = 14
}

variable "alarm_actions" {
  description = "ARNs (e.g. SNS topics) notified when the proxy has unhealthy targets or none healthy, and when that ends."
  type        = list(string)
  default     = []
}
