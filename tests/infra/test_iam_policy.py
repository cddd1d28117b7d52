"""The request-trace reader and the IAM evaluator the emulator test relies on, on small known inputs."""

from __future__ import annotations

import dataclasses

import pytest

from tests.support import iam_policy
from tests.support.iam_policy import Account, Permission, decide
from tests.support.terraform_trace import Operation, operations

ACCOUNT = Account(account_id="123456789012", region="eu-west-1")

# Two entries as the provider logs them: attributes on one line, and a multi-line body first.
TRACE = """\
2026-11-28T09:05:26.700Z [DEBUG] provider.terraform-provider-aws_v5.100.0_x5: HTTP Request Sent: rpc.method=DescribeVpcs rpc.service=EC2 http.method=POST http.url=http://127.0.0.1:5000/ tf_rpc=ReadResource tf_resource_type=aws_vpc http.request.body="Action=DescribeVpcs&VpcId.1=vpc-0abc&Version=2016-11-15" timestamp=2026-11-28T09:05:26.700Z
2026-11-28T09:05:26.814Z [DEBUG] provider.terraform-provider-aws_v5.100.0_x5: HTTP Request Sent:
  http.request.body=
  | {"ResourceId":"endpoint/sdturbo/variant/AllTraffic",
  |  "ServiceNamespace":"sagemaker"}
   tf_resource_type=aws_appautoscaling_target rpc.method=DeregisterScalableTarget rpc.service="Application Auto Scaling" http.method=POST http.url=http://127.0.0.1:5000/ tf_rpc=ApplyResourceChange
2026-11-28T09:05:26.819Z [DEBUG] provider.terraform-provider-aws_v5.100.0_x5: HTTP Response Received: rpc.method=DeregisterScalableTarget http.status_code=200
2026-11-28T09:05:27.000Z [DEBUG] backend-s3: HTTP Request Sent: rpc.method=GetObject rpc.service=S3 http.method=GET http.url=http://127.0.0.1:5000/state-bucket/key/terraform.tfstate?x-id=GetObject
"""


def test_trace_reads_every_request_whatever_its_layout():
    found = operations(TRACE)
    assert [(op.service, op.name) for op in found] == [
        ("EC2", "DescribeVpcs"), ("Application Auto Scaling", "DeregisterScalableTarget"), ("S3", "GetObject")]
    assert found[0].body == "Action=DescribeVpcs&VpcId.1=vpc-0abc&Version=2016-11-15"
    assert found[1].body.startswith('{"ResourceId"') and found[1].resource_type == "aws_appautoscaling_target"


def op(service: str, name: str, body: str = "", url: str = "http://emulator/") -> Operation:
    return Operation(service, name, "POST", url, body, "ReadResource", "test")


@pytest.mark.parametrize("operation, action, resource", [
    (op("S3", "HeadBucket", url="http://e/bucket-a"), "s3:ListBucket", "arn:aws:s3:::bucket-a"),
    (op("S3", "GetBucketEncryption", url="http://e/bucket-a?encryption="), "s3:GetEncryptionConfiguration",
     "arn:aws:s3:::bucket-a"),
    (op("S3", "GetObject", url="http://e/bucket-a/dir/key"), "s3:GetObject", "arn:aws:s3:::bucket-a/dir/key"),
    (op("EC2", "DescribeNetworkAcls", "Action=DescribeNetworkAcls"), "ec2:DescribeNetworkAcls", "*"),
    (op("EC2", "DeleteSubnet", "Action=DeleteSubnet&SubnetId=subnet-0a1"), "ec2:DeleteSubnet",
     "arn:aws:ec2:eu-west-1:123456789012:subnet/subnet-0a1"),
    (op("CloudWatch Logs", "DescribeLogGroups", '{"logGroupNamePrefix":"/a"}'), "logs:DescribeLogGroups", "*"),
    (op("CloudWatch Logs", "CreateLogGroup", '{"logGroupName":"/a"}'), "logs:CreateLogGroup",
     "arn:aws:logs:eu-west-1:123456789012:log-group:/a:*"),
    (op("SageMaker", "CreateModel", '{"ModelName":"Sd-1"}'), "sagemaker:CreateModel",
     "arn:aws:sagemaker:eu-west-1:123456789012:model/sd-1"),
    (op("IAM", "PutRolePolicy", "Action=PutRolePolicy&RoleName=r1"), "iam:PutRolePolicy",
     "arn:aws:iam::123456789012:role/r1"),
    (op("Application Auto Scaling", "PutScalingPolicy", '{"PolicyName":"p"}'),
     "application-autoscaling:PutScalingPolicy", "*"),
])
def test_operation_maps_to_the_action_and_resource_iam_checks(operation, action, resource):
    direct = iam_policy.required(operation, Account(account_id="123456789012", region="eu-west-1"))[0]
    assert (direct.action, direct.resource) == (action, resource)


