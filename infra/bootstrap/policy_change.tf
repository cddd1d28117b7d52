# What `terraform apply` of the main stack changes, for the apply role only (trusted in the protected
# environment). Each action was seen in the provider's request trace of an apply, update or destroy
# against the emulator, or is one AWS checks on the caller's behalf (commented). What the apply role may
# never do is in policy_guardrails.tf; the network and the key, whose ids are generated, are changed by tag
# (policy_change_tagged.tf). One managed policy may hold 6,144 characters.

resource "aws_iam_policy" "change_stack" {
  name        = "${var.name}-change-stack"
  description = "Create, change and destroy the ${var.name} stack and write its Terraform state"
  policy      = data.aws_iam_policy_document.change_stack.json
}

data "aws_iam_policy_document" "change_stack" {
  # checkov:skip=CKV_AWS_356: "*" only where AWS requires it (Application Auto Scaling), commented and region-bound
  statement {
    sid       = "WriteState"
    actions   = ["s3:PutObject"]
    resources = ["${local.state.bucket_arn}/*"]
  }

  statement {
    sid       = "EncryptState"
    actions   = ["kms:GenerateDataKey"]
    resources = [local.state.key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${var.region}.amazonaws.com"]
    }
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

  # A role or role policy may be created or changed only on a role that carries the workload boundary.
  statement {
    sid       = "ChangeWorkloadRolesWithinTheBoundary"
    actions   = ["iam:CreateRole", "iam:PutRolePolicy", "iam:DeleteRolePolicy"]
    resources = [local.stack.workload_role]
    condition {
      test     = "StringEquals"
      variable = "iam:PermissionsBoundary"
      values   = [aws_iam_policy.workload_boundary.arn]
    }
  }

  # These actions have no boundary condition key; they cannot add permissions to a role.
  statement {
    sid       = "ManageWorkloadRoles"
    actions   = ["iam:DeleteRole", "iam:TagRole", "iam:UntagRole", "iam:UpdateRole", "iam:UpdateAssumeRolePolicy", "iam:ListInstanceProfilesForRole"]
    resources = [local.stack.workload_role]
  }

  statement {
    sid       = "PassExecutionRoleToSageMaker"
    actions   = ["iam:PassRole"]
    resources = ["${local.arn.iam}:role/${var.name}-sagemaker-execution"]
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

  statement {
    sid       = "ManageDashboard"
    actions   = ["cloudwatch:PutDashboard", "cloudwatch:DeleteDashboards"]
    resources = [local.stack.dashboard_arn]
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
      "application-autoscaling:UntagResource", "application-autoscaling:PutScheduledAction",
      "application-autoscaling:DeleteScheduledAction",
    ]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "aws:RequestedRegion"
      values   = [var.region]
    }
  }
}
