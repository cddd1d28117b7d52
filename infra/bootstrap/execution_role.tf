# The SageMaker execution role of the main stack. Made here, by the administrator, so that CI never creates,
# deletes or re-trusts a role: AWS has no IAM condition on a trust policy's content, so a role CI could create
# (or whose trust it could update) could trust anyone. The stack writes the role's permissions
# (infra/iam.tf, the inline policy "hosting"), and the role can never do more than its boundary allows.

resource "aws_iam_role" "execution" {
  name                 = local.execution_role_name
  description          = "SageMaker hosting of ${var.name}: model data, async I/O, image pull, logs, ENIs (policy: the ${var.name} stack)"
  assume_role_policy   = data.aws_iam_policy_document.execution_trust.json
  permissions_boundary = aws_iam_policy.workload_boundary.arn
}

data "aws_iam_policy_document" "execution_trust" {
  statement {
    sid     = "SageMakerInThisAccount"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["sagemaker.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}
