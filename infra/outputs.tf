output "webhook_url" {
  description = "Payload URL for the GitHub App's webhook (and JIRA's): the function URL's /webhook route."
  value       = "${trimsuffix(aws_lambda_function_url.webhook.function_url, "/")}/webhook"
}

output "webhook_function_name" {
  description = "The webhook Lambda, for `deploy.sh lambda`, which publishes releases to its alias `live`."
  value       = aws_lambda_function.webhook.function_name
}

output "repository_urls" {
  description = "ECR repositories by image: `agent` (cca-agent) and `uat-proxy` (cca-uat-proxy), for `deploy.sh`."
  value       = { for name, repo in aws_ecr_repository.this : name => repo.repository_url }
}

output "proxy_service_name" {
  description = "The proxy's ECS service, which `deploy.sh promote` and `rollback` roll."
  value       = aws_ecs_service.proxy.name
}

output "secret_arns" {
  description = "The secrets whose values are set outside Terraform (README.md, \"Secrets\")."
  value = { for name, arn in {
    github_app = local.github_app_secret_arn
    control    = aws_secretsmanager_secret.control.arn
    jira       = local.jira_secret_arn
    anthropic  = local.anthropic_secret_arn
  } : name => arn if arn != "" }
}

output "doctor_environment" {
  description = "The deployment under the names `cca doctor` (and the webhook) read them: export each to check the deployed system with `cca doctor`."
  value = { for name, value in {
    UAT_DOMAIN_SUFFIX             = local.domain
    ALB_LISTENER_ARN              = var.alb_listener_arn
    PROXY_TARGET_GROUP_ARN        = aws_lb_target_group.proxy.arn
    PROXY_SECURITY_GROUP_ID       = aws_security_group.proxy.id
    ALB_SECURITY_GROUP_ID         = join(",", local.alb_security_group_ids)
    PROXY_PORT                    = tostring(var.proxy_port)
    ECS_CLUSTER                   = aws_ecs_cluster.this.name
    AGENT_TASK_DEFINITION         = aws_ecs_task_definition.session["agent-latest"].family
    AGENT_TASK_DEFINITION_STAGING = aws_ecs_task_definition.session["agent-staging"].family
    UAT_TASK_DEFINITION           = aws_ecs_task_definition.session["preview-latest"].family
    UAT_TASK_DEFINITION_STAGING   = aws_ecs_task_definition.session["preview-staging"].family
    PROXY_TASK_DEFINITION         = aws_ecs_task_definition.proxy["latest"].family
    PROXY_TASK_DEFINITION_STAGING = aws_ecs_task_definition.proxy["staging"].family
    AGENT_CONTAINER_NAME          = local.session_containers.agent
    UAT_CONTAINER_NAME            = local.session_containers.preview
    PROXY_CONTAINER_NAME          = local.containers.proxy.name
    PROXY_SERVICE                 = aws_ecs_service.proxy.name
    AGENT_SECURITY_GROUPS         = aws_security_group.sessions.id
    CONTROL_PORT                  = tostring(var.control_port)
    WEBHOOK_FUNCTION_NAME         = aws_lambda_function.webhook.function_name
    SESSIONS_TABLE                = aws_dynamodb_table.sessions.name
    GITHUB_APP_SECRET_ARN         = local.github_app_secret_arn
    CONTROL_SECRET_ARN            = aws_secretsmanager_secret.control.arn
    JIRA_SECRET_ARN               = local.jira_secret_arn
  } : name => value if value != "" }
}
