# Scale to zero. Target tracking on the backlog per instance scales out, and scales in when its low alarm
# (created by Application Auto Scaling: backlog below target for 15 consecutive minutes) fires, down to
# min_instances; scale_in_cooldown_s only spaces one scale-in from the next. At zero instances the metric
# has no denominator, so target tracking cannot scale out from 0: the step policy, fired by
# HasBacklogWithoutCapacity, starts the first instance when a request arrives. An instance started from zero
# (by a burst or a deploy) therefore runs for at least ~15 minutes.

# SageMaker refuses to change a variant's instance type while it is registered with Application Auto
# Scaling. This resource is replaced when the type changes; the scaling target is replaced with it, and the
# endpoint depends on it, so Terraform deregisters the variant (destroying its policies), then updates the
# endpoint, then registers the variant again, in one apply.
resource "terraform_data" "scaling_registration" {
  triggers_replace = var.instance_type
}

resource "aws_appautoscaling_target" "endpoint" {
  service_namespace  = "sagemaker"
  resource_id        = "endpoint/${aws_sagemaker_endpoint.this.name}/variant/${local.variant_name}"
  scalable_dimension = "sagemaker:variant:DesiredInstanceCount"
  min_capacity       = var.min_instances
  max_capacity       = var.max_instances

  depends_on = [terraform_data.scaling_registration]

  lifecycle {
    replace_triggered_by = [terraform_data.scaling_registration]
  }
}

resource "aws_appautoscaling_policy" "backlog" {
  name               = "${var.name}-backlog-per-instance"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.endpoint.service_namespace
  resource_id        = aws_appautoscaling_target.endpoint.resource_id
  scalable_dimension = aws_appautoscaling_target.endpoint.scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = var.target_backlog_per_instance
    scale_in_cooldown  = var.scale_in_cooldown_s
    scale_out_cooldown = var.scale_out_cooldown_s

    customized_metric_specification {
      metric_name = "ApproximateBacklogSizePerInstance"
      namespace   = "AWS/SageMaker"
      statistic   = "Average"

      dimensions {
        name  = "EndpointName"
        value = aws_sagemaker_endpoint.this.name
      }
    }
  }

  # Deregistering the target deletes its policies: they are created again with it.
  lifecycle {
    replace_triggered_by = [aws_appautoscaling_target.endpoint]
  }
}

resource "aws_appautoscaling_policy" "from_zero" {
  name               = "${var.name}-scale-from-zero"
  policy_type        = "StepScaling"
  service_namespace  = aws_appautoscaling_target.endpoint.service_namespace
  resource_id        = aws_appautoscaling_target.endpoint.resource_id
  scalable_dimension = aws_appautoscaling_target.endpoint.scalable_dimension

  # ExactCapacity 1, not ChangeInCapacity +1: CloudWatch invokes an Auto Scaling action again every minute
  # its alarm stays in ALARM, and the alarm stays there while the first GPU instance starts (minutes, more
  # than the cooldown). "+1" would then add a second instance, and more up to max_instances; "set to 1"
  # asks for the same instance each time. Scaling beyond one is target tracking's (backlog above).
  step_scaling_policy_configuration {
    adjustment_type         = "ExactCapacity"
    cooldown                = var.scale_out_cooldown_s
    metric_aggregation_type = "Average"

    step_adjustment {
      metric_interval_lower_bound = 0
      scaling_adjustment          = 1
    }
  }

  # Deregistering the target deletes its policies: they are created again with it.
  lifecycle {
    replace_triggered_by = [aws_appautoscaling_target.endpoint]
  }
}

resource "aws_cloudwatch_metric_alarm" "backlog_without_capacity" {
  alarm_name          = "${var.name}-has-backlog-without-capacity"
  alarm_description   = "Requests are queued while the endpoint has no instance: scale 0 -> 1."
  namespace           = "AWS/SageMaker"
  metric_name         = "HasBacklogWithoutCapacity"
  statistic           = "Average"
  period              = 60
  evaluation_periods  = 1
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "missing"
  alarm_actions       = [aws_appautoscaling_policy.from_zero.arn]

  dimensions = {
    EndpointName = aws_sagemaker_endpoint.this.name
  }
}