def test_create_model_also_needs_pass_role_to_sagemaker():
    permissions = iam_policy.required(op("SageMaker", "CreateModel", '{"ModelName":"m","ExecutionRoleArn":'
                                                                       '"arn:aws:iam::1:role/x"}'), ACCOUNT)
    passed = [p for p in permissions if p.action == "iam:PassRole"]
    assert passed and passed[0].resource == "arn:aws:iam::1:role/x"
    assert passed[0].context_dict()["iam:PassedToService"] == "sagemaker.amazonaws.com"


def test_target_tracking_policy_needs_cloudwatch_alarms_named_by_aws():
    permissions = iam_policy.required(op("Application Auto Scaling", "PutScalingPolicy",
                                         '{"PolicyType":"TargetTrackingScaling","ServiceNamespace":"sagemaker",'
                                         '"ResourceId":"endpoint/e/variant/v"}'), ACCOUNT)
    alarms = {p.resource for p in permissions if p.action == "cloudwatch:PutMetricAlarm"}
    assert all(":alarm:TargetTracking-endpoint/e/variant/v-Alarm" in a for a in alarms) and len(alarms) == 2


POLICY = {"Statement": [
    {"Effect": "Allow", "Action": ["s3:Get*"], "Resource": "arn:aws:s3:::b/*"},
    {"Effect": "Allow", "Action": "ec2:Describe*", "Resource": "*",
     "Condition": {"StringEquals": {"aws:RequestedRegion": "eu-west-1"}}},
    {"Effect": "Allow", "Action": "iam:CreateRole", "Resource": "arn:aws:iam::1:role/app-*",
     "Condition": {"StringEquals": {"iam:PermissionsBoundary": "arn:aws:iam::1:policy/ceiling"}}},
    {"Effect": "Deny", "NotAction": ["kms:Decrypt"], "Resource": "arn:aws:kms:eu-west-1:1:key/state"},
    {"Effect": "Allow", "Action": "kms:*", "Resource": "*"},
]}


@pytest.mark.parametrize("permission, expected", [
    (Permission("s3:GetObject", "arn:aws:s3:::b/k"), "allow"),
    (Permission("S3:getobject", "arn:aws:s3:::b/k"), "allow"),  # actions are case-insensitive
    (Permission("s3:GetObject", "arn:aws:s3:::other/k"), "implicit deny"),
    (Permission("s3:PutObject", "arn:aws:s3:::b/k"), "implicit deny"),
    (Permission("ec2:DescribeVpcs", "*", (("aws:RequestedRegion", "eu-west-1"),)), "allow"),
    (Permission("ec2:DescribeVpcs", "*", (("aws:RequestedRegion", "us-east-1"),)), "implicit deny"),
    (Permission("ec2:DescribeVpcs", "*"), "implicit deny"),  # a condition key the request lacks fails
    (Permission("iam:CreateRole", "arn:aws:iam::1:role/app-x",
                (("iam:PermissionsBoundary", "arn:aws:iam::1:policy/ceiling"),)), "allow"),
    (Permission("iam:CreateRole", "arn:aws:iam::1:role/app-x"), "implicit deny"),
    (Permission("kms:Decrypt", "arn:aws:kms:eu-west-1:1:key/state"), "allow"),
    (Permission("kms:ScheduleKeyDeletion", "arn:aws:kms:eu-west-1:1:key/state"), "deny"),  # Deny wins
    (Permission("kms:ScheduleKeyDeletion", "arn:aws:kms:eu-west-1:1:key/other"), "allow"),
    (Permission("logs:DescribeLogGroups", "*"), "implicit deny"),
])
def test_decide_follows_iam_evaluation(permission, expected):
    assert decide([POLICY], permission) == expected


def test_a_specific_resource_never_grants_an_account_wide_action():
    scoped = {"Statement": [{"Effect": "Allow", "Action": "logs:DescribeLogGroups",
                             "Resource": "arn:aws:logs:eu-west-1:1:log-group:/aws/x"}]}
    assert decide([scoped], Permission("logs:DescribeLogGroups", "*")) == "implicit deny"


def test_a_boundary_caps_what_the_policies_allow():
    assert iam_policy.allowed([POLICY], Permission("s3:GetObject", "arn:aws:s3:::b/k"))
    ceiling = {"Statement": [{"Effect": "Allow", "Action": "ec2:*", "Resource": "*"}]}
    assert not iam_policy.allowed([POLICY], Permission("s3:GetObject", "arn:aws:s3:::b/k"), boundary=ceiling)


