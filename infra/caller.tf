# What an application's role needs to call the endpoint asynchronously, and nothing more: attach the
# caller_policy_json output to it (the stack creates no caller role; who calls is the application's
# choice). One statement per step of an async call as scripts/invoke.py makes it; the emulator test
# (tests/e2e/test_infra_emulator.py) holds the requests that client sends against this policy, and fails if
# any statement is missing.

data "aws_iam_policy_document" "caller" {
  statement {
    sid       = "QueueRequestsOnThisEndpoint"
    actions   = ["sagemaker:InvokeEndpointAsync"]
    resources = [aws_sagemaker_endpoint.this.arn]
  }

  statement {
    sid       = "UploadRequestPayloads"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.async.arn}/${local.async_input_prefix}*"]
  }

  statement {
    sid     = "ReadResultsAndFailures"
    actions = ["s3:GetObject"]
    resources = [
      "${aws_s3_bucket.async.arn}/${local.async_output_prefix}*",
      "${aws_s3_bucket.async.arn}/${local.async_failure_prefix}*",
    ]
  }

  # S3 answers a GET of a key that does not exist (a result still being computed) with 404 only to a
  # caller that may list the bucket; any other caller gets 403 AccessDenied, which a client polling for
  # its result cannot tell from a refusal. Listing shows key names (request ids), never contents.
  statement {
    sid       = "TellPendingResultsFromRefusals"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.async.arn]
  }

  # The async bucket is SSE-KMS with the stack key, and S3 uses the key with the caller's permissions:
  # GenerateDataKey to store a request, Decrypt to read a result. Only through S3, only for this bucket
  # (with an S3 Bucket Key the encryption context is the bucket's ARN, without one the object's).
  statement {
    sid       = "UseTheStackKeyOnlyThroughS3ForTheAsyncBucket"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [aws_kms_key.this.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${local.region}.amazonaws.com"]
    }
    condition {
      test     = "StringLike"
      variable = "kms:EncryptionContext:aws:s3:arn"
      values   = [aws_s3_bucket.async.arn, "${aws_s3_bucket.async.arn}/*"]
    }
  }

  # Instead of polling S3, a client may subscribe a queue of its own to the result topics (the way
  # SageMaker's AsyncPredictor users wait); the queue's policy must let SNS send to it.
  statement {
    sid       = "SubscribeToResultNotifications"
    actions   = ["sns:Subscribe"]
    resources = [aws_sns_topic.success.arn, aws_sns_topic.error.arn]
  }
}
