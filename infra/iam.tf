# The SageMaker execution role's permissions: exactly what hosting this model needs, one statement per purpose.
# The role itself (its trust: SageMaker in this account; its permissions boundary) is infra/bootstrap's
# (execution_role.tf): CI writes this policy, within the boundary, but never creates a role or writes a trust.

resource "aws_iam_role_policy" "sagemaker" {
  name   = "hosting"
  role   = local.execution_role_name
  policy = data.aws_iam_policy_document.sagemaker.json
}

locals {
  execution_role_name    = "${var.name}-sagemaker-execution" # as infra/bootstrap names it
  execution_role_arn     = "arn:${local.partition}:iam::${local.account_id}:role/${local.execution_role_name}"
  endpoint_log_group_arn = "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:/aws/sagemaker/Endpoints/${local.endpoint_name}"
}

data "aws_iam_policy_document" "sagemaker" {
  statement {
    sid       = "ReadModelData"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.artifacts.arn}/${var.model_data_prefix}*"]
  }

  statement {
    sid       = "ListModelData"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.artifacts.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = [var.model_data_prefix, "${var.model_data_prefix}*"]
    }
  }

  statement {
    sid       = "ReadAsyncInputs"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.async.arn}/${local.async_input_prefix}*"]
  }

  statement {
    sid     = "WriteAsyncOutputsAndFailures"
    actions = ["s3:PutObject", "s3:AbortMultipartUpload"]
    resources = [
      "${aws_s3_bucket.async.arn}/${local.async_output_prefix}*",
      "${aws_s3_bucket.async.arn}/${local.async_failure_prefix}*",
    ]
  }

  statement {
    sid       = "UseStackKey"
    actions   = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
    resources = [aws_kms_key.this.arn]
  }

  # SageMaker encrypts the instance's ML storage volume with the key through a grant.
  statement {
    sid       = "GrantVolumeEncryption"
    actions   = ["kms:CreateGrant"]
    resources = [aws_kms_key.this.arn]
    condition {
      test     = "Bool"
      variable = "kms:GrantIsForAWSResource"
      values   = ["true"]
    }
  }

  statement {
    sid       = "PullImage"
    actions   = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]
    resources = [aws_ecr_repository.this.arn]
  }

  # AWS requires "*": GetAuthorizationToken is account-wide and has no resource-level permissions.
  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
    resources = [local.endpoint_log_group_arn, "${local.endpoint_log_group_arn}:log-stream:*"]
  }

  # AWS requires "*": PutMetricData has no resource-level permissions; the namespace condition scopes it.
  statement {
    sid       = "WriteOwnMetrics"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"]
    condition {
      test     = "StringLike"
      variable = "cloudwatch:namespace"
      values   = ["AWS/SageMaker", "/aws/sagemaker/Endpoints*"]
    }
  }

  # AWS requires "*": the EC2 Describe calls SageMaker makes to place ENIs have no resource-level permissions.
  statement {
    sid       = "DescribeNetwork"
    actions   = ["ec2:DescribeNetworkInterfaces", "ec2:DescribeVpcs", "ec2:DescribeDhcpOptions", "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups"]
    resources = ["*"]
  }

  # CreateNetworkInterface is authorized against the new interface, its subnet and its security groups; the
  # other three act on an interface alone, whose id is generated (infra/bootstrap/boundary.tf says why no
  # narrower name is possible).
  statement {
    sid     = "CreateEnisInOurSubnets"
    actions = ["ec2:CreateNetworkInterface"]
    resources = concat(
      ["arn:${local.partition}:ec2:${local.region}:${local.account_id}:network-interface/*"],
      aws_subnet.private[*].arn,
      [aws_security_group.model.arn],
    )
  }

  statement {
    sid       = "ManageNetworkInterfaces"
    actions   = ["ec2:CreateNetworkInterfacePermission", "ec2:DeleteNetworkInterface", "ec2:DeleteNetworkInterfacePermission"]
    resources = ["arn:${local.partition}:ec2:${local.region}:${local.account_id}:network-interface/*"]
  }

  statement {
    sid       = "PublishAsyncNotifications"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.success.arn, aws_sns_topic.error.arn]
  }
}
