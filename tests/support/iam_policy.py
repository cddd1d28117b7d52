"""Evaluate IAM policy documents the way IAM does, for the requests the stack's Terraform runs send.

`decide` evaluates a list of identity policies (explicit Deny wins, then any Allow) for one action on one
resource with a request context, including conditions. `required` turns one AWS operation from the
provider's trace into the permissions IAM checks for it: the action, the resource ARN where the action
supports resource-level permissions ("*" where it does not), the condition keys the request carries, and
the extra actions AWS checks on the caller's behalf that never appear in the trace (iam:PassRole,
KMS for SSE-KMS objects and for items of a table encrypted with a customer key, Application Auto Scaling's
calls to SageMaker and CloudWatch, EC2's tagging on create, Route 53 for an interface endpoint's private
DNS). Tags are followed through the trace: a resource's ``aws:ResourceTag/*`` are the tags it was created
with (its id read from the response) or given later, and a request's ``aws:RequestTag/*`` the tags it sends.
`beyond_the_stack` asks policies what they would let a role do to another team's untagged resources.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.support.terraform_trace import Operation

PREFIX = {
    "Application Auto Scaling": "application-autoscaling", "CloudWatch": "cloudwatch", "CloudWatch Logs": "logs",
    "DynamoDB": "dynamodb", "EC2": "ec2", "ECR": "ecr", "IAM": "iam", "KMS": "kms", "S3": "s3", "SageMaker": "sagemaker",
    "SageMaker Runtime": "sagemaker", "SNS": "sns", "STS": "sts",
}

# Operations whose IAM action is not "<prefix>:<operation>" (Service Authorization Reference, Amazon S3).
ACTION_OF = {
    ("S3", "HeadBucket"): "s3:ListBucket",
    ("S3", "ListObjectsV2"): "s3:ListBucket",
    ("S3", "ListObjectVersions"): "s3:ListBucketVersions",
    ("S3", "HeadObject"): "s3:GetObject",
    ("S3", "GetBucketCors"): "s3:GetBucketCORS",
    ("S3", "GetBucketEncryption"): "s3:GetEncryptionConfiguration",
    ("S3", "PutBucketEncryption"): "s3:PutEncryptionConfiguration",
    ("S3", "DeleteBucketEncryption"): "s3:PutEncryptionConfiguration",
    ("S3", "GetBucketLifecycleConfiguration"): "s3:GetLifecycleConfiguration",
    ("S3", "PutBucketLifecycleConfiguration"): "s3:PutLifecycleConfiguration",
    ("S3", "DeleteBucketLifecycle"): "s3:PutLifecycleConfiguration",
    ("S3", "GetBucketReplication"): "s3:GetReplicationConfiguration",
    ("S3", "GetObjectLockConfiguration"): "s3:GetBucketObjectLockConfiguration",
    ("S3", "GetBucketAccelerateConfiguration"): "s3:GetAccelerateConfiguration",
    ("S3", "GetPublicAccessBlock"): "s3:GetBucketPublicAccessBlock",
    ("S3", "PutPublicAccessBlock"): "s3:PutBucketPublicAccessBlock",
    ("S3", "DeletePublicAccessBlock"): "s3:PutBucketPublicAccessBlock",
    ("S3", "DeleteBucketOwnershipControls"): "s3:PutBucketOwnershipControls",
    ("S3", "DeleteBucketTagging"): "s3:PutBucketTagging",
    ("S3", "DeleteObjects"): "s3:DeleteObject",
}

# Item requests of DynamoDB. On a table encrypted with a customer managed key, DynamoDB uses the key with the
# caller's permissions, through DynamoDB (AWS KMS Developer Guide, "How Amazon DynamoDB uses AWS KMS": the key
# policy it writes allows principals kms:ViaService dynamodb.<region>.amazonaws.com; a PutItem refused for
# lack of kms:Decrypt: aws/aws-cdk#10010).
DYNAMODB_ITEM_READS_AND_WRITES = {"GetItem", "PutItem", "DeleteItem", "UpdateItem", "Query", "Scan",
                                  "BatchGetItem", "BatchWriteItem"}

# Operations IAM does not authorize at all.
NO_PERMISSION = {("STS", "GetCallerIdentity")}

# Operations the provider sends expecting that they may be refused, with what it does then.
MAY_BE_DENIED = {
    ("IAM", "GetUser"): "the provider's first guess at the account id; denied for a role, it asks STS instead",
}

# Actions without resource-level permissions: IAM authorizes them against "*" only (Service Authorization
# Reference: no resource type listed). Everything else is checked against the ARN the request names.
ACCOUNT_WIDE = re.compile(
    r"^(ec2:Describe.*|application-autoscaling:.*|kms:CreateKey|kms:ListAliases|logs:DescribeLogGroups"
    r"|ecr:GetAuthorizationToken|s3:ListAllMyBuckets|sns:ListTopics|cloudwatch:PutMetricData)$")

UUID = "00000000-0000-0000-0000-000000000000"  # stands for the id AWS appends to a generated name
EC2_TYPES = {"vpc": "vpc", "subnet": "subnet", "sg": "security-group", "rtb": "route-table",
             "vpce": "vpc-endpoint", "sgr": "security-group-rule", "pl": "prefix-list", "rtbassoc": "route-table"}
EC2_ID = re.compile(r"^(vpc|subnet|sg|rtb|vpce|sgr|pl|rtbassoc)-[0-9a-f]+$")
# EC2 requests that create a resource: the type IAM checks it as (``<type>/*``, it has no id yet) and the
# response element that holds its id.
EC2_CREATES = {"CreateVpc": ("vpc", "vpcId"), "CreateSubnet": ("subnet", "subnetId"),
               "CreateRouteTable": ("route-table", "routeTableId"), "CreateSecurityGroup": ("security-group", "groupId"),
               "CreateVpcEndpoint": ("vpc-endpoint", "vpcEndpointId"),
               "AuthorizeSecurityGroupIngress": ("security-group-rule", "securityGroupRuleId"),
               "AuthorizeSecurityGroupEgress": ("security-group-rule", "securityGroupRuleId")}


@dataclass(frozen=True)
class Permission:
    """What IAM checks for one request: an action on a resource, with the request's condition keys."""

    action: str
    resource: str
    context: tuple[tuple[str, str], ...] = ()
    because: str = ""  # for an implied permission: the operation that needs it

    def context_dict(self) -> dict[str, str]:
        return dict(self.context)


