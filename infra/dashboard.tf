# One CloudWatch dashboard for the endpoint: SageMaker's own metrics (backlog, errors, model latency) beside
# the container's embedded-metric-format records (scripts/sdturbo_ops/emf.py: each batch's stages, the
# workers' starts, the cold start, a heartbeat per instance-minute), and what they cost per 1000 images.
# infra/README.md ("The dashboard") says how to read each widget.

locals {
  # The container's records: namespace, dimensions and metric names as scripts/sdturbo_ops/emf.py writes
  # them (tests/infra/test_metrics.py holds the two together).
  emf_namespace = "sdturbo-serve"
  metrics_environment = {
    SDSERVE_METRICS_ENDPOINT      = local.endpoint_name
    SDSERVE_METRICS_MODEL         = var.model
    SDSERVE_METRICS_INSTANCE_TYPE = var.instance_type
  }
  emf_metric_names = [
    "BatchSize", "Images", "Requests2XX", "Requests4XX", "Requests5XX", "GenerateTime", "DecodeTime", "EncodeTime",
    "ReplyTime", "HandlerTime", "QueueWait", "GpuMemoryPeak", "InstanceUp", "StartupModelLoad", "StartupWarmUp",
    "StartupFailed", "ColdStartContainer", "ColdStartReady", "ColdStartFirstReply",
  ]
  emf = { for name in local.emf_metric_names : name => [
    local.emf_namespace, name, "Endpoint", local.endpoint_name, "Model", var.model, "InstanceType", var.instance_type,
  ] }
  sagemaker_endpoint = ["EndpointName", local.endpoint_name]
  sagemaker_variant  = ["EndpointName", local.endpoint_name, "VariantName", local.variant_name]

  # Each widget: [x, y, width, height, title, properties]. 24 columns to a row.
  dashboard_widgets = [
    [0, 0, 8, 6, "Backlog: queued requests, and the oldest one's age (s)", {
      metrics = [
        ["AWS/SageMaker", "ApproximateBacklogSize", local.sagemaker_endpoint[0], local.sagemaker_endpoint[1], { stat = "Maximum", label = "queued requests" }],
        ["AWS/SageMaker", "ApproximateBacklogSizePerInstance", local.sagemaker_endpoint[0], local.sagemaker_endpoint[1], { stat = "Average", label = "per instance (scaling target ${var.target_backlog_per_instance})" }],
        ["AWS/SageMaker", "ApproximateAgeOfOldestRequest", local.sagemaker_endpoint[0], local.sagemaker_endpoint[1], { stat = "Maximum", label = "oldest request age (s)", yAxis = "right" }],
      ]
      period = 60
    }],
    [8, 0, 8, 6, "Instances in service", {
      metrics = [
        concat(local.emf["InstanceUp"], [{ stat = "Sum", label = "containers reporting (heartbeat per minute)" }]),
        ["/aws/sagemaker/Endpoints", "CPUUtilization", local.sagemaker_variant[0], local.sagemaker_variant[1], local.sagemaker_variant[2], local.sagemaker_variant[3], { stat = "SampleCount", label = "instances (CPU samples per minute)" }],
      ]
      period = 60
      yAxis  = { left = { min = 0 } }
    }],
    [16, 0, 8, 6, "Requests answered and failed", {
      metrics = [
        concat(local.emf["Requests2XX"], [{ stat = "Sum", label = "2xx (model)" }]),
        concat(local.emf["Requests4XX"], [{ stat = "Sum", label = "4xx (model)" }]),
        concat(local.emf["Requests5XX"], [{ stat = "Sum", label = "5xx (model)" }]),
        ["AWS/SageMaker", "Invocation4XXErrors", local.sagemaker_variant[0], local.sagemaker_variant[1], local.sagemaker_variant[2], local.sagemaker_variant[3], { stat = "Sum", label = "Invocation4XXErrors (SageMaker)" }],
        ["AWS/SageMaker", "Invocation5XXErrors", local.sagemaker_variant[0], local.sagemaker_variant[1], local.sagemaker_variant[2], local.sagemaker_variant[3], { stat = "Sum", label = "Invocation5XXErrors (SageMaker)" }],
      ]
      period = 300
    }],
    [0, 6, 8, 6, "Model latency (ms): SageMaker's view and the handler's", {
      metrics = [
        ["AWS/SageMaker", "ModelLatency", local.sagemaker_variant[0], local.sagemaker_variant[1], local.sagemaker_variant[2], local.sagemaker_variant[3], { id = "latency_us", stat = "p50", visible = false }],
        [{ id = "latency_ms", expression = "latency_us / 1000", label = "ModelLatency p50 (SageMaker, ms)" }],
        concat(local.emf["HandlerTime"], [{ stat = "p50", label = "batch in the handler p50" }]),
        concat(local.emf["HandlerTime"], [{ stat = "p99", label = "batch in the handler p99" }]),
        concat(local.emf["QueueWait"], [{ stat = "Average", label = "TorchServe queue wait (mean per request)" }]),
      ]
      period = 300
    }],
    [8, 6, 8, 6, "Stages of a batch (ms, average)", {
      metrics = [for stage in ["GenerateTime", "DecodeTime", "EncodeTime", "ReplyTime"] :
      concat(local.emf[stage], [{ stat = "Average", label = stage }])]
      period = 300
    }],
    [16, 6, 8, 6, "Batch size, images, GPU memory peak (MiB)", {
      metrics = [
        concat(local.emf["BatchSize"], [{ stat = "Average", label = "requests per batch" }]),
        concat(local.emf["Images"], [{ stat = "Sum", label = "images" }]),
        concat(local.emf["GpuMemoryPeak"], [{ stat = "Maximum", label = "GPU memory peak (MiB)", yAxis = "right" }]),
      ]
      period = 300
    }],
    [0, 12, 12, 6, "Cold start (s, from the instance's boot)", {
      metrics = concat(
        [for name in ["ColdStartContainer", "ColdStartReady", "ColdStartFirstReply", "StartupModelLoad", "StartupWarmUp"] :
        concat(local.emf[name], [{ stat = "Maximum", label = name }])],
        [
          concat(local.emf["StartupFailed"], [{ stat = "Sum", label = "workers that failed to load", yAxis = "right" }]),
          ["AWS/SageMaker", "ApproximateAgeOfOldestRequest", local.sagemaker_endpoint[0], local.sagemaker_endpoint[1], { stat = "Maximum", label = "oldest request age (waited through the start)" }],
        ],
      )
      period      = 300
      annotations = { horizontal = [{ label = "cold-start budget (alarm)", value = local.cold_start_budget_s }] }
    }],
    [12, 12, 12, 6, "Images per instance-hour and USD per 1000 images (instance at ${var.instance_price_per_hour}/h)", {
      metrics = [
        concat(local.emf["Images"], [{ id = "images", stat = "Sum", visible = false }]),
        concat(local.emf["InstanceUp"], [{ id = "up", stat = "Sum", visible = false }]),
        [{ id = "hours", expression = "up / 60", label = "instance-hours", visible = false }],
        [{ id = "rate", expression = "images / hours", label = "images per instance-hour" }],
        [{ id = "cost", expression = "1000 * ${var.instance_price_per_hour} * hours / images", label = "USD per 1000 images (instance time only)", yAxis = "right" }],
      ]
      period = 3600
    }],
  ]
}

resource "aws_cloudwatch_dashboard" "this" {
  dashboard_name = var.name
  dashboard_body = jsonencode({
    widgets = [for widget in local.dashboard_widgets : {
      type       = "metric"
      x          = widget[0]
      y          = widget[1]
      width      = widget[2]
      height     = widget[3]
      properties = merge({ title = widget[4], region = local.region, view = "timeSeries", stacked = false }, widget[5])
    }]
  })
}
