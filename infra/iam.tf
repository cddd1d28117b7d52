# The SageMaker execution role: exactly what hosting this model needs, one statement per purpose.

resource "aws_iam_role" "sagemaker" {
  name               = "${var.name}-sagemaker-execution"
  description        = "SageMaker hosting of ${var.name}: model data, async I/O, image pull, logs, ENIs"
  assume_role_policy = data.aws_iam_policy_document.sagemaker_trust.json
  # The CI apply role may create or change a role only with this boundary (infra/bootstrap/boundary.tf).
  permissions_boundary = local.workload_boundary_arn
}

data "aws_iam_policy_document" "sagemaker_trust" {
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

resource "aws_iam_role_policy" "sagemaker" {
  name   = "hosting"
  role   = aws_iam_role.sagemaker.id
  policy = data.aws_iam_policy_document.sagemaker.json
}

locals {
  workload_boundary_arn  = "arn:${local.partition}:iam::${local.account_id}:policy/${var.name}-workload-boundary"
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

  statement {
    sid     = "ManageEnisInOurSubnets"
    actions = ["ec2:CreateNetworkInterface", "ec2:CreateNetworkInterfacePermission", "ec2:DeleteNetworkInterface", "ec2:DeleteNetworkInterfacePermission"]
    resources = concat(
      ["arn:${local.partition}:ec2:${local.region}:${local.account_id}:network-interface/*"],
      aws_subnet.private[*].arn,
      [aws_security_group.model.arn],
    )
  }

  statement {
    sid       = "PublishAsyncNotifications"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.success.arn, aws_sns_topic.error.arn]
  }
}
