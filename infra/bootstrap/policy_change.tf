# What `terraform apply` of the main stack changes, for the apply role only (trusted in the protected
# environment). Each action was seen in the provider's request trace of an apply, update or destroy
# against the emulator, or is one AWS checks on the caller's behalf (commented). What the apply role may
# never do is in policy_guardrails.tf; the network and the key, whose ids are generated, are changed by tag
# (policy_change_tagged.tf). It creates no role and writes no trust: the workload role is the bootstrap's
# (execution_role.tf). One managed policy may hold 6,144 characters.

resource "aws_iam_policy" "change_stack" {
  name        = "${var.name}-change-stack"
  description = "Create, change and destroy the ${var.name} stack and write its Terraform state"
  policy      = data.aws_iam_policy_document.change_stack.json
}

data "aws_iam_policy_document" "change_stack" {
  # checkov:skip=CKV_AWS_356: "*" only where AWS requires it (Application Auto Scaling, the private hosted zone AWS makes for an interface endpoint), commented
  # checkov:skip=CKV_AWS_111: the one unconstrained write is route53:AssociateVPCWithHostedZone, on the private hosted zone AWS makes for an interface endpoint, whose id is not known beforehand
  # The key it is encrypted with: policy_read.tf (UseStateKeyThroughS3).
  statement {
    sid       = "WriteState"
    actions   = ["s3:PutObject"]
    resources = ["${local.state.bucket_arn}/*"]
  }

  statement {
    sid = "ManageBuckets"
    actions = [
      "s3:CreateBucket", "s3:DeleteBucket", "s3:PutBucketTagging", "s3:PutBucketPolicy", "s3:DeleteBucketPolicy",
      "s3:PutBucketVersioning", "s3:PutLifecycleConfiguration", "s3:PutEncryptionConfiguration",
      "s3:PutBucketOwnershipControls", "s3:PutBucketPublicAccessBlock",
    ]
    resources = local.stack.bucket_arns
  }

  statement {
    sid = "ManageRepository"
    actions = [
      "ecr:CreateRepository", "ecr:DeleteRepository", "ecr:PutImageScanningConfiguration",
      "ecr:PutImageTagMutability", "ecr:PutLifecyclePolicy", "ecr:DeleteLifecyclePolicy", "ecr:TagResource",
      "ecr:UntagResource",
    ]
    resources = [local.stack.repository_arn]
  }

  # UpdateEndpointWeightsAndCapacities: registering the variant with Application Auto Scaling checks that
  # the caller may scale it.
  statement {
    sid = "ManageSageMaker"
    actions = [
      "sagemaker:CreateModel", "sagemaker:DeleteModel", "sagemaker:CreateEndpointConfig",
      "sagemaker:DeleteEndpointConfig", "sagemaker:CreateEndpoint", "sagemaker:DeleteEndpoint",
      "sagemaker:UpdateEndpoint", "sagemaker:UpdateEndpointWeightsAndCapacities", "sagemaker:AddTags",
      "sagemaker:DeleteTags",
    ]
    resources = [local.stack.model_arns, local.stack.config_arns, local.stack.endpoint_arn]
  }

  # The workload role's permissions are the stack's to write, and only while the role carries the boundary.
  statement {
    sid       = "WriteTheWorkloadRolePolicyWithinTheBoundary"
    actions   = ["iam:PutRolePolicy", "iam:DeleteRolePolicy"]
    resources = [local.stack.workload_role]
    condition {
      test     = "StringEquals"
      variable = "iam:PermissionsBoundary"
      values   = [aws_iam_policy.workload_boundary.arn]
    }
  }

  statement {
    sid       = "PassExecutionRoleToSageMaker"
    actions   = ["iam:PassRole"]
    resources = [local.stack.workload_role]
    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["sagemaker.amazonaws.com"]
    }
  }

  # Registering the first endpoint variant for scaling creates AWS's service-linked role for it.
  statement {
    sid       = "ScalingServiceLinkedRole"
    actions   = ["iam:CreateServiceLinkedRole"]
    resources = [local.stack.scaling_service_role]
    condition {
      test     = "StringEquals"
      variable = "iam:AWSServiceName"
      values   = ["sagemaker.application-autoscaling.amazonaws.com"]
    }
  }

  # An interface endpoint with private DNS (enable_sns_endpoint) associates the VPC with a private hosted zone
  # that AWS makes for the endpoint: route53:AssociateVPCWithHostedZone is a dependent action of
  # ec2:CreateVpcEndpoint (Service Authorization Reference). The zone's id is AWS's, unknown beforehand: "*".
  statement {
    sid       = "PrivateDnsOfInterfaceEndpoints"
    actions   = ["route53:AssociateVPCWithHostedZone"]
    resources = ["*"]
  }

  statement {
    sid = "ManageTopics"
    actions = [
      "sns:CreateTopic", "sns:DeleteTopic", "sns:SetTopicAttributes", "sns:TagResource", "sns:UntagResource",
      "sns:Subscribe", "sns:Unsubscribe",
    ]
    resources = [local.stack.topic_arns]
  }

  statement {
    sid       = "ManageAlarms"
    actions   = ["cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms", "cloudwatch:TagResource", "cloudwatch:UntagResource"]
    resources = [local.stack.alarm_arns]
  }

  # Target tracking creates and deletes its alarms with the caller's permissions.
  statement {
    sid       = "ManageTargetTrackingAlarms"
    actions   = ["cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms", "cloudwatch:DescribeAlarms"]
    resources = [local.stack.scaling_alarm_arns]
  }

  statement {
    sid       = "ManageLogGroup"
    actions   = ["logs:CreateLogGroup", "logs:DeleteLogGroup", "logs:PutRetentionPolicy", "logs:DeleteRetentionPolicy", "logs:AssociateKmsKey", "logs:DisassociateKmsKey"]
    resources = ["${local.stack.log_group_arn}:*"]
  }

  # The tagging APIs take the log group's ARN without the trailing ":*".
  statement {
    sid       = "TagLogGroup"
    actions   = ["logs:TagResource", "logs:UntagResource"]
    resources = [local.stack.log_group_arn]
  }

  # AWS requires "*" for these: Application Auto Scaling has no resource-level permissions for them.
  statement {
    sid = "AccountWideChanges"
    actions = [
      "application-autoscaling:RegisterScalableTarget",
      "application-autoscaling:DeregisterScalableTarget", "application-autoscaling:PutScalingPolicy",
      "application-autoscaling:DeleteScalingPolicy", "application-autoscaling:TagResource",
      "application-autoscaling:UntagResource",
    ]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "aws:RequestedRegion"
      values   = [var.region]
    }
  }
}
