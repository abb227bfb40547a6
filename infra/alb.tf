# The one way into every preview: a `*.<uat_domain_suffix>` rule on the existing listener that
# forwards to the proxy's target group. No per-session rules are ever made (a load balancer holds
# 100, and the original's per-preview rules raced for priorities and were shadowed).

resource "aws_lb_target_group" "proxy" {
  #checkov:skip=CKV_AWS_378:TLS ends at the load balancer's listener (it holds the `*.<domain>` certificate); the hop to the proxy stays inside the VPC, restricted by security groups to the load balancer's group, as does the proxy's own hop to the session.
  name                 = "${local.prefix}-uat-proxy"
  vpc_id               = var.vpc_id
  target_type          = "ip"
  protocol             = "HTTP"
  port                 = var.proxy_port
  deregistration_delay = 30 # Above the proxy's 25 s drain, below ECS's 30 s stop time-out plus margin.

  health_check {
    path                = "/health"
    matcher             = "200"
    interval            = 15
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }
}

resource "aws_lb_listener_rule" "previews" {
  listener_arn = var.alb_listener_arn
  priority     = var.listener_rule_priority

  condition {
    host_header {
      values = ["*.${local.domain}"]
    }
  }

  action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.proxy.arn
  }
}

# Alarms: a target that fails its health check, and no healthy target at all (every preview
# unreachable: the audit's fault).

resource "aws_cloudwatch_metric_alarm" "proxy_unhealthy" {
  alarm_name          = "${local.prefix}-uat-proxy-unhealthy-targets"
  alarm_description   = "A UAT proxy task has failed the load balancer's health check for 5 minutes."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "UnHealthyHostCount"
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
  dimensions = {
    TargetGroup  = aws_lb_target_group.proxy.arn_suffix
    LoadBalancer = data.aws_lb.this.arn_suffix
  }
}

resource "aws_cloudwatch_metric_alarm" "proxy_no_healthy" {
  alarm_name          = "${local.prefix}-uat-proxy-no-healthy-targets"
  alarm_description   = "No UAT proxy task is healthy: every preview is unreachable."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "HealthyHostCount"
  statistic           = "Minimum"
  period              = 60
  evaluation_periods  = 3
  threshold           = 1
  comparison_operator = "LessThanThreshold"
  treat_missing_data  = "breaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
  dimensions = {
    TargetGroup  = aws_lb_target_group.proxy.arn_suffix
    LoadBalancer = data.aws_lb.this.arn_suffix
  }
}
