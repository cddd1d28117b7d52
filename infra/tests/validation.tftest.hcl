# Bad inputs are refused by validation blocks, with messages that say what is expected.

mock_provider "aws" {
  # Computed attributes (ids, ARNs) get mock values at plan time, so plan-level assertions can read them.
  override_during = plan

  mock_data "aws_availability_zones" {
    defaults = { names = ["eu-west-1a", "eu-west-1b"] }
  }
  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
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

run "instance_type_must_be_a_sagemaker_type" {
  command = plan
  variables {
    instance_type = "g4dn.2xlarge"
  }
  expect_failures = [var.instance_type]
}

run "max_instances_not_below_min" {
  command = plan
  variables {
    min_instances = 3
    max_instances = 2
  }
  expect_failures = [var.max_instances]
}

# Without an image there is no endpoint: the plan stops at the model, naming the README's first two steps,
# instead of SageMaker refusing the model halfway through an apply.
run "image_tag_is_required_for_the_endpoint" {
  command = plan
  variables {
    image_tag = null
  }
  expect_failures = [aws_sagemaker_model.this]
}

# What CI passes when the IMAGE_TAG repository variable is not set.
run "empty_image_tag_is_refused" {
  command = plan
  variables {
    image_tag = ""
  }
  expect_failures = [var.image_tag]
}

run "image_tag_latest_is_refused" {
  command = plan
  variables {
    image_tag = "latest"
  }
  expect_failures = [var.image_tag]
}

run "one_availability_zone_is_refused" {
  command = plan
  variables {
    availability_zones = ["eu-west-1a"]
  }
  expect_failures = [var.availability_zones]
}

run "log_retention_must_be_a_cloudwatch_value" {
  command = plan
  variables {
    log_retention_days = 10
  }
  expect_failures = [var.log_retention_days]
}

# The alarms topic carries the operators' alarms: a stack whose alarms reach no one is refused.
run "alarms_need_someone_to_hear_them" {
  command = plan
  variables {
    alarm_email = null
  }
  expect_failures = [aws_sns_topic.alarms]
}

# What CI passes when the ALARM_EMAIL repository variable is not set.
run "an_empty_alarm_address_is_refused" {
  command = plan
  variables {
    alarm_email = ""
  }
  expect_failures = [var.alarm_email]
}

run "interface_endpoints_are_opt_in" {
  command = plan
  variables {
    enable_sns_endpoint         = true
    enable_cloudwatch_endpoints = true
  }
  assert {
    condition     = length(aws_vpc_endpoint.interface) == 3
    error_message = "Turning the toggles on must create the sns, logs and monitoring endpoints."
  }
}

run "inference_ami_without_a_cuda_12_driver_is_refused" {
  command = plan
  variables {
    inference_ami_version = "al2-ami-sagemaker-inference-neuron-2"
  }
  expect_failures = [var.inference_ami_version]
}

run "deploy_instance_count_is_at_least_one" {
  command = plan
  variables {
    deploy_instance_count = 0
  }
  expect_failures = [var.deploy_instance_count]
}

run "handler_settings_names_are_settings_fields" {
  command = plan
  variables {
    handler_settings = { "max-gpu-memory" = "6.5" }
  }
  expect_failures = [var.handler_settings]
}

run "idle_alarm_window_is_longer_than_a_normal_scale_in" {
  command = plan
  variables {
    idle_instance_alarm_minutes = 15
  }
  expect_failures = [var.idle_instance_alarm_minutes]
}

run "ecr_keeps_at_least_the_live_image_and_its_rollback" {
  command = plan
  variables {
    ecr_keep_images = 2
  }
  expect_failures = [var.ecr_keep_images]
}

# The model's sizing must fit the instance's GPU (infra/profiles.tf): refused at plan time, with the reason,
# instead of workers that fail to load minutes into the endpoint's start.
run "three_sd_turbo_workers_do_not_fit_a_t4" {
  command = plan
  variables {
    torchserve_workers = 3
  }
  expect_failures = [aws_sagemaker_endpoint_configuration.this]
}

run "sdxl_turbo_with_three_workers_does_not_fit_a_t4" {
  command = plan
  variables {
    model              = "sdxl-turbo"
    torchserve_workers = 3
  }
  expect_failures = [aws_sagemaker_endpoint_configuration.this]
}

# SD-turbo's T4 sizing (two workers at 6.5 GiB) under SDXL-turbo: the 6.7 GiB it holds once loaded does not
# fit the ceiling, which is how the endpoint failed in issue 23.
run "sdxl_turbo_under_sd_turbo_s_t4_sizing_cannot_load" {
  command = plan
  variables {
    model              = "sdxl-turbo"
    torchserve_workers = 2
    handler_settings   = { max_gpu_memory_gib = "6.5", cuda_graphs = "false" }
  }
  expect_failures = [aws_sagemaker_endpoint_configuration.this]
}

# Without a ceiling, workers are held to what they hold once loaded: three SDXL-turbo workers (3 x 7.4 GiB)
# are more than a T4 has.
run "uncapped_sdxl_turbo_workers_need_a_gpu_that_holds_them" {
  command = plan
  variables {
    model              = "sdxl-turbo"
    torchserve_workers = 3
    handler_settings   = { max_gpu_memory_gib = "0" }
  }
  expect_failures = [aws_sagemaker_endpoint_configuration.this]
}

run "gpu_family_without_a_memory_figure_is_refused" {
  command = plan
  variables {
    instance_type = "ml.g4ad.xlarge"
  }
  expect_failures = [aws_sagemaker_endpoint_configuration.this]
}

run "model_must_name_a_profile" {
  command = plan
  variables {
    model = "sdxl"
  }
  expect_failures = [var.model]
}
