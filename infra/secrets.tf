# Secrets Manager secrets. Terraform makes the containers only: their values are set outside it
# (`aws secretsmanager put-secret-value`, see README.md), so no credential ever reaches the
# Terraform state. Shapes are in docs/CONFIGURATION.md ("Secrets").

resource "aws_secretsmanager_secret" "github_app" {
  #checkov:skip=CKV2_AWS_57:The App's private key and webhook secret are issued by GitHub and rotated there, then put here by hand (older webhook secrets stay accepted through `webhook_secrets`); a rotation Lambda cannot mint them.
  count                   = var.github_app_secret_arn == null ? 1 : 0
  name                    = "${local.prefix}/github-app"
  description             = "GitHub App of ${local.prefix}: {app_id, private_key, webhook_secret, default_installation_id}"
  kms_key_id              = aws_kms_key.this.arn
  recovery_window_in_days = var.secret_recovery_window_days
}

resource "aws_secretsmanager_secret" "control" {
  #checkov:skip=CKV2_AWS_57:The control key signs the running agents' tokens, which are derived once per task; rotating it is replacing the value while no session runs (README.md), not a job for a rotation Lambda.
  name                    = "${local.prefix}/control"
  description             = "Control key of ${local.prefix}: a plain string of at least 32 characters"
  kms_key_id              = aws_kms_key.this.arn
  recovery_window_in_days = var.secret_recovery_window_days
}

resource "aws_secretsmanager_secret" "jira" {
  #checkov:skip=CKV2_AWS_57:The JIRA API token and webhook secret are issued by Atlassian and rotated there, then put here by hand.
  count                   = var.enable_jira && var.jira_secret_arn == null ? 1 : 0
  name                    = "${local.prefix}/jira"
  description             = "JIRA of ${local.prefix}: {base_url, email, api_token, webhook_secret, project_mapping}"
  kms_key_id              = aws_kms_key.this.arn
  recovery_window_in_days = var.secret_recovery_window_days
}

resource "aws_secretsmanager_secret" "anthropic" {
  #checkov:skip=CKV2_AWS_57:Anthropic API keys are issued by Anthropic's console and rotated there, then put here by hand.
  count                   = var.model_access == "anthropic_secret" ? 1 : 0
  name                    = "${local.prefix}/anthropic"
  description             = "Model access of ${local.prefix}'s agents: an Anthropic API key, or JSON {api_key} or {oauth_token}"
  kms_key_id              = aws_kms_key.this.arn
  recovery_window_in_days = var.secret_recovery_window_days
}
