# Two buckets: model artifacts (versioned: a model version must stay reproducible) and async traffic
# (inputs, outputs, failures: short-lived, expired by lifecycle). Both private, KMS-encrypted, TLS-only.

resource "aws_s3_bucket" "artifacts" {
  # checkov:skip=CKV_AWS_18: access logging needs a third bucket and costs per request; CloudTrail data events are the audit trail if required
  # checkov:skip=CKV_AWS_144: cross-region replication of re-buildable model artefacts is not worth its cost here
  # checkov:skip=CKV2_AWS_62: nothing consumes event notifications from this bucket
  bucket        = local.artifacts_bucket_name
  force_destroy = var.force_destroy_buckets
}

resource "aws_s3_bucket" "async" {
  # checkov:skip=CKV_AWS_18: access logging needs a third bucket and costs per request; CloudTrail data events are the audit trail if required
  # checkov:skip=CKV_AWS_144: async payloads live for days; replicating them has no use
  # checkov:skip=CKV2_AWS_62: completion is signalled by SageMaker's SNS topics, not bucket events
  # checkov:skip=CKV_AWS_21: async objects are write-once and expire in days; versions would only keep deleted payloads alive
  bucket        = local.async_bucket_name
  force_destroy = var.force_destroy_buckets
}

locals {
  buckets = {
    artifacts = aws_s3_bucket.artifacts
    async     = aws_s3_bucket.async
  }
}

resource "aws_s3_bucket_public_access_block" "this" {
  for_each = local.buckets

  bucket                  = each.value.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "this" {
  for_each = local.buckets

  bucket = each.value.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  for_each = local.buckets

  bucket = each.value.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.this.arn
    }
    bucket_key_enabled = true # one KMS call per bucket-key period instead of per object
  }
}

resource "aws_s3_bucket_versioning" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id

  # Model data is never expired by age: the live prefix may be old, and an instance that starts copies it.
  # What no model references any more (a prefix older than the rollback's) is deleted by the runbook
  # (step 10); versioning keeps it recoverable for retired_model_data_days, then S3 removes the versions
  # and the delete markers left behind.
  rule {
    id     = "remove-deleted-model-data"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = var.retired_model_data_days
    }
    expiration {
      expired_object_delete_marker = true
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.artifacts]
}

resource "aws_s3_bucket_lifecycle_configuration" "async" {
  # checkov:skip=CKV_AWS_300: every rule below aborts incomplete multipart uploads after a day (checkov does not read dynamic blocks)
  bucket = aws_s3_bucket.async.id

  dynamic "rule" {
    for_each = {
      "expire-inputs"   = local.async_input_prefix
      "expire-outputs"  = local.async_output_prefix
      "expire-failures" = local.async_failure_prefix
    }
    content {
      id     = rule.key
      status = "Enabled"
      filter {
        prefix = rule.value
      }
      expiration {
        days = var.async_object_expiration_days
      }
      abort_incomplete_multipart_upload {
        days_after_initiation = 1
      }
    }
  }
}

resource "aws_s3_bucket_policy" "tls_only" {
  for_each = local.buckets

  bucket = each.value.id
  policy = data.aws_iam_policy_document.tls_only[each.key].json

  depends_on = [aws_s3_bucket_public_access_block.this]
}

data "aws_iam_policy_document" "tls_only" {
  for_each = local.buckets

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"] # a Deny: the wider, the safer
    resources = [each.value.arn, "${each.value.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}
