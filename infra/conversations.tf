# Where coding sessions keep the CLI's conversation between containers (agent/src/conversation.rs):
# one object a session, `sessions/<session>/conversation.tar`, written after every run and read
# when a new container resumes it. Agents hold no access to the bucket: the webhook presigns, for
# the session whose token asks, a URL of that session's own object only (webhook/src/conversation.rs).

resource "aws_s3_bucket" "conversations" {
  #checkov:skip=CKV_AWS_18:Access is logged where it is decided: the webhook logs each URL it presigns, with the session; server access logs would need a second bucket for objects that live a week.
  #checkov:skip=CKV_AWS_144:A conversation is a working copy of a session that ends within days; replicating it to another region keeps a second copy of the model's transcript for no recovery need.
  #checkov:skip=CKV2_AWS_62:Nothing reacts to a conversation being written; event notifications would have no receiver.
  bucket_prefix = "${local.prefix}-conversations-"
  force_destroy = true
}

resource "aws_s3_bucket_public_access_block" "conversations" {
  bucket                  = aws_s3_bucket.conversations.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "conversations" {
  bucket = aws_s3_bucket.conversations.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "conversations" {
  bucket = aws_s3_bucket.conversations.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.this.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_versioning" "conversations" {
  bucket = aws_s3_bucket.conversations.id
  versioning_configuration {
    status = "Enabled"
  }
}

# A conversation is written after each run, so its last write is at or before its session's end:
# kept as long as the session's record (7 days after it ends, the table's TTL), replaced versions a
# day, unfinished uploads a day.
resource "aws_s3_bucket_lifecycle_configuration" "conversations" {
  bucket = aws_s3_bucket.conversations.id

  rule {
    id     = "as-long-as-the-session-record"
    status = "Enabled"
    filter {
      prefix = "sessions/"
    }
    expiration {
      days = var.conversation_retention_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 1
    }
  }

  rule {
    id     = "unfinished-uploads-and-delete-markers"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
    expiration {
      expired_object_delete_marker = true
    }
  }

  depends_on = [aws_s3_bucket_versioning.conversations]
}

# Only TLS. Who reaches the objects is the roles' IAM policies' to say: only the webhook's grants
# any right here (crates/cca/tests/iam.rs checks that no session task's does).
data "aws_iam_policy_document" "conversations" {
  statement {
    sid       = "OnlyTls"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.conversations.arn, "${aws_s3_bucket.conversations.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "conversations" {
  bucket     = aws_s3_bucket.conversations.id
  policy     = data.aws_iam_policy_document.conversations.json
  depends_on = [aws_s3_bucket_public_access_block.conversations]
}
