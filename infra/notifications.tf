# SageMaker's async agent publishes each request's outcome here: success (with the output location) and
# error (with the failure location). Clients may subscribe instead of polling S3.
resource "aws_sns_topic" "success" {
  name              = "${var.name}-async-success"
  kms_master_key_id = aws_kms_key.this.arn
}

resource "aws_sns_topic" "error" {
  name              = "${var.name}-async-error"
  kms_master_key_id = aws_kms_key.this.arn
}

# Operators' alarms (endpoint errors, stuck queue, instances that do not scale in). Apart from the error topic,
# which carries callers' failed requests: clients subscribe it and read each message as a request's outcome.
resource "aws_sns_topic" "alarms" {
  name              = "${var.name}-alarms"
  kms_master_key_id = aws_kms_key.this.arn
}

resource "aws_sns_topic_subscription" "alarm_email" {
  count = var.alarm_email == "" ? 0 : 1

  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}
