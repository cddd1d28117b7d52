# What the main stack (infra/) creates, named the way infra/data.tf names it, so the CI policies can name
# each resource instead of a wildcard. Both roots take the same `name` and `region`; the emulator test
# (tests/e2e/test_infra_emulator.py) applies both and fails if these names drift from the stack's.

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition

  arn = {
    iam        = "arn:${local.partition}:iam::${local.account_id}"
    sagemaker  = "arn:${local.partition}:sagemaker:${var.region}:${local.account_id}"
    kms        = "arn:${local.partition}:kms:${var.region}:${local.account_id}"
    ec2        = "arn:${local.partition}:ec2:${var.region}:${local.account_id}"
    sns        = "arn:${local.partition}:sns:${var.region}:${local.account_id}"
    cloudwatch = "arn:${local.partition}:cloudwatch:${var.region}:${local.account_id}"
    logs       = "arn:${local.partition}:logs:${var.region}:${local.account_id}"
  }

  # infra/iam.tf names it the same way.
  execution_role_name = "${var.name}-sagemaker-execution"

  stack = {
    bucket_arns = [
      "arn:${local.partition}:s3:::${var.name}-artifacts-${local.account_id}-${var.region}",
      "arn:${local.partition}:s3:::${var.name}-async-${local.account_id}-${var.region}",
    ]
    repository_arn = "arn:${local.partition}:ecr:${var.region}:${local.account_id}:repository/${var.name}"
    # A key's id is random: no name can be known before CreateKey, so policies add the stack's Project tag
    # as a condition. The state key, which carries the tag too, is denied explicitly.
    key_arns      = "${local.arn.kms}:key/*"
    alias_arn     = "${local.arn.kms}:alias/${var.name}"
    model_arns    = "${local.arn.sagemaker}:model/${var.name}-*"
    config_arns   = "${local.arn.sagemaker}:endpoint-config/${var.name}-*"
    endpoint_arn  = "${local.arn.sagemaker}:endpoint/${var.name}"
    workload_role = "${local.arn.iam}:role/${local.execution_role_name}" # made here (execution_role.tf); the stack writes its policy
    topic_arns    = "${local.arn.sns}:${var.name}-*"
    alarm_arns    = "${local.arn.cloudwatch}:alarm:${var.name}-*"
    # Target tracking names its alarms TargetTracking-<resource id>-AlarmHigh|AlarmLow-<uuid>.
    scaling_alarm_arns = "${local.arn.cloudwatch}:alarm:TargetTracking-endpoint/${var.name}/variant/*"
    log_group_arn      = "${local.arn.logs}:log-group:/aws/sagemaker/Endpoints/${var.name}"
    # A service-linked role AWS creates the first time an endpoint variant is registered for scaling.
    scaling_service_role = "${local.arn.iam}:role/aws-service-role/sagemaker.application-autoscaling.amazonaws.com/AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
  }

  state = {
    bucket_arn = aws_s3_bucket.state.arn
    # The S3 backend's lock object is the state's key with ".tflock" appended (use_lockfile).
    lock_object_arns = "${aws_s3_bucket.state.arn}/*.tflock"
    key_arn          = aws_kms_key.state.arn
  }

  ci_role_arns = [for role in keys(local.github_roles) : "${local.arn.iam}:role/${var.name}-github-${role}"]
}
