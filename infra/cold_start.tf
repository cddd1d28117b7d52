# A cold start measured by the container itself (scripts/sdturbo_ops/emf.py) from its instance's boot:
# ColdStartContainer (boot -> entrypoint: instance start, image pull, model data copy), ColdStartReady (->
# the first worker loaded and warm, /ping 200) and ColdStartFirstReply (-> the first batch answered), with
# each worker's StartupModelLoad and StartupWarmUp. The alarm tells the operators when a start is over the
# budget; infra/README.md ("Reading a cold start") puts the parts together.

locals {
  # The cold-start budget infra/README.md states (Design decisions, "Cold-start budget"): 20 minutes from
  # the first request at zero instances to its result, the smoke call's and invoke.py's default deadline
  # (tests/infra/test_metrics.py holds the two together).
  cold_start_budget_s = 1200
}

# Boot to ready: a start that gets no request (a deploy, a warm window) is measured too, and the first
# reply follows ready within seconds when a request is waiting. The part before the instance boots (the
# scale-from-zero alarm, SageMaker placing the instance) is not in it: this fires when even the part the
# container sees is over the whole budget.
resource "aws_cloudwatch_metric_alarm" "cold_start" {
  alarm_name          = "${var.name}-cold-start-over-budget"
  alarm_description   = "A container took longer than the ${local.cold_start_budget_s / 60}-minute cold-start budget from its instance's boot to its first warm worker (infra/README.md, \"Reading a cold start\")."
  namespace           = local.emf_namespace
  metric_name         = "ColdStartReady"
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = local.cold_start_budget_s
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching" # no start, nothing to judge
  alarm_actions       = [aws_sns_topic.alarms.arn]

  dimensions = {
    Endpoint     = local.endpoint_name
    Model        = var.model
    InstanceType = var.instance_type
  }
}