# ------------------------------------------------------------------ tags, and what lies beyond the stack

def test_trace_gives_each_request_its_response_though_resources_interleave():
    log = "\n".join([
        '2026-11-28T09:05:26.700Z [DEBUG] provider: HTTP Request Sent: rpc.method=CreateVpc rpc.service=EC2 tf_req_id=a '
        'http.request.body="Action=CreateVpc"',
        '2026-11-28T09:05:26.701Z [DEBUG] provider: HTTP Request Sent: rpc.method=CreateVpc rpc.service=EC2 tf_req_id=b '
        'http.request.body="Action=CreateVpc"',
        '2026-11-28T09:05:26.702Z [DEBUG] provider: HTTP Response Received: rpc.method=CreateVpc tf_req_id=b '
        'http.response.body="<vpcId>vpc-0b</vpcId>"',
        '2026-11-28T09:05:26.703Z [DEBUG] provider: HTTP Response Received: rpc.method=CreateVpc tf_req_id=a '
        'http.response.body="<vpcId>vpc-0a</vpcId>"', ""])
    assert [op.response for op in operations(log)] == ["<vpcId>vpc-0a</vpcId>", "<vpcId>vpc-0b</vpcId>"]


def test_a_resource_carries_the_tags_it_was_created_with():
    account = Account(account_id="123456789012", region="eu-west-1")
    create = op("EC2", "CreateVpc", "Action=CreateVpc&TagSpecification.1.ResourceType=vpc"
                "&TagSpecification.1.Tag.1.Key=Project&TagSpecification.1.Tag.1.Value=sdturbo")
    create = dataclasses.replace(create, response="<vpc><vpcId>vpc-0a1</vpcId></vpc>")
    change = op("EC2", "ModifyVpcAttribute", "Action=ModifyVpcAttribute&VpcId=vpc-0a1")
    checked = iam_policy.checked([create, change], account)
    by_action = {p.action: p for p, _ in checked}
    assert by_action["ec2:CreateVpc"].resource == "arn:aws:ec2:eu-west-1:123456789012:vpc/*"
    assert by_action["ec2:CreateVpc"].context_dict()["aws:RequestTag/Project"] == "sdturbo"
    assert by_action["ec2:CreateTags"].context_dict()["ec2:CreateAction"] == "CreateVpc"
    assert by_action["ec2:ModifyVpcAttribute"].context_dict()["aws:ResourceTag/Project"] == "sdturbo"


STACK = "sdturbo"
EC2_ANY = "arn:aws:ec2:eu-west-1:123456789012:*"
TAG_SCOPED = {"Statement": [
    {"Effect": "Allow", "Action": "ec2:CreateSubnet", "Resource": "arn:aws:ec2:eu-west-1:123456789012:subnet/*",
     "Condition": {"StringEquals": {"aws:RequestTag/Project": STACK}}},
    {"Effect": "Allow", "Action": "ec2:CreateTags", "Resource": EC2_ANY,
     "Condition": {"StringEquals": {"ec2:CreateAction": ["CreateSubnet"]}}},
    {"Effect": "Allow", "Action": ["ec2:CreateSubnet", "ec2:DeleteVpc", "ec2:AuthorizeSecurityGroupIngress",
                                   "ec2:CreateTags"], "Resource": EC2_ANY,
     "Condition": {"StringEquals": {"aws:ResourceTag/Project": STACK}}},
    {"Effect": "Allow", "Action": ["kms:PutKeyPolicy", "kms:CreateGrant"], "Resource": "arn:aws:kms:eu-west-1:123456789012:key/*",
     "Condition": {"StringEquals": {"aws:ResourceTag/Project": STACK}, "Bool": {"kms:GrantIsForAWSResource": "true"}}},
]}


def reached(policy: dict) -> list[str]:
    account = Account(account_id="123456789012", region="eu-west-1")
    return [f"{p.action} {p.resource}" for p in iam_policy.beyond_the_stack(account, STACK) if decide([policy], p) == "allow"]


