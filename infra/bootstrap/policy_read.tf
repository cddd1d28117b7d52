# What `terraform plan` of the main stack reads: its state and every resource it refreshes, and the state
# lock it takes. The plan role has only this; the apply role has it too (refresh before destroy, reads after
# each create). Each action was seen in the provider's or the S3 backend's request trace of a plan against the
# emulator (tests/e2e/test_infra_emulator.py fails naming any that is missing). Nothing here changes the stack.

resource "aws_iam_policy" "read_stack" {
  name        = "${var.name}-read-stack"
  description = "Read the ${var.name} stack and its Terraform state: what terraform plan needs"
  policy      = data.aws_iam_policy_document.read_stack.json
}

data "aws_iam_policy_document" "read_stack" {
  # checkov:skip=CKV_AWS_356: "*" only for actions without resource-level permissions (EC2 and Auto Scaling reads, ListAliases, DescribeLogGroups), each commented and region-bound
  statement {
    sid       = "ReadState"
    actions   = ["s3:GetObject", "s3:ListBucket"]
    resources = [local.state.bucket_arn, "${local.state.bucket_arn}/*"]
  }

  # A plan takes the state lock too: the S3 backend writes a lock object beside the state (use_lockfile) and
  # deletes it afterwards. Lock objects only, never the state itself.
  statement {
    sid       = "LockState"
    actions   = ["s3:PutObject", "s3:DeleteObject"]
    resources = [local.state.lock_object_arns]
  }

  # The state and its lock object are SSE-KMS with the state key (kms_key_id): S3 uses the key with the
  # caller's permissions, to write (GenerateDataKey) and to read (Decrypt) them.
  statement {
    sid       = "UseStateKeyThroughS3"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [local.state.key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${var.region}.amazonaws.com"]
    }
  }

  statement {
    sid = "ReadBuckets"
    actions = [
      "s3:ListBucket", "s3:GetBucketAcl", "s3:GetBucketCORS", "s3:GetBucketWebsite", "s3:GetBucketVersioning",
      "s3:GetAccelerateConfiguration", "s3:GetBucketRequestPayment", "s3:GetBucketLogging",
      "s3:GetLifecycleConfiguration", "s3:GetReplicationConfiguration", "s3:GetEncryptionConfiguration",
      "s3:GetBucketObjectLockConfiguration", "s3:GetBucketTagging", "s3:GetBucketPolicy",
      "s3:GetBucketOwnershipControls", "s3:GetBucketPublicAccessBlock",
    ]
    resources = local.stack.bucket_arns
  }

  statement {
    sid       = "ReadKey"
    actions   = ["kms:DescribeKey", "kms:GetKeyPolicy", "kms:GetKeyRotationStatus", "kms:ListResourceTags"]
    resources = [local.stack.key_arns]
  }

  statement {
    sid       = "ReadRepository"
    actions   = ["ecr:DescribeRepositories", "ecr:GetLifecyclePolicy", "ecr:ListTagsForResource"]
    resources = [local.stack.repository_arn]
  }

  statement {
    sid       = "ReadSageMaker"
    actions   = ["sagemaker:DescribeModel", "sagemaker:DescribeEndpointConfig", "sagemaker:DescribeEndpoint", "sagemaker:ListTags"]
    resources = [local.stack.model_arns, local.stack.config_arns, local.stack.endpoint_arn]
  }

  statement {
    sid       = "ReadWorkloadRoles"
    actions   = ["iam:GetRole", "iam:ListRolePolicies", "iam:GetRolePolicy", "iam:ListAttachedRolePolicies"]
    resources = [local.stack.workload_role]
  }

  statement {
    sid       = "ReadTopics"
    actions   = ["sns:GetTopicAttributes", "sns:ListTagsForResource", "sns:GetSubscriptionAttributes"]
    resources = [local.stack.topic_arns]
  }

  statement {
    sid       = "ReadAlarms"
    actions   = ["cloudwatch:DescribeAlarms", "cloudwatch:ListTagsForResource"]
    resources = [local.stack.alarm_arns]
  }

  # The tagging APIs take the log group's ARN without the trailing ":*".
  statement {
    sid       = "ReadLogGroupTags"
    actions   = ["logs:ListTagsForResource"]
    resources = [local.stack.log_group_arn]
  }

  # Neither CI role needs another role: whatever a role's trust says, a CI role may not assume it.
  statement {
    sid       = "NeverAssumeAnotherRole"
    effect    = "Deny"
    actions   = ["sts:AssumeRole"]
    resources = ["*"]
  }

  # AWS requires "*" for these reads: none has resource-level permissions. EC2 Describe: the provider
  # calls DescribeNetworkAcls on every refresh of a VPC (its default network ACL), and
  # DescribeNetworkInterfaces before it deletes a security group (SageMaker's ENIs may still hold it).
  # ListAliases, DescribeLogGroups and Application Auto Scaling's reads list the account's objects.
  statement {
    sid = "AccountWideReads"
    actions = [
      "ec2:DescribeAvailabilityZones", "ec2:DescribeVpcs", "ec2:DescribeVpcAttribute", "ec2:DescribeNetworkAcls",
      "ec2:DescribeSubnets", "ec2:DescribeRouteTables", "ec2:DescribeSecurityGroups",
      "ec2:DescribeSecurityGroupRules", "ec2:DescribeVpcEndpoints", "ec2:DescribePrefixLists",
      "ec2:DescribeNetworkInterfaces", "kms:ListAliases", "logs:DescribeLogGroups",
      "application-autoscaling:DescribeScalableTargets", "application-autoscaling:DescribeScalingPolicies",
      "application-autoscaling:ListTagsForResource",
    ]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "aws:RequestedRegion"
      values   = [var.region]
    }
  }
}
