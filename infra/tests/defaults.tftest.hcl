# Plan-level properties of the stack with its default settings, against a mocked AWS provider.

mock_provider "aws" {
  # Computed attributes (ids, ARNs) get mock values at plan time, so plan-level assertions can read them.
  override_during = plan

  mock_data "aws_availability_zones" {
    defaults = { names = ["eu-west-1a", "eu-west-1b", "eu-west-1c"] }
  }
  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012" }
  }
  mock_data "aws_region" {
    defaults = { name = "eu-west-1" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  mock_resource "aws_s3_bucket" {
    defaults = { arn = "arn:aws:s3:::mock-bucket" }
  }
  mock_resource "aws_kms_key" {
    defaults = { arn = "arn:aws:kms:eu-west-1:123456789012:key/mock" }
  }
  mock_resource "aws_ecr_repository" {
    defaults = { arn = "arn:aws:ecr:eu-west-1:123456789012:repository/sdturbo", repository_url = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/sdturbo" }
  }
  mock_resource "aws_subnet" {
    defaults = { arn = "arn:aws:ec2:eu-west-1:123456789012:subnet/mock" }
  }
  mock_resource "aws_security_group" {
    defaults = { arn = "arn:aws:ec2:eu-west-1:123456789012:security-group/mock" }
  }
  mock_resource "aws_sns_topic" {
    defaults = { arn = "arn:aws:sns:eu-west-1:123456789012:mock" }
  }
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
}

# A commit SHA that build-and-push pushed, and the operators' address: neither has a default (see
# image_tag_is_required_for_the_endpoint and alarms_need_someone_to_hear_them).
variables {
  image_tag   = "0123456789abcdef0123456789abcdef01234567"
  alarm_email = "operators@example.com"
}

run "endpoint_is_async_with_output_failure_and_notifications" {
  command = plan

  assert {
    condition     = length(aws_sagemaker_endpoint_configuration.this.async_inference_config) == 1
    error_message = "The endpoint configuration must be asynchronous."
  }
  assert {
    condition     = startswith(aws_sagemaker_endpoint_configuration.this.async_inference_config[0].output_config[0].s3_output_path, "s3://sdturbo-async-123456789012-eu-west-1/async-output/")
    error_message = "Async outputs must go to the async bucket's output prefix."
  }
  assert {
    condition     = startswith(aws_sagemaker_endpoint_configuration.this.async_inference_config[0].output_config[0].s3_failure_path, "s3://sdturbo-async-123456789012-eu-west-1/async-failure/")
    error_message = "Async failures must go to the async bucket's failure prefix."
  }
  assert {
    condition     = length(aws_sagemaker_endpoint_configuration.this.async_inference_config[0].output_config[0].notification_config) == 1
    error_message = "Async results must be announced on SNS."
  }
  assert {
    condition     = aws_sagemaker_endpoint_configuration.this.async_inference_config[0].client_config[0].max_concurrent_invocations_per_instance == 16
    error_message = "Concurrency per instance must equal TorchServe workers x batch size (2 x 8)."
  }
  assert {
    condition     = aws_sagemaker_endpoint_configuration.this.production_variants[0].instance_type == "ml.g4dn.2xlarge"
    error_message = "The default instance must be ml.g4dn.2xlarge."
  }
}

run "model_is_private_isolated_and_uses_uncompressed_s3_prefix" {
  command = plan

  assert {
    condition     = aws_sagemaker_model.this.enable_network_isolation
    error_message = "The model container must run with network isolation."
  }
  assert {
    condition     = length(aws_sagemaker_model.this.vpc_config) == 1 && length(aws_subnet.private) == 2 && length(distinct(aws_subnet.private[*].availability_zone)) == 2
    error_message = "The model must run in the VPC, whose private subnets span two AZs."
  }
  assert {
    condition     = aws_sagemaker_model.this.primary_container[0].model_data_source[0].s3_data_source[0].s3_data_type == "S3Prefix" && aws_sagemaker_model.this.primary_container[0].model_data_source[0].s3_data_source[0].compression_type == "None"
    error_message = "Model data must be an uncompressed S3Prefix (the archive folder)."
  }
  assert {
    condition     = aws_sagemaker_model.this.primary_container[0].environment["SAGEMAKER_TS_BATCH_SIZE"] == "8"
    error_message = "TorchServe settings must reach the container through its environment."
  }
}

run "scales_to_zero_and_back" {
  command = plan

  assert {
    condition     = aws_appautoscaling_target.endpoint.min_capacity == 0
    error_message = "min capacity must be 0 so the endpoint scales to zero."
  }
  assert {
    condition     = aws_appautoscaling_policy.backlog.target_tracking_scaling_policy_configuration[0].customized_metric_specification[0].metric_name == "ApproximateBacklogSizePerInstance"
    error_message = "Target tracking must follow the backlog per instance."
  }
  assert {
    condition     = aws_appautoscaling_policy.from_zero.policy_type == "StepScaling" && one(aws_appautoscaling_policy.from_zero.step_scaling_policy_configuration[0].step_adjustment).scaling_adjustment == 1
    error_message = "A step policy must start one instance."
  }
  assert {
    condition     = aws_cloudwatch_metric_alarm.backlog_without_capacity.metric_name == "HasBacklogWithoutCapacity" && length(aws_cloudwatch_metric_alarm.backlog_without_capacity.alarm_actions) == 1
    error_message = "The 0 -> 1 alarm must watch HasBacklogWithoutCapacity and trigger the step policy."
  }
}

# CloudWatch invokes an Auto Scaling action again every minute its alarm stays in ALARM, and the alarm stays
# there while the first instance starts: the 0 -> 1 step must ask for one instance, not add one each time.
run "cold_start_asks_for_exactly_one_instance" {
  command = plan

  override_resource {
    override_during = plan
    target          = aws_appautoscaling_policy.from_zero
    values          = { arn = "arn:aws:autoscaling:eu-west-1:123456789012:scalingPolicy:mock:resource/sagemaker/endpoint/sdturbo/variant/AllTraffic:policyName/sdturbo-scale-from-zero" }
  }

  assert {
    condition     = aws_appautoscaling_policy.from_zero.step_scaling_policy_configuration[0].adjustment_type == "ExactCapacity"
    error_message = "The scale-from-zero step must set the capacity to 1 (ExactCapacity), so that a re-invoked alarm cannot add a second instance while the first starts."
  }
  assert {
    condition     = [for s in aws_appautoscaling_policy.from_zero.step_scaling_policy_configuration[0].step_adjustment : [tostring(s.metric_interval_lower_bound), s.scaling_adjustment]] == [["0", 1]]
    error_message = "One step, from the threshold up, to exactly one instance."
  }
  assert {
    condition     = aws_cloudwatch_metric_alarm.backlog_without_capacity.alarm_actions == toset([aws_appautoscaling_policy.from_zero.arn]) && aws_appautoscaling_policy.backlog.policy_type == "TargetTrackingScaling"
    error_message = "HasBacklogWithoutCapacity drives only the 0 -> 1 step; target tracking keeps 1 -> N."
  }
}

# If the backlog metric stops, target tracking's scale-in alarm has no data and an instance keeps billing.
run "idle_instances_alarm_the_operators" {
  command = plan

  override_resource {
    override_during = plan
    target          = aws_sns_topic.alarms
    values          = { arn = "arn:aws:sns:eu-west-1:123456789012:sdturbo-alarms" }
  }

  assert {
    condition     = aws_cloudwatch_metric_alarm.idle_instances.alarm_actions == toset(["arn:aws:sns:eu-west-1:123456789012:sdturbo-alarms"])
    error_message = "The idle-instances alarm must go to the operators' alarms topic."
  }
  assert {
    condition     = aws_cloudwatch_metric_alarm.idle_instances.evaluation_periods * one([for q in aws_cloudwatch_metric_alarm.idle_instances.metric_query : q.metric[0].period if q.id == "instances"]) == 3600
    error_message = "By default the alarm fires after 60 minutes in service with an empty backlog."
  }
  assert {
    condition     = strcontains(one([for q in aws_cloudwatch_metric_alarm.idle_instances.metric_query : q.expression if q.id == "idle"]), "FILL(backlog, 0)") && aws_cloudwatch_metric_alarm.idle_instances.treat_missing_data == "notBreaching"
    error_message = "A backlog that is not reported at all must count as empty; no data at all (no instance) must not alarm."
  }
}

# The subscriber is part of the stack CI applies (alarm_email), so CI's next apply cannot remove it.
run "alarms_reach_the_operators_address" {
  command = plan

  assert {
    condition     = one(aws_sns_topic_subscription.alarm_email).protocol == "email" && one(aws_sns_topic_subscription.alarm_email).endpoint == "operators@example.com"
    error_message = "The alarms topic must have the operators' address subscribed."
  }
}

# Images are multi-GB; model-data prefixes nothing references must not stay forever.
run "storage_keeps_what_a_rollback_needs_and_expires_the_rest" {
  command = plan

  assert {
    condition     = one([for r in jsondecode(aws_ecr_lifecycle_policy.this.policy).rules : r.selection.countNumber if r.selection.tagStatus == "any"]) == 10
    error_message = "ECR keeps the newest 10 images by default: the rollback and room for pushes that were not deployed."
  }
  assert {
    condition     = one(aws_s3_bucket_lifecycle_configuration.artifacts.rule).noncurrent_version_expiration[0].noncurrent_days == 30 && one(aws_s3_bucket_lifecycle_configuration.artifacts.rule).expiration[0].expired_object_delete_marker
    error_message = "Deleted model data must go for good after 30 days, delete markers included."
  }
  assert {
    condition     = length(aws_s3_bucket_lifecycle_configuration.artifacts.rule) == 1
    error_message = "One rule for model data, which expires only what was deleted: live model data never expires by age (an instance that starts copies it)."
  }
}

# However many images build-and-push adds after a deploy, the endpoint's image stays: an instance that starts
# (scale from zero) pulls it again. ECR never expires an image with a lower-priority rule once a
# higher-priority rule's tags select it (tests/e2e/test_infra_emulator.py plays pushes through the policy).
run "the_live_image_is_never_expired" {
  command = plan

  assert {
    condition = anytrue([
      for r in jsondecode(aws_ecr_lifecycle_policy.this.policy).rules : r.selection.tagStatus == "tagged" && try(r.selection.tagPatternList, []) == [var.image_tag] && r.selection.countNumber >= 1 && r.rulePriority < one([for a in jsondecode(aws_ecr_lifecycle_policy.this.policy).rules : a.rulePriority if a.selection.tagStatus == "any"])
    ])
    error_message = "A rule ahead of the newest-N rule must select the deployed image_tag, and keep it."
  }
}

run "network_has_no_internet_path" {
  command = plan

  # (tests/infra/test_infra.py also checks that no internet/NAT gateway or route resource is declared at all)
  assert {
    condition     = alltrue([for s in aws_subnet.private : s.map_public_ip_on_launch == false])
    error_message = "Subnets must not assign public IPs."
  }
  assert {
    condition     = aws_vpc_endpoint.s3.vpc_endpoint_type == "Gateway"
    error_message = "S3 must be reached through the (free) gateway endpoint."
  }
  assert {
    condition     = length(aws_vpc_endpoint.interface) == 0
    error_message = "No interface endpoint is created by default (each costs money per AZ-hour)."
  }
}

run "buckets_are_private_encrypted_and_tls_only" {
  command = plan

  assert {
    condition     = alltrue([for b in aws_s3_bucket_public_access_block.this : b.block_public_acls && b.block_public_policy && b.ignore_public_acls && b.restrict_public_buckets])
    error_message = "Every bucket must block public access."
  }
  assert {
    condition     = alltrue([for e in aws_s3_bucket_server_side_encryption_configuration.this : one(one(e.rule).apply_server_side_encryption_by_default).sse_algorithm == "aws:kms"])
    error_message = "Every bucket must use SSE-KMS."
  }
  assert {
    condition     = alltrue([for o in aws_s3_bucket_ownership_controls.this : one(o.rule).object_ownership == "BucketOwnerEnforced"])
    error_message = "Every bucket must enforce bucket ownership (no ACLs)."
  }
  assert {
    condition     = alltrue([for d in data.aws_iam_policy_document.tls_only : d.statement[0].effect == "Deny" && one(d.statement[0].condition).variable == "aws:SecureTransport"])
    error_message = "Every bucket policy must deny requests without TLS."
  }
  assert {
    condition     = aws_kms_key.this.enable_key_rotation
    error_message = "The customer key must rotate."
  }
  assert {
    condition     = length(aws_s3_bucket_lifecycle_configuration.async.rule) == 3 && alltrue([for r in aws_s3_bucket_lifecycle_configuration.async.rule : one(r.expiration).days == 7])
    error_message = "Async inputs, outputs and failures must expire."
  }
}

run "ecr_is_immutable_scanned_and_encrypted" {
  command = plan

  assert {
    condition     = aws_ecr_repository.this.image_tag_mutability == "IMMUTABLE"
    error_message = "Image tags must be immutable."
  }
  assert {
    condition     = aws_ecr_repository.this.image_scanning_configuration[0].scan_on_push
    error_message = "Images must be scanned on push."
  }
  assert {
    condition     = aws_ecr_repository.this.encryption_configuration[0].encryption_type == "KMS"
    error_message = "The repository must be KMS-encrypted."
  }
}

run "iam_allows_no_wildcard_action" {
  command = plan

  assert {
    condition = alltrue(flatten([
      for doc in [data.aws_iam_policy_document.sagemaker, data.aws_iam_policy_document.kms] : [
        for s in doc.statement : [for a in s.actions : !strcontains(a, "*")] if s.effect != "Deny"
      ]
    ]))
    error_message = "No Allow statement may use a wildcard action."
  }
  assert {
    condition = alltrue([
      for s in data.aws_iam_policy_document.sagemaker.statement : !contains(s.resources, "*") || contains(["EcrLogin", "WriteOwnMetrics", "DescribeNetwork"], s.sid)
    ])
    error_message = "The execution role may use a wildcard resource only where AWS requires one."
  }
}

run "endpoint_replacement_keeps_the_endpoint_live" {
  command = plan

  assert {
    condition     = aws_sagemaker_endpoint_configuration.this.name_prefix == "sdturbo-"
    error_message = "Endpoint configurations must be name-prefixed so a new one can exist beside the live one."
  }
}

run "nvme_instance_gets_no_volume_key_ebs_instance_does" {
  command = plan

  assert {
    condition     = aws_sagemaker_endpoint_configuration.this.kms_key_arn == null
    error_message = "ml.g4dn has NVMe instance storage: CreateEndpointConfig refuses a KmsKeyId for it."
  }
}

run "ebs_backed_instance_volume_is_encrypted_with_the_stack_key" {
  command = plan
  variables {
    instance_type = "ml.m5.2xlarge"
  }

  assert {
    condition     = aws_sagemaker_endpoint_configuration.this.kms_key_arn == "arn:aws:kms:eu-west-1:123456789012:key/mock"
    error_message = "EBS-backed instance volumes must use the stack's KMS key."
  }
}

run "gpu_endpoint_requires_cuda_on_an_ami_whose_driver_runs_the_image" {
  command = plan

  assert {
    condition     = aws_sagemaker_endpoint_configuration.this.production_variants[0].inference_ami_version == "al2-ami-sagemaker-inference-gpu-3-1"
    error_message = "A GPU endpoint must pin the inference AMI with driver 550 (CUDA 12), which runs the image's CUDA 12 torch."
  }
  assert {
    condition     = aws_sagemaker_model.this.primary_container[0].environment["SDTURBO_DEVICE"] == "cuda"
    error_message = "On a GPU instance the container must require CUDA, never fall back to the CPU."
  }
}

run "default_engine_settings_fit_two_workers_on_a_t4" {
  command = plan

  assert {
    condition     = aws_sagemaker_model.this.primary_container[0].environment["SAGEMAKER_MODEL_SERVER_WORKERS"] == "2"
    error_message = "The default endpoint (sd-turbo's profile, handler/profiles.yaml) runs two workers on the T4."
  }
  assert {
    condition     = aws_sagemaker_model.this.primary_container[0].environment["SAGEMAKER_TS_BATCH_SIZE"] == tostring(yamldecode(file("../handler/model-config.yaml")).batchSize)
    error_message = "With torchserve_batch_size unset, the batch size is the archive's (handler/model-config.yaml)."
  }

  assert {
    condition     = aws_sagemaker_model.this.primary_container[0].environment["SDTURBO_MAX_GPU_MEMORY_GIB"] == "6.5"
    error_message = "The default endpoint (two workers on a 16 GB T4) caps each worker's GPU memory at 6.5 GiB."
  }
  assert {
    condition     = aws_sagemaker_model.this.primary_container[0].environment["SDTURBO_CUDA_GRAPHS"] == "false"
    error_message = "The default endpoint runs without CUDA graphs, whose pools leave no room for 1024x1024 under the cap."
  }
}

run "handler_settings_become_engine_variables_and_can_be_cleared" {
  command = plan
  variables {
    instance_type    = "ml.g5.2xlarge"
    handler_settings = { compile = "none" }
  }

  assert {
    condition = { for key, value in aws_sagemaker_model.this.primary_container[0].environment : key => value if startswith(key, "SDTURBO_") } == {
      SDTURBO_DEVICE  = "cuda"
      SDTURBO_COMPILE = "none"
    }
    error_message = "Each handler_settings entry becomes SDTURBO_<NAME>, and nothing of the default stays once it is replaced."
  }
}

run "cpu_instance_gets_no_gpu_ami_and_keeps_device_auto" {
  command = plan
  variables {
    instance_type = "ml.m5.2xlarge"
  }

  assert {
    condition     = aws_sagemaker_endpoint_configuration.this.production_variants[0].inference_ami_version == null
    error_message = "A CPU instance type must not ask for a GPU inference AMI."
  }
  assert {
    condition     = !contains(keys(aws_sagemaker_model.this.primary_container[0].environment), "SDTURBO_DEVICE")
    error_message = "A CPU instance must not require CUDA."
  }
}

# The role (its trust and its permissions boundary) is infra/bootstrap's: the stack only writes its policy.
run "model_runs_as_the_bootstrap_s_execution_role" {
  command = plan

  assert {
    condition     = aws_sagemaker_model.this.execution_role_arn == "arn:aws:iam::123456789012:role/sdturbo-sagemaker-execution" && aws_iam_role_policy.sagemaker.role == "sdturbo-sagemaker-execution"
    error_message = "The model must run as, and the stack write the policy of, the execution role infra/bootstrap makes."
  }
}

run "deploy_keeps_the_instance_count_ci_passes" {
  command = plan
  variables {
    deploy_instance_count = 2
  }

  assert {
    condition     = aws_sagemaker_endpoint_configuration.this.production_variants[0].initial_instance_count == 2
    error_message = "A new endpoint configuration must start with the count CI read from the live endpoint."
  }
}

run "instance_type_change_replaces_the_scaling_registration" {
  command = plan

  assert {
    condition     = terraform_data.scaling_registration.triggers_replace == "ml.g4dn.2xlarge"
    error_message = "The scaling registration must be replaced (deregister, update, register) when the instance type changes."
  }
}

# The caller policy (caller_policy_json): each step of an async call, on this stack's resources only.
# tests/e2e/test_infra_emulator.py evaluates the applied policy against the requests scripts/invoke.py sends.
run "caller_policy_grants_each_step_of_an_async_call_on_this_stack_only" {
  command = plan

  # Distinct ARNs, so each statement is seen to name its own resource.
  override_resource {
    override_during = plan
    target          = aws_s3_bucket.async
    values          = { arn = "arn:aws:s3:::sdturbo-async" }
  }

  override_resource {
    override_during = plan
    target          = aws_s3_bucket.artifacts
    values          = { arn = "arn:aws:s3:::sdturbo-artifacts" }
  }

  override_resource {
    override_during = plan
    target          = aws_sns_topic.success
    values          = { arn = "arn:aws:sns:eu-west-1:123456789012:sdturbo-async-success" }
  }

  override_resource {
    override_during = plan
    target          = aws_sns_topic.error
    values          = { arn = "arn:aws:sns:eu-west-1:123456789012:sdturbo-async-error" }
  }

  override_resource {
    override_during = plan
    target          = aws_sagemaker_endpoint.this
    values          = { arn = "arn:aws:sagemaker:eu-west-1:123456789012:endpoint/sdturbo" }
  }

  assert {
    condition = jsonencode({ for s in data.aws_iam_policy_document.caller.statement : s.sid => [sort(s.actions), sort(s.resources)] }) == jsonencode({
      QueueRequestsOnThisEndpoint                  = [["sagemaker:InvokeEndpointAsync"], ["arn:aws:sagemaker:eu-west-1:123456789012:endpoint/sdturbo"]]
      UploadRequestPayloads                        = [["s3:PutObject"], ["arn:aws:s3:::sdturbo-async/async-input/*"]]
      ReadResultsAndFailures                       = [["s3:GetObject"], ["arn:aws:s3:::sdturbo-async/async-failure/*", "arn:aws:s3:::sdturbo-async/async-output/*"]]
      TellPendingResultsFromRefusals               = [["s3:ListBucket"], ["arn:aws:s3:::sdturbo-async"]]
      UseTheStackKeyOnlyThroughS3ForTheAsyncBucket = [["kms:Decrypt", "kms:GenerateDataKey"], ["arn:aws:kms:eu-west-1:123456789012:key/mock"]]
      SubscribeToResultNotifications = [["sns:Subscribe"], [
        "arn:aws:sns:eu-west-1:123456789012:sdturbo-async-error", "arn:aws:sns:eu-west-1:123456789012:sdturbo-async-success",
      ]]
    })
    error_message = "The caller policy must hold exactly one statement per step of an async call, each on this stack's resource for it."
  }
  assert {
    condition     = alltrue([for s in data.aws_iam_policy_document.caller.statement : s.effect == null || s.effect == "Allow"])
    error_message = "The caller policy only allows (what it may not do is everything else)."
  }
  assert {
    condition = jsonencode({ for c in one([for s in data.aws_iam_policy_document.caller.statement : s.condition if s.sid == "UseTheStackKeyOnlyThroughS3ForTheAsyncBucket"]) : c.variable => [c.test, sort(c.values)] }) == jsonencode({
      "kms:ViaService"                   = ["StringEquals", ["s3.eu-west-1.amazonaws.com"]]
      "kms:EncryptionContext:aws:s3:arn" = ["StringLike", ["arn:aws:s3:::sdturbo-async", "arn:aws:s3:::sdturbo-async/*"]]
    })
    error_message = "The caller may use the stack key only through S3, and only for the async bucket."
  }
  assert {
    condition     = alltrue([for s in data.aws_iam_policy_document.caller.statement : length(s.condition) == 0 if s.sid != "UseTheStackKeyOnlyThroughS3ForTheAsyncBucket"])
    error_message = "Only the key statement is conditional; a condition elsewhere would need a test of its own."
  }
}

# SDXL-turbo, the production model, on the default instance type: its profile (handler/profiles.yaml) plans
# and reaches the container. Its values are reasoned, not measured on a T4 (see the profile).
run "sdxl_turbo_profile_plans_on_the_default_instance_type" {
  command = plan
  variables {
    model = "sdxl-turbo"
  }

  assert {
    condition     = aws_sagemaker_endpoint_configuration.this.production_variants[0].instance_type == "ml.g4dn.2xlarge"
    error_message = "The SDXL-turbo profile must plan on the default instance type."
  }
  assert {
    condition = { for key, value in aws_sagemaker_model.this.primary_container[0].environment : key => value if startswith(key, "SDTURBO_") || key == "SAGEMAKER_MODEL_SERVER_WORKERS" } == {
      SAGEMAKER_MODEL_SERVER_WORKERS = "1"
      SDTURBO_DEVICE                 = "cuda"
      SDTURBO_MAX_GPU_MEMORY_GIB     = "14"
      SDTURBO_CUDA_GRAPHS            = "false"
      SDTURBO_VAE_DECODE_BATCH       = "2"
    }
    error_message = "SDXL-turbo on a T4: one worker, a 14 GiB ceiling, no CUDA graphs, VAE slices of 2."
  }
  assert {
    condition     = aws_sagemaker_endpoint_configuration.this.async_inference_config[0].client_config[0].max_concurrent_invocations_per_instance == 8
    error_message = "Concurrency per instance follows the profile: 1 worker x the archive's batch of 8."
  }
}

run "sdxl_turbo_takes_two_workers_on_an_l40s" {
  command = plan
  variables {
    model              = "sdxl-turbo"
    instance_type      = "ml.g6e.2xlarge"
    torchserve_workers = 2
  }

  assert {
    condition     = aws_sagemaker_endpoint_configuration.this.async_inference_config[0].client_config[0].max_concurrent_invocations_per_instance == 16
    error_message = "Two SDXL-turbo workers at 14 GiB fit a 48 GiB L40S, and concurrency follows them."
  }
}

# SDXL-turbo's archive carries its settings (model_config): handler_settings overrides them one by one, and
# the plan checks what the workers will run with, not only what the environment says.
run "sdxl_turbo_archive_settings_stay_under_handler_settings" {
  command = plan
  variables {
    model            = "sdxl-turbo"
    handler_settings = { compile = "none" }
  }

  assert {
    condition     = aws_sagemaker_model.this.primary_container[0].environment["SDTURBO_MAX_GPU_MEMORY_GIB"] == "14" && aws_sagemaker_model.this.primary_container[0].environment["SDTURBO_COMPILE"] == "none"
    error_message = "handler_settings must not drop the settings SDXL-turbo's archive carries (its 14 GiB ceiling)."
  }
}