@dataclass
class Account:
    """Facts about the account the requests went to, learnt from the requests themselves."""

    partition: str = "aws"
    region: str = "us-east-1"
    account_id: str = "123456789012"
    role_boundaries: dict[str, str] = field(default_factory=dict)  # role name -> boundary policy ARN
    sse_kms_keys: dict[str, str] = field(default_factory=dict)  # bucket -> ARN of its SSE-KMS key
    table_kms_keys: dict[str, str] = field(default_factory=dict)  # DynamoDB table -> its customer managed key
    endpoint_configs: dict[str, str] = field(default_factory=dict)  # endpoint -> its configuration
    tags: dict[str, dict[str, str]] = field(default_factory=dict)  # resource ARN -> its tags
    associations: dict[str, str] = field(default_factory=dict)  # rtbassoc-… -> ARN of its route table

    def arn(self, service: str, resource: str, region: bool = True, account: bool = True) -> str:
        return (f"arn:{self.partition}:{service}:{self.region if region else ''}:"
                f"{self.account_id if account else ''}:{resource}")


# ------------------------------------------------------------------ policy evaluation

def _listify(value) -> list:
    return value if isinstance(value, list) else [value]


def _glob(pattern: str, value: str, ignore_case: bool = False) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL) is not None


def _condition_holds(operator: str, key: str, expected, context: dict[str, str]) -> bool:
    expected = [str(v).lower() if isinstance(v, bool) else str(v) for v in _listify(expected)]
    if_exists = operator.endswith("IfExists")
    base = operator.removesuffix("IfExists").split(":")[-1]
    if base == "Null":
        return (key not in context) == (expected[0] == "true")
    if key not in context:
        return if_exists or base.startswith(("StringNot", "ArnNot"))
    actual = context[key]
    tests = {
        "StringEquals": lambda e: actual == e, "StringNotEquals": lambda e: actual != e,
        "StringEqualsIgnoreCase": lambda e: actual.lower() == e.lower(),
        "StringLike": lambda e: _glob(e, actual), "StringNotLike": lambda e: not _glob(e, actual),
        "ArnEquals": lambda e: actual == e, "ArnLike": lambda e: _glob(e, actual),
        "ArnNotEquals": lambda e: actual != e, "ArnNotLike": lambda e: not _glob(e, actual),
        "Bool": lambda e: actual.lower() == e.lower(),
    }
    if base not in tests:
        raise ValueError(f"condition operator {operator} is not modelled")
    if base.startswith(("StringNot", "ArnNot")):
        return all(tests[base](e) for e in expected)
    return any(tests[base](e) for e in expected)


