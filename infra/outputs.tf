output "endpoint_name" {
  description = "SageMaker endpoint to call with invoke_endpoint_async (scripts/invoke.py async --endpoint)."
  value       = aws_sagemaker_endpoint.this.name
}

output "region" {
  description = "Region the stack runs in."
  value       = local.region
}

output "ecr_repository_url" {
  description = "Push images here, tagged with the commit SHA; pass the tag back as image_tag."
  value       = aws_ecr_repository.this.repository_url
}

output "ecr_repository_name" {
  description = "The ECR repository's name: repository variable ECR_REPOSITORY of build-and-push, and --repository-name of `aws ecr`."
  value       = aws_ecr_repository.this.name
}

output "artifacts_bucket" {
  description = "Bucket for model data (scripts/publish.py --bucket)."
  value       = aws_s3_bucket.artifacts.id
}

output "model_data_uri" {
  description = "S3 prefix SageMaker copies into /opt/ml/model (uncompressed S3Prefix)."
  value       = "s3://${aws_s3_bucket.artifacts.bucket}/${var.model_data_prefix}"
}

output "async_bucket" {
  description = "Bucket for async requests, outputs and failures."
  value       = aws_s3_bucket.async.id
}

output "async_input_prefix" {
  description = "Key prefix under which clients upload request JSON."
  value       = local.async_input_prefix
}

output "async_output_uri" {
  description = "Where SageMaker writes successful responses."
  value       = "s3://${aws_s3_bucket.async.bucket}/${local.async_output_prefix}"
}

output "async_failure_uri" {
  description = "Where SageMaker writes failed responses."
  value       = "s3://${aws_s3_bucket.async.bucket}/${local.async_failure_prefix}"
}

output "success_topic_arn" {
  description = "SNS topic announcing completed async requests."
  value       = aws_sns_topic.success.arn
}

output "error_topic_arn" {
  description = "SNS topic announcing failed async requests (and, like the success topic, SageMaker's test notifications after each endpoint update or scaling step)."
  value       = aws_sns_topic.error.arn
}

output "alarms_topic_arn" {
  description = "SNS topic of the operators' alarms, to which alarm_email is subscribed."
  value       = aws_sns_topic.alarms.arn
}

output "kms_key_arn" {
  description = "Customer-managed key encrypting the stack's data (caller_policy_json lets a client use it through S3)."
  value       = aws_kms_key.this.arn
}

output "max_concurrent_invocations_per_instance" {
  description = "Async concurrency per instance: TorchServe workers x batch size."
  value       = local.max_concurrent_invocations
}

output "log_group_name" {
  description = "CloudWatch log group of the endpoint's containers (`aws logs tail`)."
  value       = aws_cloudwatch_log_group.endpoint.name
}

output "caller_policy_json" {
  description = "IAM policy (JSON) for an application role that calls the endpoint asynchronously: InvokeEndpointAsync on it, PutObject under async_input_prefix, GetObject of outputs and failures, ListBucket (a pending result is then a 404), the stack key through S3 for the async bucket only, Subscribe to the result topics."
  value       = data.aws_iam_policy_document.caller.json
}
