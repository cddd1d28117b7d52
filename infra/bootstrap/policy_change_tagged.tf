# The apply role's writes to the stack's network and key. Their ids are generated, so no ARN can name them
# before they exist; instead the apply role may create them only with the stack's Project tag (every
# resource of the main stack gets it from the provider's default_tags), and change or delete only what
# carries that tag. Another team's VPC, security group or key, untagged or tagged otherwise, is out of
# reach, and so is claiming one by tagging it: tags go on only as a resource is created (ec2:CreateAction)
# or onto what already carries the stack's tag. tests/e2e/test_infra_emulator.py holds the apply role's trace
# against these conditions and asks the policies what they would do to another team's resources
# (tests/support/iam_policy.py, beyond_the_stack).
#
# The VPC's default security group is made by AWS with the VPC, without tags: the administrator's first
# apply (infra/README.md step 3) takes it over and tags it, and the apply role changes it from then on.

resource "aws_iam_policy" "change_tagged" {
  name        = "${var.name}-change-tagged"
  description = "Create, change and destroy the ${var.name} stack's network and key, by the stack's Project tag"
  policy      = data.aws_iam_policy_document.change_tagged.json
}

locals {
  # What CreateX creates, as IAM names it before it has an id. Each create action gets a statement of its
  # own: one statement with several creates would also let CreateSubnet act on any `vpc/*` with the tag
  # in the request, another team's VPC included.
  network_creates = {
    CreateVpc                     = "vpc"
    CreateSubnet                  = "subnet"
    CreateRouteTable              = "route-table"
    CreateSecurityGroup           = "security-group"
    CreateVpcEndpoint             = "vpc-endpoint"
    AuthorizeSecurityGroupIngress = "security-group-rule"
    AuthorizeSecurityGroupEgress  = "security-group-rule"
  }
  network_arns = [for kind in distinct(values(local.network_creates)) : "${local.arn.ec2}:${kind}/*"]
}

data "aws_iam_policy_document" "change_tagged" {
  # checkov:skip=CKV_AWS_356: "*" only for kms:CreateKey, which has no resource before the key exists; it requires the stack's tag
  # checkov:skip=CKV_AWS_111: every write is held to the stack's Project tag, on the request or on the resource
  # ECR's grant for the repository, SageMaker's for an EBS-backed volume (boundary.tf).
  source_policy_documents = [data.aws_iam_policy_document.grant_stack_key_to_aws_services.json]
  dynamic "statement" {
    for_each = local.network_creates
    content {
      sid       = "${statement.key}WithTheStackTag"
      actions   = ["ec2:${statement.key}"]
      resources = ["${local.arn.ec2}:${statement.value}/*"]
      condition {
        test     = "StringEquals"
        variable = "aws:RequestTag/Project"
        values   = [var.name]
      }
    }
  }

  # Tags go on as a resource is created; CreateTags on anything that exists needs its tag already (below).
  statement {
    sid       = "TagOnCreate"
    actions   = ["ec2:CreateTags"]
    resources = local.network_arns
    condition {
      test     = "StringEquals"
      variable = "ec2:CreateAction"
      values   = keys(local.network_creates)
    }
  }

  statement {
    sid = "ChangeTheStackNetwork"
    actions = [
      "ec2:ModifyVpcAttribute", "ec2:DeleteVpc", "ec2:CreateSubnet", "ec2:DeleteSubnet", "ec2:ModifySubnetAttribute",
      "ec2:CreateRouteTable", "ec2:DeleteRouteTable", "ec2:AssociateRouteTable", "ec2:DisassociateRouteTable",
      "ec2:CreateVpcEndpoint", "ec2:DeleteVpcEndpoints", "ec2:ModifyVpcEndpoint", "ec2:CreateSecurityGroup",
      "ec2:DeleteSecurityGroup", "ec2:AuthorizeSecurityGroupIngress", "ec2:AuthorizeSecurityGroupEgress",
      "ec2:RevokeSecurityGroupIngress", "ec2:RevokeSecurityGroupEgress", "ec2:ModifySecurityGroupRules",
      "ec2:CreateTags", "ec2:DeleteTags",
    ]
    resources = local.network_arns
    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/Project"
      values   = [var.name]
    }
  }

  statement {
    sid       = "CreateKeyWithTheStackTag"
    actions   = ["kms:CreateKey"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/Project"
      values   = [var.name]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:RequestedRegion"
      values   = [var.region]
    }
  }

  # The state key carries the same Project tag (the bootstrap's default_tags): policy_guardrails.tf denies
  # all of this on it. Neither a key's policy (who may use it) nor its deletion (which makes every object,
  # image, log and message it encrypts unreadable: data deletion) is CI's: the key is made by the
  # administrator's first apply (infra/README.md step 3) and deleted by the teardown, and a change of its
  # policy (infra/kms.tf) is an administrator's apply. What is left cannot widen who uses any key.
  statement {
    sid = "AdministerTheStackKey"
    actions = [
      "kms:EnableKeyRotation", "kms:TagResource", "kms:UntagResource", "kms:CreateAlias", "kms:DeleteAlias",
      "kms:UpdateAlias", "kms:RetireGrant",
    ]
    resources = [local.stack.key_arns]
    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/Project"
      values   = [var.name]
    }
  }

  statement {
    sid       = "NameTheStackKey"
    actions   = ["kms:CreateAlias", "kms:DeleteAlias", "kms:UpdateAlias"]
    resources = [local.stack.alias_arn]
  }
}
