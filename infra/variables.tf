variable "name" {
  description = "Name prefix of every resource, and the SageMaker endpoint's name."
  type        = string
  default     = "sdturbo"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}[a-z0-9]$", var.name))
    error_message = "name must be 3-32 characters of lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "region" {
  description = "AWS region to deploy into."
  type        = string
  default     = "us-east-1"
}

variable "tags" {
  description = "Extra tags for every resource."
  type        = map(string)
  default     = {}
}

# ------------------------------------------------------------------ network
variable "vpc_cidr" {
  description = "CIDR block of the private VPC."
  type        = string
  default     = "10.42.0.0/16"

  validation {
    condition     = can(cidrnetmask(var.vpc_cidr))
    error_message = "vpc_cidr must be an IPv4 CIDR block such as 10.42.0.0/16."
  }
}

variable "az_count" {
  description = "How many availability zones get a private subnet (used when availability_zones is empty)."
  type        = number
  default     = 2

  validation {
    condition     = var.az_count >= 2 && var.az_count <= 6
    error_message = "az_count must be between 2 and 6: SageMaker wants subnets in at least two AZs."
  }
}

variable "availability_zones" {
  description = "Explicit AZ names for the private subnets; empty picks the first az_count available."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.availability_zones) == 0 || length(var.availability_zones) >= 2
    error_message = "availability_zones must name at least two zones, or be empty."
  }
}

variable "enable_sns_endpoint" {
  description = "Interface endpoint for SNS in the private subnets. Off by default: SageMaker's async agent publishes notifications from the service side; turn on if your account policy forces all SNS traffic through the VPC (~$0.01 per AZ-hour)."
  type        = bool
  default     = false
}

variable "enable_cloudwatch_endpoints" {
  description = "Interface endpoints for CloudWatch Logs and Metrics. Off by default: the container runs with network isolation and SageMaker ships its logs and metrics; turn on only if you disable network isolation (~$0.02 per AZ-hour for both)."
  type        = bool
  default     = false
}

# ------------------------------------------------------------------ storage
variable "async_object_expiration_days" {
  description = "Days after which async requests, outputs and failures are deleted from S3."
  type        = number
  default     = 7

  validation {
    condition     = var.async_object_expiration_days >= 1 && var.async_object_expiration_days <= 365
    error_message = "async_object_expiration_days must be between 1 and 365."
  }
}

variable "model_data_prefix" {
  description = "Prefix in the artifacts bucket holding the uncompressed archive folder (scripts/publish.py uploads it). Ends with '/'."
  type        = string
  default     = "models/sdturbo/v1/"

  validation {
    condition     = can(regex("^[A-Za-z0-9._/-]+/$", var.model_data_prefix))
    error_message = "model_data_prefix must be an S3 key prefix ending with '/'."
  }
}

variable "retired_model_data_days" {
  description = "Days a deleted model-data prefix (infra/README.md step 10 deletes the one no rollback needs) stays recoverable as noncurrent versions in the versioned artifacts bucket before S3 removes it for good."
  type        = number
  default     = 30

  validation {
    condition     = var.retired_model_data_days >= 1 && var.retired_model_data_days <= 365
    error_message = "retired_model_data_days must be between 1 and 365."
  }
}

variable "force_destroy_buckets" {
  description = "Let `terraform destroy` delete non-empty buckets. Keep false outside experiments."
  type        = bool
  default     = false
}

# ------------------------------------------------------------------ image and model
variable "image_tag" {
  description = "Tag of the image in this stack's ECR repository that the endpoint runs (build-and-push pushes the full commit SHA). No default: it must name an image that exists, and none does before the first push; only the first, targeted apply (infra/README.md) runs without it."
  type        = string
  default     = null

  validation {
    condition     = var.image_tag == null || (can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag)) && var.image_tag != "latest")
    error_message = "image_tag must be a valid Docker tag and not 'latest' (the repository is immutable); in CI, set the IMAGE_TAG repository variable to a commit SHA that build-and-push pushed."
  }
}

variable "ecr_keep_images" {
  description = "How many of the newest images the ECR lifecycle policy keeps; the one the endpoint runs (image_tag) has a rule of its own and is kept however old it is. A rollback needs the image deployed before it; build-and-push also pushes images that are never deployed (every push to main that changes the image), so the default leaves room for eight of those between deploys. Each image can be ~3.4 GB of its own layers when the build cache misses (infra/README.md, Cost)."
  type        = number
  default     = 10

  validation {
    condition     = var.ecr_keep_images >= 3
    error_message = "ecr_keep_images must be at least 3: the live image, the one before it (rollback) and one pushed but not yet deployed."
  }
}

