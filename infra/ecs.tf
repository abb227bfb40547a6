# The cluster, the task definitions and the proxy service.
#
# Six task definitions, each in a family of its own: coding sessions (`agent`), PR previews
# (`preview`) and the proxy (`uat-proxy`), each on the `latest` and the `staging` image. The
# webhook starts session tasks by family name, so each launch runs the family's newest revision,
# and a staging image never becomes what a `latest` launch runs. The containers' names, programs
# and environments come from containers.tf.json.

resource "aws_ecs_cluster" "this" {
  name = local.prefix

  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_ecs_task_definition" "session" {
  #checkov:skip=CKV_AWS_336:A session clones the repository, installs its dependencies and runs its dev server and coding CLI, all of which write where the project and its tools expect (the clone, HOME, caches, /tmp); the proxy, which writes nothing, runs read-only.
  for_each                 = local.session_task_definitions
  family                   = local.family[each.key]
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = tostring(each.value.cpu)
  memory                   = tostring(each.value.memory)
  execution_role_arn       = aws_iam_role.execution[each.value.kind].arn
  task_role_arn            = aws_iam_role.task[each.value.kind].arn

  ephemeral_storage {
    size_in_gib = var.session_ephemeral_storage_gib
  }

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64" # what deploy.sh builds (linux/amd64)
  }

  container_definitions = jsonencode([{
    name        = local.containers[each.value.kind].name
    image       = "${aws_ecr_repository.this["agent"].repository_url}:${each.value.channel}"
    command     = local.containers[each.value.kind].command
    essential   = true
    environment = local.environment[each.value.kind]
    portMappings = [
      { containerPort = var.app_port, protocol = "tcp" },
      { containerPort = var.control_port, protocol = "tcp" },
    ]
    readonlyRootFilesystem = false
    # SIGTERM, then this long to commit and push before SIGKILL (the agent takes 25 s at most).
    stopTimeout = 30
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.this[each.value.kind].name
        awslogs-region        = local.region
        awslogs-stream-prefix = each.value.channel
      }
    }
  }])
}

resource "aws_ecs_task_definition" "proxy" {
  for_each                 = toset(local.channels)
  family                   = local.family["proxy-${each.key}"]
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = tostring(var.proxy_cpu)
  memory                   = tostring(var.proxy_memory)
  execution_role_arn       = aws_iam_role.execution["proxy"].arn
  task_role_arn            = aws_iam_role.task["proxy"].arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64" # what deploy.sh builds (linux/amd64)
  }

  container_definitions = jsonencode([{
    name                   = local.containers.proxy.name
    image                  = "${aws_ecr_repository.this["uat-proxy"].repository_url}:${each.key}"
    command                = local.containers.proxy.command
    essential              = true
    environment            = local.environment.proxy
    secrets                = local.secrets.proxy
    portMappings           = [{ containerPort = var.proxy_port, protocol = "tcp" }]
    readonlyRootFilesystem = true
    # The proxy drains for 25 s after SIGTERM.
    stopTimeout = 30
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.this["proxy"].name
        awslogs-region        = local.region
        awslogs-stream-prefix = each.key
      }
    }
  }])
}

# The proxy service runs the `latest` proxy. Its staging task definition is there to try a
# staging proxy image (`aws ecs update-service --task-definition <prefix>-uat-proxy-staging`) and
# for `cca doctor` to check (PROXY_TASK_DEFINITION_STAGING).
resource "aws_ecs_service" "proxy" {
  name                               = "${local.prefix}-uat-proxy"
  cluster                            = aws_ecs_cluster.this.arn
  task_definition                    = aws_ecs_task_definition.proxy["latest"].arn
  desired_count                      = var.proxy_desired_count
  launch_type                        = "FARGATE"
  platform_version                   = "LATEST"
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  propagate_tags                     = "SERVICE"
  availability_zone_rebalancing      = "ENABLED"

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = local.proxy_subnet_ids
    security_groups  = [aws_security_group.proxy.id]
    assign_public_ip = var.assign_public_ip
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.proxy.arn
    container_name   = local.containers.proxy.name
    container_port   = var.proxy_port
  }

  # ECS refuses a target group that no listener forwards to.
  depends_on = [aws_lb_listener_rule.previews]

  lifecycle {
    # Sent when the service is created. The AWS emulator the tests apply this configuration to
    # (moto 5.2) neither stores nor returns availabilityZoneRebalancing, which would make every
    # plan after the first want to set it again.
    ignore_changes = [availability_zone_rebalancing]

    # The load balancer sends requests only to targets in the zones it has enabled: a proxy task
    # placed elsewhere would be registered and never get a preview request.
    precondition {
      condition     = length(local.proxy_subnets_outside_alb_zones) == 0
      error_message = "proxy_subnet_ids (default: agent_subnet_ids) must be in the availability zones of the load balancer (${join(", ", sort(local.alb_zones))}); these are not: ${join(", ", local.proxy_subnets_outside_alb_zones)}."
    }
  }
}
