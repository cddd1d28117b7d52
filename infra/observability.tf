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