def statement_matches(statement: dict, permission: Permission) -> bool:
    """Whether one statement covers the action, the resource and the request context."""
    if "Action" in statement:
        if not any(_glob(p, permission.action, ignore_case=True) for p in _listify(statement["Action"])):
            return False
    elif any(_glob(p, permission.action, ignore_case=True) for p in _listify(statement.get("NotAction", []))):
        return False
    if "Resource" in statement:
        if not any(_glob(p, permission.resource) for p in _listify(statement["Resource"])):
            return False
    elif any(_glob(p, permission.resource) for p in _listify(statement.get("NotResource", []))):
        return False
    context = permission.context_dict()
    for operator, keys in statement.get("Condition", {}).items():
        for key, expected in keys.items():
            if not _condition_holds(operator, key, expected, context):
                return False
    return True


def statements(policies: list[dict | str]) -> list[dict]:
    found = []
    for policy in policies:
        document = json.loads(policy) if isinstance(policy, str) else policy
        found += _listify(document.get("Statement", []))
    return found


def decide(policies: list[dict | str], permission: Permission) -> str:
    """'deny' (an explicit Deny matches), 'allow' (an Allow matches) or 'implicit deny'."""
    matching = [s for s in statements(policies) if statement_matches(s, permission)]
    if any(s.get("Effect") == "Deny" for s in matching):
        return "deny"
    if any(s.get("Effect") == "Allow" for s in matching):
        return "allow"
    return "implicit deny"


def allowed(policies: list[dict | str], permission: Permission, boundary: dict | str | None = None) -> bool:
    """Identity policies allow it and, when the role has a permissions boundary, the boundary does too."""
    if decide(policies, permission) != "allow":
        return False
    return boundary is None or decide([boundary], permission) == "allow"


# ------------------------------------------------------------------ operations -> permissions

def _params(operation: Operation) -> dict:
    body = operation.body.strip().removesuffix("[truncated...]").strip()  # the provider cuts long bodies
    if body.startswith("{"):
        try:
            return json.loads(body)
        except ValueError:
            return {}
    if "=" in body and not body.startswith("<"):
        return {k: v[0] for k, v in urllib.parse.parse_qs(body, keep_blank_values=True).items()}
    return {}


def action_of(operation: Operation) -> str:
    return ACTION_OF.get((operation.service, operation.name), f"{PREFIX[operation.service]}:{operation.name}")


def _s3_target(operation: Operation) -> tuple[str, str]:
    path = urllib.parse.urlsplit(operation.url).path.lstrip("/")
    bucket, _, key = path.partition("/")
    return urllib.parse.unquote(bucket), urllib.parse.unquote(key)


