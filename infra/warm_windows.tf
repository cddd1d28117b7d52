# Warm windows: keep one instance during given hours, so requests then meet no cold start. Two scheduled
# actions of Application Auto Scaling on the endpoint's scalable target: at the window's start the minimum
# becomes 1 (Application Auto Scaling scales out to a minimum above the current capacity), at its end it
# returns to min_instances, and target tracking scales in as usual (~15 quiet minutes). Off by default.
# Its cost: infra/README.md ("Warm windows"), and the warm_window_cost_per_week output.

locals {
  warm_days = var.warm_window == null ? "" : join(",", var.warm_window.days)
  # An end at 24:00 is the next day's 00:00, which a cron of the same days cannot say: 23:59 stands for it.
  warm_actions = var.warm_window == null ? {} : {
    start = { minute = 0, hour = var.warm_window.start_hour, min_capacity = max(1, var.min_instances) }
    end   = { minute = var.warm_window.end_hour == 24 ? 59 : 0, hour = min(var.warm_window.end_hour, 23), min_capacity = var.min_instances }
  }
  warm_hours_per_week = var.warm_window == null ? 0 : length(var.warm_window.days) * (var.warm_window.end_hour - var.warm_window.start_hour)
}

resource "aws_appautoscaling_scheduled_action" "warm_window" {
  for_each = local.warm_actions

  name               = "${var.name}-warm-window-${each.key}"
  service_namespace  = aws_appautoscaling_target.endpoint.service_namespace
  resource_id        = aws_appautoscaling_target.endpoint.resource_id
  scalable_dimension = aws_appautoscaling_target.endpoint.scalable_dimension
  schedule           = "cron(${each.value.minute} ${each.value.hour} ? * ${local.warm_days} *)"
  timezone           = var.warm_window.timezone

  scalable_target_action {
    min_capacity = each.value.min_capacity
    max_capacity = var.max_instances
  }

  # Deregistering the target deletes its scheduled actions: they are created again with it.
  lifecycle {
    replace_triggered_by = [aws_appautoscaling_target.endpoint]
  }
}
