# The permissions boundary of every workload role, whose policy the apply role writes (today: the SageMaker
# execution role, execution_role.tf). A role's effective permissions are its policies intersected with this, so whatever the apply role
# writes into a workload role's policy, the role can never do more than host the model: read model data,
# move async payloads, use the stack key, pull the image, write its logs and metrics, place its network
# interfaces and publish notifications. The apply role can neither remove this boundary nor edit it.

resource "aws_iam_policy" "workload_boundary" {
  name        = "${var.name}-workload-boundary"
  description = "Ceiling of every role the ${var.name} apply role creates: hosting the model, nothing else"
  policy      = data.aws_iam_policy_document.workload_boundary.json
}

data "aws_iam_policy_document" "workload_boundary" {
  # checkov:skip=CKV_AWS_111,CKV_AWS_356: "*" only for ECR login, PutMetricData and EC2 Describe, which have no resource-level permissions; network interfaces, which SageMaker makes untagged
  # SageMaker encrypts an EBS-backed instance's volume through a grant; a grant to anyone else is not hosting.
  source_policy_documents = [data.aws_iam_policy_document.grant_stack_key_to_aws_services.json]
  statement {
    sid       = "ModelDataAndAsyncPayloads"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload", "s3:ListBucket"]
    resources = concat(local.stack.bucket_arns, [for arn in local.stack.bucket_arns : "${arn}/*"])
  }

  # The stack key's id is generated: it is named by the stack's Project tag (the state key, which carries
  # it too, is denied below).
  statement {
    sid       = "UseStackKey"
    actions   = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
    resources = [local.stack.key_arns]
    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/Project"
      values   = [var.name]
    }
  }


  statement {
    sid       = "PullImage"
    actions   = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]
    resources = [local.stack.repository_arn]
  }

  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid       = "WriteLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
    resources = [local.stack.log_group_arn, "${local.stack.log_group_arn}:log-stream:*"]
  }

  statement {
    sid       = "WriteMetrics"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"]
    condition {
      test     = "StringLike"
      variable = "cloudwatch:namespace"
      values   = ["AWS/SageMaker", "/aws/sagemaker/Endpoints*"]
    }
  }

  statement {
    sid       = "DescribeNetwork"
    actions   = ["ec2:DescribeNetworkInterfaces", "ec2:DescribeVpcs", "ec2:DescribeDhcpOptions", "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups"]
    resources = ["*"]
  }

  # CreateNetworkInterface is authorized against the new interface, its subnet and its security groups
  # (Service Authorization Reference, Amazon EC2): the last two must be the stack's, which carry its tag.
  statement {
    sid       = "NetworkInterfacesInTheStackSubnets"
    actions   = ["ec2:CreateNetworkInterface"]
    resources = ["${local.arn.ec2}:subnet/*", "${local.arn.ec2}:security-group/*"]
    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/Project"
      values   = [var.name]
    }
  }

  # The interface itself has a generated id, and SageMaker makes it: no document says it carries the stack's
  # tag, so neither an ARN nor a tag can name it here. These four actions act on network interfaces only.
  statement {
    sid       = "NetworkInterfaces"
    actions   = ["ec2:CreateNetworkInterface", "ec2:CreateNetworkInterfacePermission", "ec2:DeleteNetworkInterface", "ec2:DeleteNetworkInterfacePermission"]
    resources = ["${local.arn.ec2}:network-interface/*"]
  }

  statement {
    sid       = "PublishNotifications"
    actions   = ["sns:Publish"]
    resources = [local.stack.topic_arns]
  }

  statement {
    sid       = "NeverTheStateKey"
    effect    = "Deny"
    actions   = ["kms:*"]
    resources = [local.state.key_arn]
  }
}

# Grants on the stack's key only for AWS services acting for the caller (ECR for the repository, SageMaker
# for an EBS-backed instance's volume, infra/data.tf): a grant to any other principal (GrantIsForAWSResource
# false) would hand the key out. Shared by the boundary and the apply role (policy_change_tagged.tf).
data "aws_iam_policy_document" "grant_stack_key_to_aws_services" {
  statement {
    sid       = "GrantTheStackKeyToAwsServices"
    actions   = ["kms:CreateGrant"]
    resources = [local.stack.key_arns]
    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/Project"
      values   = [var.name]
    }
    condition {
      test     = "Bool"
      variable = "kms:GrantIsForAWSResource"
      values   = ["true"]
    }
  }
}
