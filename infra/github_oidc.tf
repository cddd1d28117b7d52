# GitHub Actions reach AWS through OIDC: no long-lived keys. Each role's trust pins the token's audience
# and its subject (repository + branch or environment) to the variables.

locals {
  github_oidc_host = "token.actions.githubusercontent.com"
  github_oidc_arn = var.create_github_oidc_provider ? aws_iam_openid_connect_provider.github[0].arn : (
    "arn:${local.partition}:iam::${local.account_id}:oidc-provider/${local.github_oidc_host}"
  )
  push_subjects  = ["repo:${var.github_repository}:ref:refs/heads/${var.github_branch}"]
  infra_subjects = ["repo:${var.github_repository}:ref:refs/heads/${var.github_branch}", "repo:${var.github_repository}:environment:${var.github_environment}"]
}

resource "aws_iam_openid_connect_provider" "github" {
  count = var.create_github_oidc_provider ? 1 : 0

  url            = "https://${local.github_oidc_host}"
  client_id_list = ["sts.amazonaws.com"]
}

data "aws_iam_policy_document" "github_trust" {
  for_each = {
    push  = local.push_subjects
    infra = local.infra_subjects
  }

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
      values   = each.value
    }
  }
}

# ------------------------------------------------------------------ image push
resource "aws_iam_role" "github_image_push" {
  name                 = "${var.name}-github-image-push"
  description          = "GitHub Actions: push images to the ${var.name} ECR repository"
  assume_role_policy   = data.aws_iam_policy_document.github_trust["push"].json
  max_session_duration = 3600
}

resource "aws_iam_role_policy" "github_image_push" {
  name   = "push-image"
  role   = aws_iam_role.github_image_push.id
  policy = data.aws_iam_policy_document.github_image_push.json
}

data "aws_iam_policy_document" "github_image_push" {
  # AWS requires "*": GetAuthorizationToken has no resource-level permissions.
  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid = "PushToThisRepository"
    actions = [
      "ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:CompleteLayerUpload", "ecr:DescribeImages",
      "ecr:GetDownloadUrlForLayer", "ecr:InitiateLayerUpload", "ecr:PutImage", "ecr:UploadLayerPart",
    ]
    resources = [aws_ecr_repository.this.arn]
  }

  statement {
    sid       = "EncryptLayers"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.this.arn]
  }
}

# ------------------------------------------------------------------ terraform plan/apply
resource "aws_iam_role" "github_terraform" {
  name                 = "${var.name}-github-terraform"
  description          = "GitHub Actions: terraform plan/apply of the ${var.name} stack"
  assume_role_policy   = data.aws_iam_policy_document.github_trust["infra"].json
  max_session_duration = 3600
}

resource "aws_iam_role_policy" "github_terraform" {
  name   = "manage-stack"
  role   = aws_iam_role.github_terraform.id
  policy = data.aws_iam_policy_document.github_terraform.json
}

locals {
  arn_prefix = {
    s3         = "arn:${local.partition}:s3:::${var.name}-"
    sagemaker  = "arn:${local.partition}:sagemaker:${local.region}:${local.account_id}"
    iam        = "arn:${local.partition}:iam::${local.account_id}"
    sns        = "arn:${local.partition}:sns:${local.region}:${local.account_id}:${var.name}-"
    cloudwatch = "arn:${local.partition}:cloudwatch:${local.region}:${local.account_id}:alarm:${var.name}-"
  }
}

