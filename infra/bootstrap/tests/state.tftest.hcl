mock_provider "aws" {
  override_during = plan

  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012" }
  }
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
  mock_resource "aws_s3_bucket" {
    defaults = { arn = "arn:aws:s3:::sdturbo-tfstate-123456789012-us-east-1" }
  }
  mock_resource "aws_kms_key" {
    defaults = { arn = "arn:aws:kms:us-east-1:123456789012:key/state" }
  }
}

variables {
  github_repository     = "example-org/sdturbo-serve"
  github_repository_ids = { owner = "1234567", repository = "7654321" }
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

# The S3 backend locks with an object beside the state (use_lockfile): the CI roles may write and delete
# lock objects, and use the state key through S3 to write them (SSE-KMS), nothing else of DynamoDB's.
run "ci_roles_take_the_lock_beside_the_state" {
  command = plan

  assert {
    condition     = jsonencode([for s in data.aws_iam_policy_document.read_stack.statement : [sort(s.actions), s.resources] if s.sid == "LockState"]) == jsonencode([[["s3:DeleteObject", "s3:PutObject"], ["arn:aws:s3:::sdturbo-tfstate-123456789012-us-east-1/*.tflock"]]])
    error_message = "The plan (and apply) role must put and delete the state's lock object, and only lock objects."
  }
  assert {
    condition     = !anytrue([for s in data.aws_iam_policy_document.read_stack.statement : anytrue([for a in coalesce(s.actions, []) : startswith(a, "dynamodb:")])])
    error_message = "There is no lock table."
  }
}

run "each_ci_role_trusts_only_its_subject_and_audience" {
  command = plan

  assert {
    condition = alltrue([
      for role, subjects in {
        image-push = "repo:example-org@1234567/sdturbo-serve@7654321:ref:refs/heads/main:ref:refs/heads/main"
        plan       = "repo:example-org@1234567/sdturbo-serve@7654321:ref:refs/heads/main:ref:refs/heads/main"
        apply      = "repo:example-org@1234567/sdturbo-serve@7654321:environment:production:ref:refs/heads/main"
        } : [
        for c in data.aws_iam_policy_document.github_trust[role].statement[0].condition : join(",", c.values) if c.variable == "token.actions.githubusercontent.com:sub"
      ] == [subjects]
    ])
    error_message = "Pushes to main may push images and plan; only the protected environment, on main, may apply; each subject names the owner and repository with their immutable ids."
  }
  assert {
    condition = alltrue([for role in ["image-push", "plan", "apply"] : anytrue([
      for c in data.aws_iam_policy_document.github_trust[role].statement[0].condition : c.test == "StringEquals" && c.variable == "token.actions.githubusercontent.com:aud" && join(",", c.values) == "sts.amazonaws.com"
    ])])
    error_message = "Every CI role must pin the token audience."
  }
}

run "plan_role_reads_and_apply_role_also_changes" {
  command = plan

  assert {
    condition     = { for key, a in aws_iam_role_policy_attachment.github : key => a.role } == { plan-read = "sdturbo-github-plan", apply-read = "sdturbo-github-apply", apply-write = "sdturbo-github-apply", apply-tagged = "sdturbo-github-apply", apply-deny = "sdturbo-github-apply" }
    error_message = "The plan role only reads; only the apply role may change the stack."
  }
}

run "ci_policies_allow_no_wildcard_action" {
  command = plan

  assert {
    condition = alltrue(flatten([
      for doc in [data.aws_iam_policy_document.read_stack, data.aws_iam_policy_document.change_stack, data.aws_iam_policy_document.change_tagged, data.aws_iam_policy_document.apply_guardrails, data.aws_iam_policy_document.workload_boundary, data.aws_iam_policy_document.image_push] : [
        for s in doc.statement : [for a in coalesce(s.actions, []) : !strcontains(a, "*")] if s.effect != "Deny"
      ]
    ]))
    error_message = "No Allow statement may use a wildcard action."
  }
}

run "workload_roles_change_only_with_the_boundary" {
  command = plan

  assert {
    condition = alltrue([
      for s in data.aws_iam_policy_document.change_stack.statement : anytrue([for c in s.condition : c.variable == "iam:PermissionsBoundary"])
      if length(setintersection(coalesce(s.actions, []), ["iam:CreateRole", "iam:PutRolePolicy", "iam:AttachRolePolicy", "iam:PutRolePermissionsBoundary"])) > 0 && s.effect != "Deny"
    ])
    error_message = "Creating a role or writing its policy must require the workload boundary."
  }
}

# AWS has no condition key on a trust policy's content: a role CI could create, or whose trust it could
# update, could trust anyone. The workload role is made here, trusting SageMaker of this account only.
run "ci_creates_no_role_and_writes_no_trust" {
  command = plan

  override_resource {
    override_during = plan
    target          = aws_iam_policy.workload_boundary
    values          = { arn = "arn:aws:iam::123456789012:policy/sdturbo-workload-boundary" }
  }

  assert {
    condition = !anytrue(flatten([
      for doc in [data.aws_iam_policy_document.read_stack, data.aws_iam_policy_document.change_stack, data.aws_iam_policy_document.change_tagged, data.aws_iam_policy_document.image_push] : [
        for s in doc.statement : length(setintersection(coalesce(s.actions, []), ["iam:CreateRole", "iam:DeleteRole", "iam:UpdateAssumeRolePolicy", "iam:UpdateRole"])) > 0 if s.effect != "Deny"
      ]
    ]))
    error_message = "No CI role may create or delete a role or write its trust."
  }
  assert {
    condition     = aws_iam_role.execution.name == "sdturbo-sagemaker-execution" && aws_iam_role.execution.permissions_boundary == "arn:aws:iam::123456789012:policy/sdturbo-workload-boundary" && one(data.aws_iam_policy_document.execution_trust.statement[0].principals).identifiers == toset(["sagemaker.amazonaws.com"])
    error_message = "The execution role is the bootstrap's, carries the workload boundary and trusts SageMaker alone."
  }
}

# An environment's default subject names no branch: a job of any branch that names the environment would
# match it. The apply role's only subject must carry the environment and the deploy branch's ref, and no
# subject may use a wildcard (StringLike) that could stand for another branch.
run "apply_role_is_pinned_to_the_deploy_branch" {
  command = plan
  variables {
    github_branch = "release"
  }

  assert {
    condition = jsonencode([
      for c in data.aws_iam_policy_document.github_trust["apply"].statement[0].condition : sort(c.values) if c.variable == "token.actions.githubusercontent.com:sub"
    ]) == jsonencode([["repo:example-org@1234567/sdturbo-serve@7654321:environment:production:ref:refs/heads/release"]])
    error_message = "The apply role must trust the production environment only on the deploy branch (github_branch)."
  }
  assert {
    condition = alltrue(flatten([
      for role in ["image-push", "plan", "apply"] : [
        for c in data.aws_iam_policy_document.github_trust[role].statement[0].condition : c.test == "StringEquals" && alltrue([for v in c.values : !strcontains(v, "*")])
      ]
    ]))
    error_message = "Trust conditions must be exact (StringEquals, no wildcard)."
  }
}
