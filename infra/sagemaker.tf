locals {
  # GPU instance types (ml.g*, ml.p*) get a CUDA-only container (it answers 503 with the cause rather than
  # run SD-turbo on the CPU of a GPU instance) and the inference AMI whose driver runs the image's torch.
  gpu_instance = can(regex("^ml\\.[gp][0-9]", var.instance_type))
  # The engine reads its settings from SDTURBO_<FIELD> variables (handler/settings.py).
  engine_environment = merge(
    { for key, value in { SDTURBO_DEVICE = "cuda" } : key => value if local.gpu_instance },
    { for name, value in local.handler_settings : "SDTURBO_${upper(name)}" => value },
  )
}

resource "aws_sagemaker_model" "this" {
  # Any change to a model replaces it, and the new one is created before the old one goes away (the
  # endpoint switches over without downtime), so both exist at once: SageMaker refuses a name that exists.
  # Each model therefore takes a fresh name when it is created. ignore_changes keeps the name on plans
  # that change nothing else; a replacement is planned from the configuration, so it gets a new name.
  name                     = "${var.name}-${substr(replace(uuid(), "-", ""), 0, 16)}"
  execution_role_arn       = local.execution_role_arn
  enable_network_isolation = var.enable_network_isolation

  primary_container {
    image = "${aws_ecr_repository.this.repository_url}:${var.image_tag}"
    mode  = "SingleModel"

    # Uncompressed S3Prefix: SageMaker copies the archive folder file by file, no tarball to unpack.
    model_data_source {
      s3_data_source {
        s3_uri           = "s3://${aws_s3_bucket.artifacts.bucket}/${var.model_data_prefix}"
        s3_data_type     = "S3Prefix"
        compression_type = "None"
      }
    }

    environment = merge({
      SAGEMAKER_MODEL_SERVER_WORKERS = tostring(local.workers)
      SAGEMAKER_TS_BATCH_SIZE        = tostring(local.batch_size)
      SAGEMAKER_TS_MAX_BATCH_DELAY   = tostring(var.torchserve_max_batch_delay_ms)
      SAGEMAKER_TS_RESPONSE_TIMEOUT  = tostring(var.torchserve_response_timeout_s)
    }, local.engine_environment)
  }

  vpc_config {
    subnets            = aws_subnet.private[*].id
    security_group_ids = [aws_security_group.model.id]
  }

  lifecycle {
    create_before_destroy = true
    ignore_changes        = [name]

    # SageMaker refuses a model whose image does not exist; say so at plan time, before anything is built.
    precondition {
      condition     = var.image_tag != null
      error_message = "image_tag is not set: the endpoint needs an image in this stack's ECR repository. Push one first (infra/README.md: \"3. First apply, before any image\" and \"4. The first image\"), then set image_tag to its tag."
    }
  }

  depends_on = [aws_iam_role_policy.sagemaker]
}

resource "aws_sagemaker_endpoint_configuration" "this" {
  # checkov:skip=CKV_AWS_98: the volume key is set for EBS-backed types; NVMe instance storage (the default g4dn) is hardware-encrypted and AWS refuses a KmsKeyId there
  name_prefix = "${var.name}-"
  kms_key_arn = local.endpoint_volume_kms_key_arn

  production_variants {
    variant_name           = local.variant_name
    model_name             = aws_sagemaker_model.this.name
    instance_type          = var.instance_type
    initial_instance_count = var.deploy_instance_count
    inference_ami_version  = local.gpu_instance ? var.inference_ami_version : null

    container_startup_health_check_timeout_in_seconds = var.container_startup_timeout_s
    model_data_download_timeout_in_seconds            = var.model_download_timeout_s
  }

  async_inference_config {
    output_config {
      s3_output_path  = "s3://${aws_s3_bucket.async.bucket}/${local.async_output_prefix}"
      s3_failure_path = "s3://${aws_s3_bucket.async.bucket}/${local.async_failure_prefix}"
      kms_key_id      = aws_kms_key.this.arn

      notification_config {
        success_topic = aws_sns_topic.success.arn
        error_topic   = aws_sns_topic.error.arn
      }
    }

    client_config {
      # Exactly what TorchServe takes at once (workers x batch): more would only queue inside the container.
      max_concurrent_invocations_per_instance = local.max_concurrent_invocations
    }
  }

  # A new configuration replaces the live variant's instance count with its initial count (the provider
  # cannot ask UpdateEndpoint to retain it), so a deploy passes the current count (deploy_instance_count).
  # A count that changed alone is not a reason for a new configuration: autoscaling owns it between deploys.
  lifecycle {
    create_before_destroy = true
    ignore_changes        = [production_variants[0].initial_instance_count]

    # Where the model's sizing meets the instance type: a worker that cannot load, or workers whose
    # ceilings add up past the GPU, would fail on the endpoint after minutes of start-up; refuse them here.
    precondition {
      condition     = local.gpu_misfit == null
      error_message = "${var.model} does not fit ${var.instance_type}: ${coalesce(local.gpu_misfit, "-")}. Choose fewer workers (torchserve_workers), another ceiling (handler_settings' max_gpu_memory_gib) or a larger GPU (instance_type); infra/profiles.tf holds the GPU memory per family."
    }
  }
}

resource "aws_sagemaker_endpoint" "this" {
  name                 = local.endpoint_name
  endpoint_config_name = aws_sagemaker_endpoint_configuration.this.name

  # scaling_registration (autoscaling.tf): an instance type change deregisters the variant first.
  depends_on = [aws_cloudwatch_log_group.endpoint, terraform_data.scaling_registration]
}