def _resources(operation: Operation, action: str, params: dict, account: Account) -> list[str]:
    """The ARNs the request names, as IAM authorizes them."""
    if ACCOUNT_WIDE.match(action):
        return ["*"]
    service = operation.service
    if service == "S3":
        bucket, key = _s3_target(operation)
        if operation.name == "DeleteObjects":
            keys = re.findall(r"<Key>([^<]*)</Key>", operation.body)
            return [f"arn:{account.partition}:s3:::{bucket}/{k}" for k in keys] or [f"arn:{account.partition}:s3:::{bucket}/*"]
        return [f"arn:{account.partition}:s3:::{bucket}/{key}" if key else f"arn:{account.partition}:s3:::{bucket}"]
    if service in ("SageMaker", "SageMaker Runtime"):
        if "ResourceArn" in params:
            return [params["ResourceArn"]]
        kinds = [("ModelName", "model"), ("EndpointConfigName", "endpoint-config"), ("EndpointName", "endpoint")]
        found = [account.arn("sagemaker", f"{kind}/{params[name].lower()}") for name, kind in kinds if name in params]
        return found or ["*"]
    if service == "IAM":
        if "RoleName" in params:
            return [account.arn("iam", f"role{params.get('Path', '/')}{params['RoleName']}", region=False)]
        if "OpenIDConnectProviderArn" in params:
            return [params["OpenIDConnectProviderArn"]]
        if "Url" in params:
            return [account.arn("iam", f"oidc-provider/{params['Url'].split('://', 1)[-1]}", region=False)]
        if "PolicyArn" in params:
            return [params["PolicyArn"]]
        if "PolicyName" in params:
            return [account.arn("iam", f"policy{params.get('Path', '/')}{params['PolicyName']}", region=False)]
        return ["*"]
    if service == "KMS":
        arns = []
        for name in ("KeyId", "TargetKeyId"):
            value = params.get(name)
            if value:
                arns.append(value if value.startswith("arn:") else account.arn("kms", f"key/{value}"))
        if "AliasName" in params:
            arns.append(account.arn("kms", params["AliasName"]))
        return arns or ["*"]
    if service == "DynamoDB":
        if "ResourceArn" in params:
            return [params["ResourceArn"]]
        return [account.arn("dynamodb", f"table/{params['TableName']}")] if "TableName" in params else ["*"]
    if service == "ECR":
        if "resourceArn" in params:
            return [params["resourceArn"]]
        names = params.get("repositoryNames") or ([params["repositoryName"]] if "repositoryName" in params else [])
        return [account.arn("ecr", f"repository/{n}") for n in names] or ["*"]
    if service == "SNS":
        for name in ("TopicArn", "ResourceArn"):
            if name in params:
                return [params[name]]
        if "SubscriptionArn" in params:
            return [params["SubscriptionArn"].rsplit(":", 1)[0]]
        return [account.arn("sns", params["Name"])] if "Name" in params else ["*"]
    if service == "CloudWatch":
        if "ResourceARN" in params:
            return [params["ResourceARN"]]
        names = [v for k, v in params.items() if k == "AlarmName" or k.startswith("AlarmNames.member.")]
        return [account.arn("cloudwatch", f"alarm:{n}") for n in names] or ["*"]
    if service == "CloudWatch Logs":
        if "resourceArn" in params:  # tagging APIs take the log group ARN without the trailing ":*"
            return [params["resourceArn"]]
        name = params.get("logGroupName") or params.get("logGroupNamePrefix")
        return [account.arn("logs", f"log-group:{name}:*")] if name else ["*"]
    if service == "EC2":
        # Every resource the request names (a rule's references to other groups and prefix lists are
        # part of the rule, not resources it changes), and the one it creates.
        named = [ec2_arn(account, str(value)) for key, value in params.items()
                 if EC2_ID.match(str(value)) and not key.startswith("IpPermissions.")]
        created = [account.arn("ec2", f"{EC2_CREATES[operation.name][0]}/*")] if operation.name in EC2_CREATES else []
        return list(dict.fromkeys(named + created)) or [account.arn("ec2", "*")]
    return ["*"]


