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

# The route table of each of the Lambda's subnets: its own, else the VPC's main table.
data "aws_route_tables" "lambda_subnet" {
  for_each = toset(var.lambda_subnet_ids)
  vpc_id   = var.vpc_id

  filter {
    name   = "association.subnet-id"
    values = [each.value]
  }
}

data "aws_route_tables" "main" {
  vpc_id = var.vpc_id

  filter {
    name   = "association.main"
    values = ["true"]
  }
}

data "aws_route_table" "lambda" {
  for_each       = toset(var.lambda_subnet_ids)
  route_table_id = try(data.aws_route_tables.lambda_subnet[each.value].ids[0], data.aws_route_tables.main.ids[0])
}

# The zones the load balancer serves, and those of the proxy's subnets.
data "aws_subnet" "alb" {
  for_each = toset(data.aws_lb.this.subnets)
  id       = each.value
}

data "aws_subnet" "proxy" {
  for_each = toset(local.proxy_subnet_ids)
  id       = each.value
}

locals {
  # A default route through a NAT gateway, a transit gateway, a NAT instance's interface, a
  # virtual private gateway, a firewall or load balancer endpoint, or Cloud WAN; not an internet
  # gateway (the Lambda has no public address). Routes propagated from a virtual private gateway
  # are not in the data source: lambda_egress_checked = false turns the check off for those.
  lambda_subnets_without_nat = var.lambda_egress_checked ? [
    for subnet, table in data.aws_route_table.lambda : subnet
    if !anytrue([for r in table.routes : r.cidr_block == "0.0.0.0/0" && (r.nat_gateway_id != "" || r.transit_gateway_id != "" || r.network_interface_id != "" || r.vpc_endpoint_id != "" || r.core_network_arn != "" || startswith(r.gateway_id, "vgw-"))])
  ] : []
  alb_zones = toset([for s in data.aws_subnet.alb : s.availability_zone])
  proxy_subnets_outside_alb_zones = [
    for id, s in data.aws_subnet.proxy : "${id} (${s.availability_zone})"
    if !contains(local.alb_zones, s.availability_zone)
  ]
}
