# GitHub Actions reach AWS through OIDC: no long-lived keys. The three CI roles live here, applied by an
# administrator, and never in the stack that CI applies: no job can change the role it runs as.
#
#   image push  pushes to github_branch          ECR push to the stack's repository
#   plan        pushes to github_branch          reads the stack and its state; runs without approval
#   apply       the protected github_environment changes the stack; any role it creates or changes must
#                                                 carry the workload permissions boundary (boundary.tf)
#
# Each role's trust pins the token's audience and its subject (repository + branch or environment).
#
# GitHub's default subject of a job in an environment is repo:OWNER/REPO:environment:NAME: it names no
# branch, so any branch's workflow that says `environment: production` would get the apply role once the
# environment lets it deploy. AWS can only test the token's `sub` (and `aud`) here, not GitHub's `ref`
# claim, so the repository's subject template is customized to end with the ref (claim keys repo, context,
# ref: infra/README.md step 2 sets it) and the apply role trusts only the environment on github_branch.
# The branch roles accept the customized subject and, until step 2 sets the template, the default one:
# both name the repository and the branch.

locals {
  github_oidc_host = "token.actions.githubusercontent.com"
  github_oidc_arn = var.create_github_oidc_provider ? aws_iam_openid_connect_provider.github[0].arn : (
    "arn:${local.partition}:iam::${local.account_id}:oidc-provider/${local.github_oidc_host}"
  )
  branch_ref = "ref:refs/heads/${var.github_branch}"
  # The customized template: repo:<repo>:<context>:ref:<ref>, where the context is what the default subject
  # has after the repository (environment:NAME for a job in an environment, else ref:<ref>).
  branch_subjects     = ["repo:${var.github_repository}:${local.branch_ref}", "repo:${var.github_repository}:${local.branch_ref}:${local.branch_ref}"]
  environment_subject = "repo:${var.github_repository}:environment:${var.github_environment}:${local.branch_ref}"

  github_roles = {
    image-push = {
      subjects    = local.branch_subjects
      description = "GitHub Actions, pushes to ${var.github_branch}: push images to the ${var.name} ECR repository"
    }
    plan = {
      subjects    = local.branch_subjects
      description = "GitHub Actions, pushes to ${var.github_branch}: read-only terraform plan of the ${var.name} stack"
    }
    apply = {
      subjects    = [local.environment_subject]
      description = "GitHub Actions, environment ${var.github_environment} on ${var.github_branch}: terraform apply of the reviewed ${var.name} plan"
    }
  }
}

resource "aws_iam_openid_connect_provider" "github" {
  count = var.create_github_oidc_provider ? 1 : 0

  url            = "https://${local.github_oidc_host}"
  client_id_list = ["sts.amazonaws.com"]
}

data "aws_iam_policy_document" "github_trust" {
  for_each = local.github_roles

  statement {
    sid     = "GitHubActionsOidc"
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [local.github_oidc_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.github_oidc_host}:aud"
      values   = ["sts.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.github_oidc_host}:sub"
      values   = each.value.subjects
    }
  }
}

resource "aws_iam_role" "github" {
  for_each = local.github_roles

  name                 = "${var.name}-github-${each.key}"
  description          = each.value.description
  assume_role_policy   = data.aws_iam_policy_document.github_trust[each.key].json
  max_session_duration = 3600
}

# The plan role reads; the apply role reads (refresh, destroy), changes, and is held by its guardrails.
resource "aws_iam_role_policy_attachment" "github" {
  for_each = {
    plan-read    = { role = "plan", policy = aws_iam_policy.read_stack.arn }
    apply-read   = { role = "apply", policy = aws_iam_policy.read_stack.arn }
    apply-write  = { role = "apply", policy = aws_iam_policy.change_stack.arn }
    apply-tagged = { role = "apply", policy = aws_iam_policy.change_tagged.arn }
    apply-deny   = { role = "apply", policy = aws_iam_policy.apply_guardrails.arn }
  }

  role       = aws_iam_role.github[each.value.role].name
  policy_arn = each.value.policy
}

# ------------------------------------------------------------------ image push
resource "aws_iam_role_policy" "image_push" {
  name   = "push-image"
  role   = aws_iam_role.github["image-push"].id
  policy = data.aws_iam_policy_document.image_push.json
}

data "aws_iam_policy_document" "image_push" {
  # AWS requires "*": GetAuthorizationToken has no resource-level permissions.
  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid = "PushToTheStackRepository"
    actions = [
      "ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:CompleteLayerUpload", "ecr:DescribeImages",
      "ecr:GetDownloadUrlForLayer", "ecr:InitiateLayerUpload", "ecr:PutImage", "ecr:UploadLayerPart",
    ]
    resources = [local.stack.repository_arn]
  }

  # The stack's key is created by the stack (its id is not known here); ECR uses it on the pusher's behalf.
  statement {
    sid       = "EncryptLayersThroughEcr"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [local.stack.key_arns]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["ecr.${var.region}.amazonaws.com"]
    }
  }
}