def ec2_arn(account: Account, resource_id: str) -> str:
    if resource_id in account.associations:
        return account.associations[resource_id]
    return account.arn("ec2", f"{EC2_TYPES[resource_id.split('-', 1)[0]]}/{resource_id}")


def request_tags(operation: Operation, params: dict) -> dict[str, str]:
    """The tags a request puts on what it creates or names: EC2's TagSpecification/Tag, KMS's Tags."""
    if operation.service == "EC2":
        keys = {k.rsplit(".Key", 1)[0]: v for k, v in params.items() if re.match(r"^(TagSpecification\.\d+\.)?Tag\.\d+\.Key$", k)}
        return {key: params.get(f"{prefix}.Value", "") for prefix, key in keys.items()}
    if operation.service == "KMS":  # from the raw body too: a long key policy may cut the JSON short
        tags = params.get("Tags") or [json.loads(f"{{{tag}}}") for tag in re.findall(
            r'\{("TagKey":\s*"[^"]*",\s*"TagValue":\s*"[^"]*")\}', operation.body)]
        return {tag["TagKey"]: tag.get("TagValue", "") for tag in tags}
    return {}


def _context(operation: Operation, action: str, params: dict, account: Account) -> tuple[tuple[str, str], ...]:
    region = "us-east-1" if operation.service in ("IAM", "STS") else account.region
    context = {"aws:RequestedRegion": region}
    if action == "iam:CreateRole" and params.get("PermissionsBoundary"):
        context["iam:PermissionsBoundary"] = params["PermissionsBoundary"]
    elif action.startswith("iam:") and "RoleName" in params and params["RoleName"] in account.role_boundaries:
        context["iam:PermissionsBoundary"] = account.role_boundaries[params["RoleName"]]
    if action == "iam:PutRolePermissionsBoundary":
        context["iam:PermissionsBoundary"] = params.get("PermissionsBoundary", "")
    context.update({f"aws:RequestTag/{key}": value for key, value in request_tags(operation, params).items()})
    return tuple(sorted(context.items()))


def _with_resource_tags(context: tuple, resource: str, account: Account) -> tuple:
    """The request's context for one resource: its tags as aws:ResourceTag/* (each resource has its own)."""
    tags = {f"aws:ResourceTag/{key}": value for key, value in account.tags.get(resource, {}).items()}
    return tuple(sorted({**dict(context), **tags}.items())) if tags else context


