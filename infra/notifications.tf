# SageMaker's async agent publishes each request's outcome here: success (with the output location) and
# error (with the failure location). Clients may subscribe instead of polling S3. SageMaker also publishes a
# test notification ({"eventName": "TestNotification"}, no inferenceId) to both topics after every
# CreateEndpoint, UpdateEndpoint and UpdateEndpointWeightsAndCapacities, so on every deploy and every scaling
# step (SageMaker Developer Guide, "Create Endpoint" of asynchronous inference): a subscriber reads a message
# as a request's outcome only by its inferenceId, and drops the test notifications (scripts/invoke.py does).
resource "aws_sns_topic" "success" {
  name              = "${var.name}-async-success"
  kms_master_key_id = aws_kms_key.this.arn
}

resource "aws_sns_topic" "error" {
  name              = "${var.name}-async-error"
  kms_master_key_id = aws_kms_key.this.arn
}

# Operators' alarms (endpoint errors, stuck queue, instances that do not scale in), apart from the callers'
# result topics. Its subscriber is part of what CI applies (alarm_email, from a repository variable): one
# added by hand to an apply's variables alone would be removed by CI's next apply.
resource "aws_sns_topic" "alarms" {
  name              = "${var.name}-alarms"
  kms_master_key_id = aws_kms_key.this.arn

  lifecycle {
    precondition {
      condition     = var.alarm_email != null
      error_message = "alarm_email is not set: the alarms topic would have no subscriber and no one would hear an alarm. Set alarm_email in infra/terraform.tfvars and, for CI, the ALARM_EMAIL repository variable (infra/README.md: \"2. Backend and GitHub settings\" and \"6. Apply the stack\")."
    }
  }
}

resource "aws_sns_topic_subscription" "alarm_email" {
  count = var.alarm_email == null ? 0 : 1 # none only where the topic's precondition refuses the plan anyway

  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}
