# Security groups. Traffic allowed, and nothing else:
#   load balancer -> proxy        proxy_port
#   proxy         -> sessions     1024-65535 but control_port (the app's dev server, on the
#                                 port the repository's .cca.toml names, APP_PORTS in the code)
#   webhook       -> sessions     control_port (the agent's control API)
#   proxy, webhook, sessions -> anywhere on 443 (GitHub, AWS APIs, ECR); sessions also on 80
#   (package registries and the like that still answer plain HTTP).
# DNS through the VPC resolver is not subject to security groups. Rules are separate resources,
# since the groups refer to each other.

resource "aws_security_group" "proxy" {
  name        = "${local.prefix}-uat-proxy"
  description = "cca-uat-proxy tasks: reached by the load balancer, forward to session tasks"
  vpc_id      = var.vpc_id
}

resource "aws_security_group" "sessions" {
  #checkov:skip=CKV2_AWS_5:Attached at run time: the webhook passes it to RunTask (AGENT_SECURITY_GROUPS) for every session task.
  name        = "${local.prefix}-sessions"
  description = "Session tasks (cca-agent run and preview): app port from the proxy, control port from the webhook"
  vpc_id      = var.vpc_id
}

resource "aws_security_group" "webhook" {
  name        = "${local.prefix}-webhook"
  description = "cca-webhook Lambda: calls the control API of agents, GitHub and AWS APIs"
  vpc_id      = var.vpc_id
}

# --- Into the proxy --------------------------------------------------------------------------

resource "aws_security_group_rule" "proxy_from_alb" {
  for_each                 = toset(local.alb_security_group_ids)
  type                     = "ingress"
  security_group_id        = aws_security_group.proxy.id
  source_security_group_id = each.value
  protocol                 = "tcp"
  from_port                = var.proxy_port
  to_port                  = var.proxy_port
  description              = "Preview requests from the load balancer"
}

resource "aws_security_group_rule" "alb_to_proxy" {
  for_each                 = var.manage_alb_egress ? toset(local.alb_security_group_ids) : toset([])
  type                     = "egress"
  security_group_id        = each.value
  source_security_group_id = aws_security_group.proxy.id
  protocol                 = "tcp"
  from_port                = var.proxy_port
  to_port                  = var.proxy_port
  description              = "${local.prefix}: preview requests to the UAT proxy"
}

# --- Into session tasks ----------------------------------------------------------------------

# A repository's `.cca.toml` may give its app any unprivileged port (cca_domain's APP_PORTS),
# except the agent's control port, which only the webhook may reach.
locals {
  app_port_ranges = { for r in [
    { from = 1024, to = min(var.control_port - 1, 65535) },
    { from = max(var.control_port + 1, 1024), to = 65535 },
  ] : "${r.from}-${r.to}" => r if r.from <= r.to }
}

resource "aws_security_group_rule" "sessions_app_from_proxy" {
  for_each                 = local.app_port_ranges
  type                     = "ingress"
  security_group_id        = aws_security_group.sessions.id
  source_security_group_id = aws_security_group.proxy.id
  protocol                 = "tcp"
  from_port                = each.value.from
  to_port                  = each.value.to
  description              = "App dev server of the session, through the UAT proxy"
}

resource "aws_security_group_rule" "sessions_control_from_webhook" {
  type                     = "ingress"
  security_group_id        = aws_security_group.sessions.id
  source_security_group_id = aws_security_group.webhook.id
  protocol                 = "tcp"
  from_port                = var.control_port
  to_port                  = var.control_port
  description              = "Control API of the agent, called by the webhook"
}

# --- Out -------------------------------------------------------------------------------------

resource "aws_security_group_rule" "proxy_to_sessions" {
  for_each                 = local.app_port_ranges
  type                     = "egress"
  security_group_id        = aws_security_group.proxy.id
  source_security_group_id = aws_security_group.sessions.id
  protocol                 = "tcp"
  from_port                = each.value.from
  to_port                  = each.value.to
  description              = "Forward to the app of the session"
}

resource "aws_security_group_rule" "webhook_to_sessions" {
  type                     = "egress"
  security_group_id        = aws_security_group.webhook.id
  source_security_group_id = aws_security_group.sessions.id
  protocol                 = "tcp"
  from_port                = var.control_port
  to_port                  = var.control_port
  description              = "Control API of running agents"
}

resource "aws_security_group_rule" "https" {
  for_each = {
    proxy    = aws_security_group.proxy.id
    sessions = aws_security_group.sessions.id
    webhook  = aws_security_group.webhook.id
  }
  type              = "egress"
  security_group_id = each.value
  cidr_blocks       = ["0.0.0.0/0"]
  protocol          = "tcp"
  from_port         = 443
  to_port           = 443
  description       = "HTTPS: AWS APIs and ECR; GitHub, JIRA and package registries"
}

resource "aws_security_group_rule" "sessions_http" {
  type              = "egress"
  security_group_id = aws_security_group.sessions.id
  cidr_blocks       = ["0.0.0.0/0"]
  protocol          = "tcp"
  from_port         = 80
  to_port           = 80
  description       = "Plain HTTP, which some package mirrors and installers still use"
}