def _implied(operation: Operation, params: dict, account: Account, base: tuple) -> list[Permission]:
    """Permissions AWS checks on the caller's behalf for this request, which the trace does not show."""
    why = f"{operation.service} {operation.name}"
    implied: list[tuple[str, str, dict]] = []
    if operation.service == "SageMaker" and operation.name == "CreateModel" and params.get("ExecutionRoleArn"):
        implied.append(("iam:PassRole", params["ExecutionRoleArn"], {"iam:PassedToService": "sagemaker.amazonaws.com"}))
    if operation.service == "S3" and operation.name in ("GetObject", "PutObject", "HeadObject"):
        bucket, _ = _s3_target(operation)
        if bucket in account.sse_kms_keys:  # SSE-KMS: S3 asks KMS with the caller's credentials
            kms_action = "kms:GenerateDataKey" if operation.name == "PutObject" else "kms:Decrypt"
            implied.append((kms_action, account.sse_kms_keys[bucket], {
                "kms:ViaService": f"s3.{account.region}.amazonaws.com",
                "kms:EncryptionContext:aws:s3:arn": f"arn:{account.partition}:s3:::{bucket}"}))
    if operation.service == "DynamoDB" and operation.name in DYNAMODB_ITEM_READS_AND_WRITES:
        table = params.get("TableName", "")
        if table in account.table_kms_keys:  # a customer managed table key: DynamoDB uses it as the caller
            implied.append(("kms:Decrypt", account.table_kms_keys[table],
                            {"kms:ViaService": f"dynamodb.{account.region}.amazonaws.com"}))
    if operation.service == "ECR" and operation.name == "CreateRepository":
        key = (params.get("encryptionConfiguration") or {}).get("kmsKey")
        if key:  # ECR creates a grant on the key as the caller, for itself (an AWS resource)
            via_ecr = {"kms:ViaService": f"ecr.{account.region}.amazonaws.com", "kms:GrantIsForAWSResource": "true"}
            implied += [("kms:CreateGrant", key, via_ecr), ("kms:DescribeKey", key, {})]
    if operation.service == "EC2" and operation.name in EC2_CREATES and request_tags(operation, params):
        # Tags given on create need ec2:CreateTags on the new resource, with the create action as context.
        new = account.arn("ec2", f"{EC2_CREATES[operation.name][0]}/*")
        implied.append(("ec2:CreateTags", new, {"ec2:CreateAction": operation.name}))
    if (operation.service == "EC2" and operation.name == "CreateVpcEndpoint"
            and params.get("VpcEndpointType") == "Interface" and params.get("PrivateDnsEnabled") == "true"):
        # Private DNS associates the VPC with a private hosted zone that AWS creates for the endpoint (its id is
        # not known beforehand): a dependent action of CreateVpcEndpoint (Service Authorization Reference).
        implied.append(("route53:AssociateVPCWithHostedZone", "*", {}))
    if operation.service == "Application Auto Scaling" and params.get("ServiceNamespace") == "sagemaker":
        resource_id = params.get("ResourceId", "")
        endpoint = resource_id.split("/")[1] if resource_id.count("/") >= 1 else ""
        # Target tracking names its alarms TargetTracking-<resource id>-AlarmHigh|AlarmLow-<uuid>.
        alarms = [account.arn("cloudwatch", f"alarm:TargetTracking-{resource_id}-{kind}-{UUID}")
                  for kind in ("AlarmHigh", "AlarmLow")]
        if operation.name == "RegisterScalableTarget":  # SageMaker's prerequisites for auto scaling
            endpoint_arn = account.arn("sagemaker", f"endpoint/{endpoint.lower()}")
            config = account.endpoint_configs.get(endpoint, "*").lower()
            implied += [("sagemaker:DescribeEndpoint", endpoint_arn, {}),
                        ("sagemaker:DescribeEndpointConfig", account.arn("sagemaker", f"endpoint-config/{config}"), {}),
                        ("sagemaker:UpdateEndpointWeightsAndCapacities", endpoint_arn, {}),
                        ("iam:CreateServiceLinkedRole", account.arn(
                            "iam", "role/aws-service-role/sagemaker.application-autoscaling.amazonaws.com/"
                            "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint", region=False),
                         {"iam:AWSServiceName": "sagemaker.application-autoscaling.amazonaws.com"})]
        if operation.name == "PutScalingPolicy" and params.get("PolicyType") == "TargetTrackingScaling":
            implied += [(action, alarm, {}) for alarm in alarms
                        for action in ("cloudwatch:PutMetricAlarm", "cloudwatch:DescribeAlarms")]
        if operation.name in ("DeleteScalingPolicy", "DeregisterScalableTarget"):
            implied += [(action, alarm, {}) for alarm in alarms
                        for action in ("cloudwatch:DeleteAlarms", "cloudwatch:DescribeAlarms")]
    return [Permission(action, resource, _with_resource_tags(tuple(sorted({**dict(base), **extra}.items())), resource,
                                                             account), because=why)
            for action, resource, extra in implied]