data "aws_iam_policy_document" "github_terraform" {
  # checkov:skip=CKV_AWS_111,CKV_AWS_356: "*" only where AWS requires it (EC2/KMS creates, Describe calls, Application Auto Scaling), each region-bound and commented below
  statement {
    sid       = "StateObjects"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = ["arn:${local.partition}:s3:::${var.state_bucket_name}/*"]
  }

  statement {
    sid       = "StateBucket"
    actions   = ["s3:ListBucket", "s3:GetBucketVersioning"]
    resources = ["arn:${local.partition}:s3:::${var.state_bucket_name}"]
  }

  statement {
    sid       = "StateLock"
    actions   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:DescribeTable"]
    resources = ["arn:${local.partition}:dynamodb:${local.region}:${local.account_id}:table/${var.lock_table_name}"]
  }

  statement {
    sid = "StackBuckets"
    actions = [
      "s3:CreateBucket", "s3:DeleteBucket", "s3:ListBucket", "s3:GetBucketLocation", "s3:GetBucketPolicy",
      "s3:PutBucketPolicy", "s3:DeleteBucketPolicy", "s3:GetBucketAcl", "s3:GetBucketCORS", "s3:GetBucketWebsite",
      "s3:GetBucketVersioning", "s3:PutBucketVersioning", "s3:GetAccelerateConfiguration",
      "s3:GetBucketRequestPayment", "s3:GetBucketLogging", "s3:GetLifecycleConfiguration",
      "s3:PutLifecycleConfiguration", "s3:GetReplicationConfiguration", "s3:GetEncryptionConfiguration",
      "s3:PutEncryptionConfiguration", "s3:GetBucketObjectLockConfiguration", "s3:GetBucketTagging",
      "s3:PutBucketTagging", "s3:GetBucketOwnershipControls", "s3:PutBucketOwnershipControls",
      "s3:GetBucketPublicAccessBlock", "s3:PutBucketPublicAccessBlock",
    ]
    resources = ["${local.arn_prefix.s3}*"]
  }

  # AWS requires "*": EC2 Describe calls have no resource-level permissions, and VPC resources get
  # generated ids that cannot be named before they exist. The region condition keeps it to this stack's region.
  statement {
    sid = "StackNetwork"
    actions = [
      "ec2:DescribeVpcs", "ec2:DescribeVpcAttribute", "ec2:DescribeSubnets", "ec2:DescribeRouteTables",
      "ec2:DescribeVpcEndpoints", "ec2:DescribeSecurityGroups", "ec2:DescribeSecurityGroupRules",
      "ec2:DescribeAvailabilityZones", "ec2:DescribePrefixLists", "ec2:DescribeNetworkInterfaces",
      "ec2:DescribeTags", "ec2:CreateVpc", "ec2:DeleteVpc", "ec2:ModifyVpcAttribute", "ec2:CreateSubnet",
      "ec2:DeleteSubnet", "ec2:ModifySubnetAttribute", "ec2:CreateRouteTable", "ec2:DeleteRouteTable",
      "ec2:AssociateRouteTable", "ec2:DisassociateRouteTable", "ec2:CreateVpcEndpoint", "ec2:DeleteVpcEndpoints",
      "ec2:ModifyVpcEndpoint", "ec2:CreateSecurityGroup", "ec2:DeleteSecurityGroup",
      "ec2:AuthorizeSecurityGroupIngress", "ec2:AuthorizeSecurityGroupEgress", "ec2:RevokeSecurityGroupIngress",
      "ec2:RevokeSecurityGroupEgress", "ec2:CreateTags", "ec2:DeleteTags",
    ]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "aws:RequestedRegion"
      values   = [local.region]
    }
  }

  # AWS requires "*" for CreateKey (the key does not exist yet); the others follow on the created key.
  statement {
    sid = "StackKey"
    actions = [
      "kms:CreateKey", "kms:DescribeKey", "kms:GetKeyPolicy", "kms:PutKeyPolicy", "kms:GetKeyRotationStatus",
      "kms:EnableKeyRotation", "kms:ListResourceTags", "kms:TagResource", "kms:UntagResource",
      "kms:ScheduleKeyDeletion", "kms:CreateAlias", "kms:DeleteAlias", "kms:UpdateAlias", "kms:ListAliases",
      "kms:CreateGrant", "kms:Decrypt", "kms:GenerateDataKey",
    ]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "aws:RequestedRegion"
      values   = [local.region]
    }
  }

  statement {
    sid = "StackRepository"
    actions = [
      "ecr:CreateRepository", "ecr:DeleteRepository", "ecr:DescribeRepositories", "ecr:ListTagsForResource",
      "ecr:TagResource", "ecr:UntagResource", "ecr:PutImageScanningConfiguration", "ecr:PutImageTagMutability",
      "ecr:PutLifecyclePolicy", "ecr:GetLifecyclePolicy", "ecr:DeleteLifecyclePolicy", "ecr:DescribeImages",
    ]
    resources = [aws_ecr_repository.this.arn]
  }

  statement {
    sid = "StackSageMaker"
    actions = [
      "sagemaker:CreateModel", "sagemaker:DeleteModel", "sagemaker:DescribeModel",
      "sagemaker:CreateEndpointConfig", "sagemaker:DeleteEndpointConfig", "sagemaker:DescribeEndpointConfig",
      "sagemaker:CreateEndpoint", "sagemaker:DeleteEndpoint", "sagemaker:DescribeEndpoint",
      "sagemaker:UpdateEndpoint", "sagemaker:UpdateEndpointWeightsAndCapacities", "sagemaker:AddTags",
      "sagemaker:DeleteTags", "sagemaker:ListTags",
    ]
    resources = [
      "${local.arn_prefix.sagemaker}:model/${var.name}-*",
      "${local.arn_prefix.sagemaker}:endpoint-config/${var.name}-*",
      "${local.arn_prefix.sagemaker}:endpoint/${var.name}",
    ]
  }

  statement {
    sid = "StackRoles"
    actions = [
      "iam:CreateRole", "iam:DeleteRole", "iam:GetRole", "iam:UpdateRole", "iam:UpdateAssumeRolePolicy",
      "iam:TagRole", "iam:UntagRole", "iam:ListRolePolicies", "iam:ListAttachedRolePolicies",
      "iam:GetRolePolicy", "iam:PutRolePolicy", "iam:DeleteRolePolicy", "iam:ListInstanceProfilesForRole",
    ]
    resources = ["${local.arn_prefix.iam}:role/${var.name}-*"]
  }

  statement {
    sid       = "PassExecutionRoleToSageMaker"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.sagemaker.arn]
    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["sagemaker.amazonaws.com"]
    }
  }

  statement {
    sid = "GitHubOidcProvider"
    actions = [
      "iam:GetOpenIDConnectProvider", "iam:CreateOpenIDConnectProvider", "iam:DeleteOpenIDConnectProvider",
      "iam:TagOpenIDConnectProvider", "iam:UpdateOpenIDConnectProviderThumbprint",
    ]
    resources = ["${local.arn_prefix.iam}:oidc-provider/${local.github_oidc_host}"]
  }

  statement {
    sid = "StackTopics"
    actions = [
      "sns:CreateTopic", "sns:DeleteTopic", "sns:GetTopicAttributes", "sns:SetTopicAttributes",
      "sns:ListTagsForResource", "sns:TagResource", "sns:Subscribe", "sns:Unsubscribe",
      "sns:GetSubscriptionAttributes",
    ]
    resources = ["${local.arn_prefix.sns}*"]
  }

  statement {
    sid = "StackAlarmsAndLogs"
    actions = [
      "cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms", "cloudwatch:DescribeAlarms",
      "cloudwatch:ListTagsForResource", "cloudwatch:TagResource",
    ]
    resources = ["${local.arn_prefix.cloudwatch}*"]
  }

  statement {
    sid = "StackLogGroup"
    actions = [
      "logs:CreateLogGroup", "logs:DeleteLogGroup", "logs:PutRetentionPolicy", "logs:AssociateKmsKey",
      "logs:ListTagsForResource", "logs:TagResource", "logs:DescribeLogGroups",
    ]
    resources = [local.endpoint_log_group_arn, "${local.endpoint_log_group_arn}:*"]
  }

  # AWS requires "*": Application Auto Scaling has no resource-level permissions.
  statement {
    sid = "StackAutoscaling"
    actions = [
      "application-autoscaling:RegisterScalableTarget", "application-autoscaling:DeregisterScalableTarget",
      "application-autoscaling:DescribeScalableTargets", "application-autoscaling:PutScalingPolicy",
      "application-autoscaling:DeleteScalingPolicy", "application-autoscaling:DescribeScalingPolicies",
      "application-autoscaling:ListTagsForResource", "application-autoscaling:TagResource",
    ]
    resources = ["*"]
  }
}
