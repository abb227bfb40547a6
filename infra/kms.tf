# One customer managed key for the secrets and the log groups: the GitHub App's private key and
# the control key are readable only by roles this key admits, and the logs (which hold the
# coding CLI's output) only by principals that may decrypt with it.

resource "aws_kms_key" "this" {
  description             = "${local.prefix}: secrets and logs"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
}

resource "aws_kms_alias" "this" {
  name          = "alias/${local.prefix}"
  target_key_id = aws_kms_key.this.key_id
}

data "aws_iam_policy_document" "kms" {
  # The account administers the key, and its IAM policies decide who else may use it (the task
  # roles and the Lambda's role, through Secrets Manager only).
  #checkov:skip=CKV_AWS_109:A key policy's resource is always the key itself; this is the account's administration of its own key.
  #checkov:skip=CKV_AWS_111:A key policy's resource is always the key itself; this is the account's administration of its own key.
  #checkov:skip=CKV_AWS_356:A key policy's resource is always the key itself ("*" in a key policy means this key).
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account}:root"]
    }
  }

  statement {
    sid = "LogsEncryptTheseLogGroups"
    actions = [
      "kms:Encrypt*",
      "kms:Decrypt*",
      "kms:ReEncrypt*",
      "kms:GenerateDataKey*",
      "kms:Describe*",
    ]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }

    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = [for name in values(local.log_groups) : "arn:${local.partition}:logs:${local.region}:${local.account}:log-group:${name}"]
    }
  }
}
