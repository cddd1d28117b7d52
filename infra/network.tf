# A private-only VPC: no internet gateway, no NAT gateway. The model container needs no internet; SageMaker
# reaches S3 through the gateway endpoint below (free), and nothing else is required by default.

resource "aws_vpc" "this" {
  # checkov:skip=CKV2_AWS_11: the VPC has no internet path and carries only SageMaker's S3 traffic; flow logs would cost more than the idle stack
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true # interface endpoints' private DNS needs it

  tags = { Name = var.name }
}

resource "aws_subnet" "private" {
  count = length(local.azs)

  vpc_id                  = aws_vpc.this.id
  availability_zone       = local.azs[count.index]
  cidr_block              = cidrsubnet(var.vpc_cidr, 4, count.index)
  map_public_ip_on_launch = false

  tags = { Name = "${var.name}-private-${local.azs[count.index]}" }
}

resource "aws_route_table" "private" {
  vpc_id = aws_vpc.this.id
  tags   = { Name = "${var.name}-private" }
}

resource "aws_route_table_association" "private" {
  count = length(aws_subnet.private)

  subnet_id      = aws_subnet.private[count.index].id
  route_table_id = aws_route_table.private.id
}

# The default security group of a new VPC allows all traffic between its members: remove every rule.
resource "aws_default_security_group" "this" {
  vpc_id = aws_vpc.this.id
  tags   = { Name = "${var.name}-default-deny" }
}

# S3 gateway endpoint: model data download, async input/output. Free, and limited to our two buckets.
# The image needs no endpoint: with RepositoryAccessMode "Platform" (the default for ECR images)
# SageMaker pulls it outside the VPC.
resource "aws_vpc_endpoint" "s3" {
  vpc_id            = aws_vpc.this.id
  service_name      = "com.amazonaws.${local.region}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = [aws_route_table.private.id]
  policy            = data.aws_iam_policy_document.s3_endpoint.json

  tags = { Name = "${var.name}-s3" }
}

data "aws_iam_policy_document" "s3_endpoint" {
  # checkov:skip=CKV_AWS_283: an endpoint policy narrows where callers may go; who may call is IAM's job, and the account condition below keeps it to our principals
  statement {
    sid     = "ProjectBucketsOnly"
    actions = ["s3:GetObject", "s3:PutObject", "s3:ListBucket", "s3:GetBucketLocation"]
    resources = [
      aws_s3_bucket.artifacts.arn, "${aws_s3_bucket.artifacts.arn}/*",
      aws_s3_bucket.async.arn, "${aws_s3_bucket.async.arn}/*",
    ]
    principals {
      type        = "AWS"
      identifiers = ["*"] # who may call is decided by IAM; the endpoint policy only narrows *where*
    }
    condition {
      test     = "StringEquals"
      variable = "aws:PrincipalAccount"
      values   = [local.account_id]
    }
  }
}

locals {
  interface_endpoints = merge(
    # SNS: only if your policy forces the async agent's notifications through the VPC.
    var.enable_sns_endpoint ? { sns = "sns" } : {},
    # CloudWatch Logs/Metrics: only needed without network isolation (the container then writes directly).
    var.enable_cloudwatch_endpoints ? { logs = "logs", monitoring = "monitoring" } : {},
  )
}

resource "aws_vpc_endpoint" "interface" {
  for_each = local.interface_endpoints

  vpc_id              = aws_vpc.this.id
  service_name        = "com.amazonaws.${local.region}.${each.value}"
  vpc_endpoint_type   = "Interface"
  private_dns_enabled = true
  subnet_ids          = aws_subnet.private[*].id
  security_group_ids  = [aws_security_group.endpoints.id]

  tags = { Name = "${var.name}-${each.key}" }
}

resource "aws_security_group" "endpoints" {
  name        = "${var.name}-endpoints"
  description = "Interface endpoints: HTTPS from the model's ENIs only"
  vpc_id      = aws_vpc.this.id

  tags = { Name = "${var.name}-endpoints" }
}

resource "aws_vpc_security_group_ingress_rule" "endpoints_from_model" {
  security_group_id            = aws_security_group.endpoints.id
  description                  = "HTTPS from the SageMaker model ENIs"
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = aws_security_group.model.id
}

# The model's ENIs: nothing may connect in; out only to S3 (gateway prefix list) and the endpoints.
resource "aws_security_group" "model" {
  # checkov:skip=CKV2_AWS_5: attached to the SageMaker model's vpc_config (sagemaker.tf), which checkov does not follow
  name        = "${var.name}-model"
  description = "SageMaker model ENIs: no ingress, egress to VPC endpoints only"
  vpc_id      = aws_vpc.this.id

  tags = { Name = "${var.name}-model" }
}

resource "aws_vpc_security_group_egress_rule" "model_to_s3" {
  security_group_id = aws_security_group.model.id
  description       = "HTTPS to S3 through the gateway endpoint"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  prefix_list_id    = aws_vpc_endpoint.s3.prefix_list_id
}

resource "aws_vpc_security_group_egress_rule" "model_to_endpoints" {
  security_group_id            = aws_security_group.model.id
  description                  = "HTTPS to the interface endpoints"
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = aws_security_group.endpoints.id
}
