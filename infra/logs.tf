# Log groups with a retention, made before anything writes to them (a group a Lambda or the
# awslogs driver makes on first write keeps logs forever).

resource "aws_cloudwatch_log_group" "this" {
  #checkov:skip=CKV_AWS_338:Retention is log_retention_days (default 30): these are debugging logs holding the coding CLI's output, kept no longer than needed rather than for a year.
  for_each          = local.log_groups
  name              = each.value
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn
}
