# SageMaker writes the container's stdout/stderr here; created up front so it has retention and a key.
resource "aws_cloudwatch_log_group" "endpoint" {
  # checkov:skip=CKV_AWS_338: request logs of an image service are not kept for a year by default; log_retention_days raises it
  name              = "/aws/sagemaker/Endpoints/${local.endpoint_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn
}

resource "aws_cloudwatch_metric_alarm" "invocation_errors" {
  alarm_name          = "${var.name}-invocation-5xx"
  alarm_description   = "The model returned 5xx errors (failed loads, out of memory, crashes)."
  namespace           = "AWS/SageMaker"
  metric_name         = "Invocation5XXErrors"
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]

  dimensions = {
    EndpointName = aws_sagemaker_endpoint.this.name
    VariantName  = local.variant_name
  }
}

resource "aws_cloudwatch_metric_alarm" "oldest_request_age" {
  alarm_name          = "${var.name}-oldest-request-age"
  alarm_description   = "An async request has waited over 30 minutes: the endpoint is not draining its queue."
  namespace           = "AWS/SageMaker"
  metric_name         = "ApproximateAgeOfOldestRequest"
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 2
  threshold           = 1800
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]

  dimensions = {
    EndpointName = aws_sagemaker_endpoint.this.name
  }
}

# An instance that stays up with nothing to do. Target tracking scales in on its low alarm, which needs the
# backlog metric; if the endpoint's agent stops publishing it, that alarm sits in INSUFFICIENT_DATA and the
# instance keeps billing (~$0.94/h on ml.g4dn.2xlarge). This alarm does not rely on the backlog metric being
# there: a missing backlog counts as empty (FILL), and an instance counts as in service while SageMaker
# reports its CPU (CPUUtilization samples in /aws/sagemaker/Endpoints; unverified on a real endpoint). Its
# window is much longer than target tracking's 15 quiet minutes, so a normal scale-in never fires it.
resource "aws_cloudwatch_metric_alarm" "idle_instances" {
  alarm_name          = "${var.name}-idle-instances"
  alarm_description   = "Instances have been in service for ${var.idle_instance_alarm_minutes} minutes with an empty (or unreported) backlog: scale-in is not happening."
  evaluation_periods  = var.idle_instance_alarm_minutes / 5
  datapoints_to_alarm = var.idle_instance_alarm_minutes / 5
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching" # no data at all: no instance, nothing billing
  alarm_actions       = [aws_sns_topic.alarms.arn]

  metric_query {
    id          = "idle"
    expression  = "IF(instances > 0 AND FILL(backlog, 0) == 0, 1, 0)"
    label       = "Instances in service with an empty backlog"
    return_data = true
  }

  metric_query {
    id = "instances"
    metric {
      namespace   = "/aws/sagemaker/Endpoints"
      metric_name = "CPUUtilization"
      stat        = "SampleCount"
      period      = 300
      dimensions = {
        EndpointName = aws_sagemaker_endpoint.this.name
        VariantName  = local.variant_name
      }
    }
  }

  metric_query {
    id = "backlog"
    metric {
      namespace   = "AWS/SageMaker"
      metric_name = "ApproximateBacklogSize"
      stat        = "Maximum"
      period      = 300
      dimensions = {
        EndpointName = aws_sagemaker_endpoint.this.name
      }
    }
  }
}
