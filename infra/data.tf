data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

data "aws_region" "current" {}

data "aws_availability_zones" "available" {
  # checkov:skip=CKV_AWS_394: only the first az_count names are used, so a new zone (sorted after them) changes nothing; pin availability_zones to be explicit
  state = "available"
}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name
  azs        = length(var.availability_zones) > 0 ? var.availability_zones : slice(data.aws_availability_zones.available.names, 0, var.az_count)

  endpoint_name = var.name
  variant_name  = "AllTraffic"

  # Bucket names are global: the account id keeps them unique without hard-coding anything.
  artifacts_bucket_name = "${var.name}-artifacts-${local.account_id}-${local.region}"
  async_bucket_name     = "${var.name}-async-${local.account_id}-${local.region}"

  async_input_prefix   = "async-input/"
  async_output_prefix  = "async-output/"
  async_failure_prefix = "async-failure/"

  # Instance families whose ML storage is local NVMe (g4dn, g5, g6, p4d, p5, *d): the hardware encrypts it,
  # and CreateEndpointConfig refuses a KmsKeyId for them. Other types get the stack's key for the volume.
  instance_family             = split(".", var.instance_type)[1]
  instance_has_local_storage  = can(regex("^(g4dn|g5|g6|g6e|p4d|p4de|p5|p5e|p5en|[a-z][0-9][a-z]*d)$", local.instance_family))
  endpoint_volume_kms_key_arn = local.instance_has_local_storage ? null : aws_kms_key.this.arn

  # TorchServe serves min(workers) x batch requests at once; SageMaker should not hand it more.
  max_concurrent_invocations = local.workers * local.batch_size
}