variable "instance_type" {
  description = "SageMaker instance type; the image targets a T4 (ml.g4dn.*)."
  type        = string
  default     = "ml.g4dn.2xlarge"

  validation {
    condition     = can(regex("^ml\\.[a-z0-9]+\\.[a-z0-9]+$", var.instance_type))
    error_message = "instance_type must be a SageMaker instance type such as ml.g4dn.2xlarge (it starts with 'ml.')."
  }
}

variable "inference_ami_version" {
  description = "SageMaker inference AMI (so NVIDIA driver) of GPU instances; unused on CPU types. The image's torch is a CUDA 12.6 build (PyTorch publishes no 12.8 build of torch 2.13), which needs a CUDA 12 driver (>= 525): gpu-3-1 has driver 550 (CUDA 12.4), while an ml.g4dn async endpoint without an AMI gets driver 470 (CUDA 11.4) and no usable GPU. scripts/gpu_stack.py holds the drivers, their sources and the check."
  type        = string
  default     = "al2-ami-sagemaker-inference-gpu-3-1"

  validation {
    condition     = contains(["al2-ami-sagemaker-inference-gpu-3-1", "al2-ami-sagemaker-inference-gpu-2-1", "al2-ami-sagemaker-inference-gpu-2"], var.inference_ami_version)
    error_message = "inference_ami_version must be a GPU AMI whose NVIDIA driver runs the image's CUDA 12 torch: al2-ami-sagemaker-inference-gpu-3-1 (driver 550), -gpu-2-1 or -gpu-2 (driver 535)."
  }
}

variable "enable_network_isolation" {
  description = "Run the container with no network access (it needs none: weights come through /opt/ml/model)."
  type        = bool
  default     = true
}

variable "model" {
  description = "The model the archive at model_data_prefix holds: a profile of handler/profiles.yaml (sd-turbo, sdxl-turbo), which sizes the workers for the instance's GPU (workers, memory ceiling, CUDA graphs, VAE slices). The plan refuses a sizing that does not fit instance_type's GPU memory. Build the archive with the same: make mar MODEL=<model>."
  type        = string
  default     = "sd-turbo"

  validation {
    condition     = contains(keys(local.profiles), var.model)
    error_message = "model must name a profile of handler/profiles.yaml: sd-turbo or sdxl-turbo."
  }
}

variable "torchserve_workers" {
  description = "TorchServe workers per instance (SAGEMAKER_MODEL_SERVER_WORKERS). null: the model's profile (handler/profiles.yaml), else the archive's model-config.yaml."
  type        = number
  default     = null

  validation {
    condition     = var.torchserve_workers == null || try(var.torchserve_workers >= 1 && var.torchserve_workers <= 8, false)
    error_message = "torchserve_workers must be between 1 and 8 (or null: the model's profile)."
  }
}

variable "handler_settings" {
  description = "Engine settings of the container, each passed to it as SDTURBO_ and the name in upper case (handler/settings.py; a name that is no setting fails the model load with the reason). null: the model's profile (handler/profiles.yaml). A map replaces what the profile sets for the endpoint alone, and overrides one by one what its archive carries (model_config: max_gpu_memory_gib = 0 lifts SDXL-turbo's ceiling). For SD-turbo on GPUs with 40 GB or more, {} runs CUDA graphs with no ceiling."
  type        = map(string)
  default     = null

  validation {
    condition     = var.handler_settings == null ? true : alltrue([for name in keys(var.handler_settings) : can(regex("^[a-z][a-z0-9_]*$", name))])
    error_message = "handler_settings takes handler/settings.py field names in lower case, such as max_gpu_memory_gib."
  }
}

variable "torchserve_batch_size" {
  description = "Requests per TorchServe batch (SAGEMAKER_TS_BATCH_SIZE). null: the model's profile, else the archive's model-config.yaml (batchSize)."
  type        = number
  default     = null

  validation {
    condition     = var.torchserve_batch_size == null || try(var.torchserve_batch_size >= 1 && var.torchserve_batch_size <= 64, false)
    error_message = "torchserve_batch_size must be between 1 and 64 (or null: the archive's)."
  }
}

variable "torchserve_max_batch_delay_ms" {
  description = "Milliseconds TorchServe waits to fill a batch (SAGEMAKER_TS_MAX_BATCH_DELAY)."
  type        = number
  default     = 50

  validation {
    condition     = var.torchserve_max_batch_delay_ms >= 0 && var.torchserve_max_batch_delay_ms <= 10000
    error_message = "torchserve_max_batch_delay_ms must be between 0 and 10000."
  }
}

