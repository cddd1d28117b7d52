"""The request-trace reader and the IAM evaluator the emulator test relies on, on small known inputs."""

from __future__ import annotations

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
