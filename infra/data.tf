# What this configuration reads from the account instead of creating: the VPC, and the load
# balancer that `*.<uat_domain_suffix>` resolves to, found through its listener.

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

data "aws_region" "current" {}

data "aws_vpc" "this" {
  id = var.vpc_id
}

data "aws_lb_listener" "this" {
  arn = var.alb_listener_arn
}

data "aws_lb" "this" {
  arn = data.aws_lb_listener.this.load_balancer_arn
}