def learn(account: Account, operation: Operation) -> None:
    """Remember what later requests' context depends on (role boundaries, the keys that encrypt a bucket's
    objects or a table's items, tags)."""
    params = _params(operation)
    if operation.service == "S3" and operation.name == "PutBucketEncryption":
        key = re.search(r"<KMSMasterKeyID>([^<]+)</KMSMasterKeyID>", operation.body)
        if key and "<SSEAlgorithm>aws:kms" in operation.body:
            account.sse_kms_keys[_s3_target(operation)[0]] = key.group(1)
    if operation.service == "DynamoDB" and operation.name == "CreateTable":
        sse = params.get("SSESpecification") or {}
        if sse.get("SSEType") == "KMS" and sse.get("KMSMasterKeyId"):
            account.table_kms_keys[params["TableName"]] = sse["KMSMasterKeyId"]
    if operation.service == "IAM" and operation.name == "CreateRole" and params.get("PermissionsBoundary"):
        account.role_boundaries[params["RoleName"]] = params["PermissionsBoundary"]
    if operation.service == "IAM" and operation.name == "PutRolePermissionsBoundary":
        account.role_boundaries[params["RoleName"]] = params["PermissionsBoundary"]
    if operation.service == "IAM" and operation.name == "DeleteRolePermissionsBoundary":
        account.role_boundaries.pop(params.get("RoleName", ""), None)
    if operation.service == "SageMaker" and operation.name in ("CreateEndpoint", "UpdateEndpoint"):
        account.endpoint_configs[params["EndpointName"]] = params["EndpointConfigName"]
    tags = request_tags(operation, params)
    if operation.service == "EC2" and operation.name in EC2_CREATES:
        kind, element = EC2_CREATES[operation.name]
        for created in re.findall(rf"<{element}>([^<]+)</{element}>", operation.response)[:None if kind == "security-group-rule" else 1]:
            account.tags[account.arn("ec2", f"{kind}/{created}")] = dict(tags)
    if operation.service == "EC2" and operation.name == "AssociateRouteTable":
        for association in re.findall(r"<associationId>([^<]+)</associationId>", operation.response):
            account.associations[association] = ec2_arn(account, params["RouteTableId"])
    if operation.service == "EC2" and operation.name in ("CreateTags", "DeleteTags"):
        for resource in [ec2_arn(account, v) for k, v in params.items() if k.startswith("ResourceId.")]:
            current = account.tags.setdefault(resource, {})
            if operation.name == "CreateTags":
                current.update(tags)
            else:
                for key in tags:
                    current.pop(key, None)
    if operation.service == "KMS" and operation.name == "CreateKey":
        created = re.search(r'"Arn":\s*"([^"]+)"', operation.response)
        if created:
            account.tags[created.group(1)] = dict(tags)
    if operation.service == "KMS" and operation.name in ("TagResource", "UntagResource") and params.get("KeyId"):
        key = params["KeyId"] if params["KeyId"].startswith("arn:") else account.arn("kms", f"key/{params['KeyId']}")
        current = account.tags.setdefault(key, {})
        current.update(tags)
        for name in params.get("TagKeys") or []:
            current.pop(name, None)


def required(operation: Operation, account: Account) -> list[Permission]:
    """Every permission IAM checks for this request (empty for requests IAM does not authorize)."""
    if (operation.service, operation.name) in NO_PERMISSION:
        return []
    params = _params(operation)
    action = action_of(operation)
    base = _context(operation, action, params, account)
    direct = [Permission(action, resource, _with_resource_tags(base, resource, account))
              for resource in _resources(operation, action, params, account)]
    return direct + _implied(operation, params, account, base)


@dataclass(frozen=True)
class Refusal:
    permission: Permission
    operation: str  # "<service> <operation>" of the request
    resource_type: str  # the Terraform resource or data source it served

    def describe(self) -> str:
        origin = self.permission.because or self.operation
        return f"{self.permission.action} on {self.permission.resource} ({origin}, for {self.resource_type or 'provider set-up'})"


