output "state_bucket" {
  description = "Put in backend.hcl as bucket; repository variable TF_STATE_BUCKET."
  value       = aws_s3_bucket.state.id
}

output "region" {
  description = "Put in backend.hcl as region; repository variable AWS_REGION."
  value       = var.region
}

output "state_kms_key_arn" {
  description = "Key encrypting the state and its lock object: put in backend.hcl as kms_key_id; repository variable TF_STATE_KMS_KEY_ARN."
  value       = aws_kms_key.state.arn
}

output "github_image_push_role_arn" {
  description = "Repository variable AWS_IMAGE_PUSH_ROLE_ARN for the build-and-push workflow."
  value       = aws_iam_role.github["image-push"].arn
}

output "github_plan_role_arn" {
  description = "Repository variable AWS_PLAN_ROLE_ARN: the read-only role of deploy-infrastructure's plan job."
  value       = aws_iam_role.github["plan"].arn
}

output "github_apply_role_arn" {
  description = "Repository variable AWS_APPLY_ROLE_ARN: the role of deploy-infrastructure's apply job (production environment only)."
  value       = aws_iam_role.github["apply"].arn
}

output "workload_boundary_arn" {
  description = "Permissions boundary every role of the main stack carries (it names it by the shared name)."
  value       = aws_iam_policy.workload_boundary.arn
}
