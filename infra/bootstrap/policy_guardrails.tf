# What the apply role may never do, whatever its other policies allow: an explicit Deny wins over any Allow.

resource "aws_iam_policy" "apply_guardrails" {
  name        = "${var.name}-apply-guardrails"
  description = "The ${var.name} apply role may not touch the CI identity, remove or replace a boundary, or administer the state key"
  policy      = data.aws_iam_policy_document.apply_guardrails.json
}

locals {
  # The CI roles and every policy they or the workload roles depend on.
  ci_policy_arns = [for policy in ["read-stack", "change-stack", "change-tagged", "apply-guardrails", "workload-boundary"] : "${local.arn.iam}:policy/${var.name}-${policy}"]
}

data "aws_iam_policy_document" "apply_guardrails" {
  statement {
    sid       = "NeverTouchTheCiIdentity"
    effect    = "Deny"
    actions   = ["iam:*", "sts:AssumeRole"]
    resources = concat(local.ci_role_arns, local.ci_policy_arns)
  }

  statement {
    sid       = "NeverRemoveOrReplaceABoundary"
    effect    = "Deny"
    actions   = ["iam:DeleteRolePermissionsBoundary", "iam:PutRolePermissionsBoundary", "iam:CreatePolicy", "iam:CreatePolicyVersion", "iam:SetDefaultPolicyVersion", "iam:AttachRolePolicy"]
    resources = ["*"]
  }

  statement {
    sid         = "NeverAdministerTheStateKey"
    effect      = "Deny"
    not_actions = ["kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
    resources   = [local.state.key_arn]
  }
}
