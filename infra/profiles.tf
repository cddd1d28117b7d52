# The model's sizing for its GPU, from the files the archive builder reads too, so the archive and the
# endpoint cannot disagree: handler/profiles.yaml (what each model needs on the production T4) over
# handler/model-config.yaml (TorchServe's defaults). The variables torchserve_workers, torchserve_batch_size
# and handler_settings override them; each is null unless set.
locals {
  profiles       = yamldecode(file("${path.module}/../handler/profiles.yaml"))
  shipped_config = yamldecode(file("${path.module}/../handler/model-config.yaml"))
  profile        = local.profiles[var.model]
  profile_config = merge(local.shipped_config, local.profile.model_config)

  workers = coalesce(var.torchserve_workers, try(local.profile.endpoint.workers, null), local.profile_config.minWorkers)
  # The archive's batch size unless overridden: SageMaker hands the container workers x batch at once.
  batch_size = coalesce(var.torchserve_batch_size, local.profile_config.batchSize)
  # The archive's settings (model_config) are in its model-config.yaml whatever the environment says, so
  # handler_settings overrides them one by one and replaces only what the endpoint alone sets.
  handler_settings = merge(
    { for name, value in try(local.profile.model_config.handler, {}) : name => tostring(value) },
    var.handler_settings != null ? var.handler_settings : { for name, value in try(local.profile.endpoint.handler, {}) : name => tostring(value) },
  )

  # GPU memory per GPU of each SageMaker GPU family, in GiB as AWS lists it ("GPU memory" on the EC2
  # accelerated-computing instance pages, https://aws.amazon.com/ec2/instance-types/ (g4dn, g5, g6, g6e,
  # p3, p4, p5), divided by the GPUs per instance). The same families, with their GPU's name, are in
  # scripts/sdturbo_ops/gpu_stack.py (INSTANCE_FAMILY_GPUS); tests/infra/test_infra.py fails if they differ.
  gpu_memory_gib = {
    g4dn = 16  # NVIDIA T4
    g5   = 24  # A10G
    g6   = 24  # L4
    g6e  = 48  # L40S
    p3   = 16  # V100
    p4d  = 40  # A100 40 GB
    p4de = 80  # A100 80 GB
    p5   = 80  # H100
    p5e  = 141 # H200
    p5en = 141 # H200
  }
  # What CUDA can allocate: a T4 reports 15 of its 16 GiB (ECC), the usable ~15 GiB of issue 23; larger GPUs
  # lose less, so this is conservative there.
  usable_gpu_memory_gib = lookup(local.gpu_memory_gib, local.instance_family, 1) - 1
  # Each worker's CUDA context comes on top of its ceiling: two workers capped at 7 GiB read 15.4 GiB for
  # the whole GPU (docs/PERFORMANCE.md, round 2 run 5, H200).
  cuda_context_gib = 0.7
  # A worker without a ceiling ("0", settings.py's default, or none) is held only to what it holds once
  # loaded: whether it can load at all. The ceiling is what keeps workers apart under load.
  ceiling_gib    = tonumber(lookup(local.handler_settings, "max_gpu_memory_gib", "0"))
  per_worker_gib = (local.ceiling_gib > 0 ? local.ceiling_gib : local.profile.resident_gpu_memory_gib) + local.cuda_context_gib
  needed_gib     = local.workers * local.per_worker_gib
  # Why the sizing does not fit the instance's GPU (null when it does, or on a CPU instance).
  gpu_misfit = !local.gpu_instance ? null : (
    !contains(keys(local.gpu_memory_gib), local.instance_family) ? "the GPU memory of instance family ${local.instance_family} is not in infra/profiles.tf's gpu_memory_gib: add it, with its source" :
    local.ceiling_gib > 0 && local.ceiling_gib < local.profile.resident_gpu_memory_gib ? "a ${local.ceiling_gib} GiB ceiling per worker (max_gpu_memory_gib) is under the ${local.profile.resident_gpu_memory_gib} GiB that ${var.model} holds once loaded: the model cannot load" :
    local.needed_gib > local.usable_gpu_memory_gib ? "${local.workers} worker(s) x (${local.ceiling_gib > 0 ? "a ${local.ceiling_gib} GiB ceiling" : "${local.profile.resident_gpu_memory_gib} GiB of ${var.model} without a ceiling"} + ${local.cuda_context_gib} GiB CUDA context) = ${local.needed_gib} GiB, more than the ${local.usable_gpu_memory_gib} GiB usable on ${var.instance_type}'s GPU" :
    null
  )
}
