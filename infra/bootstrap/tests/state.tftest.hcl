mock_provider "aws" {
  override_during = plan

  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012" }
  }
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
}

run "state_bucket_is_versioned_encrypted_and_private" {
  command = plan

  assert {
    condition     = aws_s3_bucket_versioning.state.versioning_configuration[0].status == "Enabled"
    error_message = "State must be versioned (it is the undo history)."
  }
  assert {
    condition     = one(one(aws_s3_bucket_server_side_encryption_configuration.state.rule).apply_server_side_encryption_by_default).sse_algorithm == "aws:kms"
    error_message = "State must be KMS-encrypted."
  }
  assert {
    condition     = aws_s3_bucket_public_access_block.state.block_public_policy && aws_s3_bucket_public_access_block.state.restrict_public_buckets
    error_message = "The state bucket must block public access."
  }
  assert {
    condition     = one(data.aws_iam_policy_document.tls_only.statement[0].condition).variable == "aws:SecureTransport"
    error_message = "The state bucket must refuse requests without TLS."
  }
  assert {
    condition     = aws_s3_bucket.state.bucket == "sdturbo-tfstate-123456789012-us-east-1"
    error_message = "The bucket name is derived from the account and region, never hard-coded."
  }
}

run "lock_table_keys_on_lock_id" {
  command = plan

  assert {
    condition     = aws_dynamodb_table.lock.hash_key == "LockID" && aws_dynamodb_table.lock.billing_mode == "PAY_PER_REQUEST"
    error_message = "Terraform's S3 backend locks on a LockID string key."
  }
}
