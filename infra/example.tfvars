# An example deployment: copy to <name>.tfvars, fill in, then
#   terraform apply -var-file=<name>.tfvars
# Only the first block is required; the rest shows the defaults worth knowing.

region            = "us-east-1"
vpc_id            = "vpc-0fde49947ce39aec4"
agent_subnet_ids  = ["subnet-0ede91cdf265af677", "subnet-016037c717cc89fb2"]
lambda_subnet_ids = ["subnet-0a1b2c3d4e5f60718", "subnet-0a1b2c3d4e5f60729"] # private, with a NAT route
alb_listener_arn  = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/test-tickets-uat-alb/7e47b6b368ee29e1/9b650b437fde8e6f"
uat_domain_suffix = "uat.example.com"
lambda_zip_path   = "/home/me/.cache/cca/lambda-target/lambda/cca-webhook/bootstrap.zip" # printed by scripts/build-lambda.sh

# name_prefix            = "claude-cloud-agent"
# assign_public_ip       = true  # public subnets without a NAT gateway, as the original ran
# alb_security_group_ids = ["sg-01e33c097eb569074"] # default: the load balancer's own groups
# listener_rule_priority = 1

# Model access: Bedrock through the agents' task role, or an Anthropic key in a secret.
# model_access = "bedrock"
# claude_model = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"

# Existing secrets of the original deployment keep working:
# github_app_secret_arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:claude-dev/github-app-AbCdEf"
# enable_jira           = true

# webhook_settings = {
#   FORWARD_ALL_COMMENTS = "true"
# }

# alarm_actions      = ["arn:aws:sns:us-east-1:123456789012:ops"]
# log_retention_days = 30