def checked(operations: list[Operation], account: Account,
            by_others: Callable[[Operation], bool] = lambda operation: False) -> list[tuple[Permission, Operation]]:
    """Each distinct permission IAM checks for the operations in order, with the operation that needs it;
    operations the provider expects to be refused (MAY_BE_DENIED) are left out, and so are those
    ``by_others`` says someone else (an administrator) sends, though what they create or tag is learnt."""
    seen, found = set(), []
    for operation in operations:
        for permission in required(operation, account):
            key = (permission.action, permission.resource, permission.context)
            if key not in seen and (operation.service, operation.name) not in MAY_BE_DENIED and not by_others(operation):
                seen.add(key)
                found.append((permission, operation))
        learn(account, operation)
    return found


def refusals(policies: list[dict | str], operations: list[Operation], account: Account,
             boundary: dict | str | None = None,
             by_others: Callable[[Operation], bool] = lambda operation: False) -> list[Refusal]:
    """Each distinct permission the policies do not grant, for the operations in order."""
    return [Refusal(permission, f"{operation.service} {operation.name}", operation.resource_type)
            for permission, operation in checked(operations, account, by_others)
            if not allowed(policies, permission, boundary)]


# ------------------------------------------------------------------ reach beyond the stack

def beyond_the_stack(account: Account, project: str) -> list[Permission]:
    """Requests against another team's resources in the same account and region, none of them tagged
    with the project (or carrying the project's tag only because the request asks to add it). A role of
    the project's CI may send none of them."""
    region = (("aws:RequestedRegion", account.region),)
    claim = (("aws:RequestTag/Project", project),)  # the tag a stack resource carries, asked for by the request
    other = {kind: account.arn("ec2", f"{kind}/{prefix}-0123456789abcdef0")
             for kind, prefix in (("vpc", "vpc"), ("subnet", "subnet"), ("security-group", "sg"),
                                  ("route-table", "rtb"), ("vpc-endpoint", "vpce"))}
    key = account.arn("kms", "key/11111111-2222-3333-4444-555555555555")
    return [Permission(action, resource, region + extra) for action, resource, extra in [
        ("ec2:AuthorizeSecurityGroupIngress", other["security-group"], ()),  # open another team's SG
        ("ec2:RevokeSecurityGroupEgress", other["security-group"], ()),
        ("ec2:DeleteSecurityGroup", other["security-group"], ()),
        ("ec2:CreateTags", other["security-group"], claim),  # claim it by tagging it as the project's
        ("ec2:CreateTags", other["vpc"], claim),
        ("ec2:ModifyVpcAttribute", other["vpc"], ()),
        ("ec2:DeleteVpc", other["vpc"], ()),
        ("ec2:CreateSubnet", other["vpc"], claim),  # a subnet of ours in their VPC
        ("ec2:CreateRouteTable", other["vpc"], claim),
        ("ec2:CreateSecurityGroup", other["vpc"], claim),
        ("ec2:CreateVpcEndpoint", other["vpc"], claim),
        ("ec2:DeleteSubnet", other["subnet"], ()),
        ("ec2:AssociateRouteTable", other["route-table"], ()),
        ("ec2:DeleteRouteTable", other["route-table"], ()),
        ("ec2:DeleteVpcEndpoints", other["vpc-endpoint"], ()),
        ("ec2:CreateNetworkInterface", other["subnet"], ()),  # an interface of ours in their subnet
        ("ec2:CreateNetworkInterface", other["security-group"], ()),  # ... or behind their security group
        ("kms:PutKeyPolicy", key, ()),  # take over another team's key
        ("kms:ScheduleKeyDeletion", key, ()),
        ("kms:TagResource", key, claim),
        ("kms:CreateGrant", key, (("kms:GrantIsForAWSResource", "true"),)),
        ("kms:Decrypt", key, ()),
        ("kms:CreateAlias", key, ()),
    ]]


def stack_key_grant_to_anyone(account: Account, project: str, key: str) -> Permission:
    """A grant on the project's own key that no AWS service asked for: a grant to any principal."""
    return Permission("kms:CreateGrant", key, (("aws:RequestedRegion", account.region),
                                                 ("aws:ResourceTag/Project", project)))
