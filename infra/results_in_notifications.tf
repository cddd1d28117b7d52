# The result inside the notification: SageMaker includes the container's reply in the SNS message when it
# is at most 128 KB (AsyncInferenceNotificationConfig, IncludeInferenceResponseIn), so a client waiting on
# the topics gets its image without reading S3 (scripts/sdturbo_ops/aws_async.py takes it from the message
# when it is there, from S3 when not). Which replies fit: infra/README.md ("Results in the notification").

locals {
  notification_result_topics = var.notification_includes_result ? ["SUCCESS_NOTIFICATION_TOPIC", "ERROR_NOTIFICATION_TOPIC"] : null
}
