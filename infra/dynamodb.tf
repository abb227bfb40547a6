# The sessions table, as the store makes it (`DynamoStore::create_table` in crates/store): key
# `session_id`, GSI `pr-index` (`repo_full_name` + `pr_number`, every attribute projected), TTL
# on `ttl`. Besides sessions it holds the active-key pointers and the webhook delivery ids.

resource "aws_dynamodb_table" "sessions" {
  #checkov:skip=CKV_AWS_119:Encrypted with the AWS managed key. Records hold ids, addresses and costs, never a credential; a customer key would need grants for the webhook, agent, preview and proxy roles for no added protection.
  name                        = "${local.prefix}-sessions"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "session_id"
  deletion_protection_enabled = var.table_deletion_protection

  attribute {
    name = "session_id"
    type = "S"
  }

  attribute {
    name = "repo_full_name"
    type = "S"
  }

  attribute {
    name = "pr_number"
    type = "N"
  }

  global_secondary_index {
    name            = "pr-index"
    hash_key        = "repo_full_name"
    range_key       = "pr_number"
    projection_type = "ALL"
  }

  ttl {
    attribute_name = "ttl"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled = true
  }
}