variable "torchserve_response_timeout_s" {
  description = "Seconds one batch may take before TorchServe fails it (SAGEMAKER_TS_RESPONSE_TIMEOUT)."
  type        = number
  default     = 120

  validation {
    condition     = var.torchserve_response_timeout_s >= 10 && var.torchserve_response_timeout_s <= 3600
    error_message = "torchserve_response_timeout_s must be between 10 and 3600."
  }
}

variable "container_startup_timeout_s" {
  description = "Seconds SageMaker waits for /ping to turn 200 (image pull, model load and warm-up on a T4)."
  type        = number
  default     = 900

  validation {
    condition     = var.container_startup_timeout_s >= 60 && var.container_startup_timeout_s <= 3600
    error_message = "container_startup_timeout_s must be between 60 and 3600."
  }
}

variable "model_download_timeout_s" {
  description = "Seconds SageMaker may spend copying the model data (2.6 GB for SD-turbo) to the instance."
  type        = number
  default     = 900

  validation {
    condition     = var.model_download_timeout_s >= 60 && var.model_download_timeout_s <= 3600
    error_message = "model_download_timeout_s must be between 60 and 3600."
  }
}

# ------------------------------------------------------------------ autoscaling
variable "min_instances" {
  description = "Fewest instances. 0 lets the endpoint scale to zero once its queue has been empty for ~15 minutes (target tracking's scale-in alarm)."
  type        = number
  default     = 0

  validation {
    condition     = var.min_instances >= 0
    error_message = "min_instances must be 0 or more."
  }
}

variable "max_instances" {
  description = "Most instances the endpoint scales out to."
  type        = number
  default     = 2

  validation {
    condition     = var.max_instances >= 1 && var.max_instances >= var.min_instances
    error_message = "max_instances must be at least 1 and not less than min_instances."
  }
}

variable "target_backlog_per_instance" {
  description = "Target of ApproximateBacklogSizePerInstance for target tracking (queued requests per instance)."
  type        = number
  default     = 16

  validation {
    condition     = var.target_backlog_per_instance > 0
    error_message = "target_backlog_per_instance must be positive."
  }
}

variable "scale_in_cooldown_s" {
  description = "Seconds after a scale-in before the next one may start. It only spaces scale-ins: when one starts is decided by target tracking's scale-in alarm (~15 minutes below target)."
  type        = number
  default     = 600

  validation {
    condition     = var.scale_in_cooldown_s >= 60
    error_message = "scale_in_cooldown_s must be at least 60."
  }
}

variable "scale_out_cooldown_s" {
  description = "Seconds after a scale-out before another."
  type        = number
  default     = 120

  validation {
    condition     = var.scale_out_cooldown_s >= 0
    error_message = "scale_out_cooldown_s must be 0 or more."
  }
}

variable "deploy_instance_count" {
  description = "Instances a new endpoint configuration starts with. A deploy replaces the variant's count with it, so CI passes the endpoint's current count (scripts/deploy_instance_count.py; 1 when it is at 0 or new). A change of this value alone deploys nothing."
  type        = number
  default     = 1

  validation {
    condition     = var.deploy_instance_count >= 1 && floor(var.deploy_instance_count) == var.deploy_instance_count
    error_message = "deploy_instance_count must be a whole number of at least 1."
  }
}

# ------------------------------------------------------------------ observability
variable "log_retention_days" {
  description = "Retention of the endpoint's CloudWatch log group."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a value CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, ...)."
  }
}

variable "idle_instance_alarm_minutes" {
  description = "Minutes instances may stay in service with an empty (or unreported) backlog before the idle-instances alarm tells the alarms topic that scale-in is not happening. Well above target tracking's 15 quiet minutes."
  type        = number
  default     = 60

  validation {
    condition     = var.idle_instance_alarm_minutes >= 30 && var.idle_instance_alarm_minutes <= 1440 && var.idle_instance_alarm_minutes % 5 == 0
    error_message = "idle_instance_alarm_minutes must be a multiple of 5 between 30 (twice target tracking's 15-minute scale-in) and 1440 (CloudWatch evaluates at most a day)."
  }
}

variable "alarm_email" {
  description = "E-mail address subscribed to the operators' alarms topic (endpoint errors, a stuck queue, instances that do not scale in). No default: a stack whose alarms reach nobody is refused at plan time. CI passes the ALARM_EMAIL repository variable (infra/README.md step 2), so its applies keep the subscription an operator's apply makes; SNS mails a confirmation link that must be followed once."
  type        = string
  default     = null

  validation {
    condition     = var.alarm_email == null || can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.alarm_email))
    error_message = "alarm_email must be an e-mail address; in CI, set the ALARM_EMAIL repository variable (infra/README.md step 2)."
  }
}
