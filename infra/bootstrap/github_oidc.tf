# GitHub Actions reach AWS through OIDC: no long-lived keys. The three CI roles live here, applied by an
# administrator, and never in the stack that CI applies: no job can change the role it runs as.
#
#   image push  pushes to github_branch          ECR push to the stack's repository
#   plan        pushes to github_branch          reads the stack and its state, takes the state lock;
#                                                 runs without approval
#   apply       the protected github_environment changes the stack; may write the workload role's policy
#                                                 within the workload permissions boundary (boundary.tf)
#
# Each role's trust pins the token's audience and its subject, which infra/README.md step 2 makes GitHub
# build from the repository's template (claim keys repo, context, ref) with immutable subject claims:
#
#   repo:OWNER@OWNER_ID/REPO@REPO_ID:<context>:ref:<ref>
#
# - The ids: GitHub's OIDC reference ("Immutable subject claims") gives repositories created, renamed or
#   transferred after the cutoff the subject `repo:OWNER@OWNER_ID/REPO@REPO_ID:...`, "always included in the
#   `repo` segment ... even when you customize claims"; older repositories keep `repo:OWNER/REPO:...` unless
#   they opt in, which step 2 does (use_immutable_subject). So every repository, old or new, sends the same
#   form, and a deleted owner or repository name claimed again by someone else matches no role.
# - The ref: a job in an environment has the context environment:NAME, which names no branch; AWS can test
#   only a token's `sub` (and `aud`) in a trust policy, not its `ref` claim, so the template appends the ref
#   and the apply role trusts the environment on github_branch alone.

locals {
  github_oidc_host = "token.actions.githubusercontent.com"
  github_oidc_arn = var.create_github_oidc_provider ? aws_iam_openid_connect_provider.github[0].arn : (
    "arn:${local.partition}:iam::${local.account_id}:oidc-provider/${local.github_oidc_host}"
  )
  github_owner          = split("/", var.github_repository)[0]
  github_repository     = split("/", var.github_repository)[1]
  github_subject_prefix = "repo:${local.github_owner}@${var.github_repository_ids.owner}/${local.github_repository}@${var.github_repository_ids.repository}"
  branch_ref            = "ref:refs/heads/${var.github_branch}"
  # <context> is what the default subject has after the repository: ref:<ref> for a push (or a manual run)
  # outside an environment, environment:NAME for a job in one.
  branch_subject      = "${local.github_subject_prefix}:${local.branch_ref}:${local.branch_ref}"
  environment_subject = "${local.github_subject_prefix}:environment:${var.github_environment}:${local.branch_ref}"

  github_roles = {
    image-push = {
      subjects    = [local.branch_subject]
      description = "GitHub Actions, pushes to ${var.github_branch}: push images to the ${var.name} ECR repository"
    }
    plan = {
      subjects    = [local.branch_subject]
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
