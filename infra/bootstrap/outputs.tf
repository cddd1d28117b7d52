output "state_bucket" {
  description = "Put in backend.hcl as bucket, and pass to the main stack as state_bucket_name."
  value       = aws_s3_bucket.state.id
}

output "lock_table" {
  description = "Put in backend.hcl as dynamodb_table, and pass to the main stack as lock_table_name."
  value       = aws_dynamodb_table.lock.name
}

output "region" {
  description = "Put in backend.hcl as region."
  value       = var.region
}

output "state_kms_key_arn" {
  description = "Key encrypting the state bucket and lock table."
  value       = aws_kms_key.state.arn
}