@pytest.mark.parametrize("statement", [
    # EC2 writes named by account and region: any security group or VPC of the region
    {"Effect": "Allow", "Action": ["ec2:AuthorizeSecurityGroupIngress", "ec2:DeleteVpc"], "Resource": EC2_ANY},
    # tagging allowed whenever the request asks for the stack's tag: another team's group can be claimed
    {"Effect": "Allow", "Action": "ec2:CreateTags", "Resource": EC2_ANY,
     "Condition": {"StringEquals": {"aws:RequestTag/Project": STACK}}},
    # one statement for several creates: CreateSubnet also acts on any VPC whose request carries the tag
    {"Effect": "Allow", "Action": ["ec2:CreateVpc", "ec2:CreateSubnet"], "Resource": EC2_ANY,
     "Condition": {"StringEquals": {"aws:RequestTag/Project": STACK}}},
    # key administration on every key but one
    {"Effect": "Allow", "Action": ["kms:PutKeyPolicy", "kms:ScheduleKeyDeletion"],
     "Resource": "arn:aws:kms:eu-west-1:123456789012:key/*"},
    # a workload role's key use without the stack's tag
    {"Effect": "Allow", "Action": ["kms:Decrypt", "kms:CreateGrant"], "Resource": "arn:aws:kms:eu-west-1:123456789012:key/*"},
], ids=["ec2-region-wide", "claim-by-tag", "creates-share-a-statement", "kms-admin-any-key", "kms-use-any-key"])
def test_a_statement_that_reaches_another_team_s_untagged_resource_is_caught(statement):
    assert reached({"Statement": [statement]})


def test_statements_held_to_the_stack_s_tag_reach_nothing_else():
    assert reached(TAG_SCOPED) == []


def test_a_grant_on_the_stack_key_must_be_for_an_aws_service():
    account = Account(account_id="123456789012", region="eu-west-1")
    key = "arn:aws:kms:eu-west-1:123456789012:key/stack"
    anyone = iam_policy.stack_key_grant_to_anyone(account, STACK, key)
    assert decide([TAG_SCOPED], anyone) == "implicit deny"
    without_condition = {"Statement": [{"Effect": "Allow", "Action": "kms:CreateGrant", "Resource": key}]}
    assert decide([without_condition], anyone) == "allow"


# ------------------------------------------------------------------ what AWS checks for a key the caller does not name

def test_items_of_a_table_with_a_customer_key_need_the_key_through_dynamodb():
    """DynamoDB uses a customer managed table key with the caller's permissions (AWS KMS Developer Guide; a
    PutItem refused without kms:Decrypt, aws/aws-cdk#10010): the table's key is learnt from its CreateTable."""
    account = Account(account_id="123456789012", region="eu-west-1")
    key = "arn:aws:kms:eu-west-1:123456789012:key/state"
    create = op("DynamoDB", "CreateTable", '{"TableName":"lock","SSESpecification":{"Enabled":true,'
                f'"KMSMasterKeyId":"{key}","SSEType":"KMS"}}}}')
    put = op("DynamoDB", "PutItem", '{"TableName":"lock","Item":{}}')
    checked = iam_policy.checked([create, put], account)
    (use,) = [p for p, _ in checked if p.action == "kms:Decrypt"]
    assert use.resource == key and use.context_dict()["kms:ViaService"] == "dynamodb.eu-west-1.amazonaws.com"
    assert use.because == "DynamoDB PutItem"


def test_objects_of_a_bucket_with_a_kms_default_need_the_key_through_s3():
    account = Account(account_id="123456789012", region="eu-west-1")
    key = "arn:aws:kms:eu-west-1:123456789012:key/state"
    encrypt = op("S3", "PutBucketEncryption", "<ServerSideEncryptionConfiguration><Rule>"
                 f"<ApplyServerSideEncryptionByDefault><KMSMasterKeyID>{key}</KMSMasterKeyID>"
                 "<SSEAlgorithm>aws:kms</SSEAlgorithm></ApplyServerSideEncryptionByDefault></Rule>"
                 "</ServerSideEncryptionConfiguration>", url="http://e/state?encryption=")
    put = op("S3", "PutObject", url="http://e/state/stack/terraform.tfstate.tflock")
    by_action = {p.action: p for p, _ in iam_policy.checked([encrypt, put], account)}
    assert by_action["kms:GenerateDataKey"].resource == key
    assert by_action["s3:PutObject"].resource == "arn:aws:s3:::state/stack/terraform.tfstate.tflock"


def test_an_interface_endpoint_with_private_dns_needs_route53():
    interface = ("Action=CreateVpcEndpoint&VpcId=vpc-0a1&VpcEndpointType=Interface&ServiceName=com.amazonaws.eu-west-1.sns"
                 "&PrivateDnsEnabled=true")
    needed = {p.action for p in iam_policy.required(op("EC2", "CreateVpcEndpoint", interface), ACCOUNT)}
    assert "route53:AssociateVPCWithHostedZone" in needed
    gateway = "Action=CreateVpcEndpoint&VpcId=vpc-0a1&VpcEndpointType=Gateway&ServiceName=com.amazonaws.eu-west-1.s3"
    assert "route53:AssociateVPCWithHostedZone" not in {
        p.action for p in iam_policy.required(op("EC2", "CreateVpcEndpoint", gateway), ACCOUNT)}
