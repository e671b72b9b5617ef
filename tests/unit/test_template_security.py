"""Security properties of template.yaml as CloudFormation receives it (after the SAM transform, so
the roles SAM generates, its policy templates and event permissions are included): no wildcard
actions and no unscoped iam:PassRole in any IAM statement, the buckets private and TLS-only, data
encrypted at rest, and no secret in a Lambda environment. Each check is a function returning the
violations it finds, and each is shown to catch a violation seeded into a copy of the template."""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from modelops_local.stack import load_template, translate

ROOT = Path(__file__).resolve().parents[2]
# What `sam deploy --guided` asks for: no image (the stack builds its own: `modelops bootstrap`).
PARAMETERS = {"ClusterName": "demo"}
# AWS managed policies SAM attaches to the roles it generates, and why each is acceptable: their
# statements are not in the template, so they are named here instead of walked.
MANAGED_POLICIES = {
    # logs:CreateLogGroup/CreateLogStream/PutLogEvents: every function's own logs
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    # xray:PutTraceSegments/PutTelemetryRecords/GetSampling*: Tracing: Active (functions, workflow)
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
}
# Resource types whose policy documents hold IAM statements.
POLICY_DOCUMENTS: dict[str, tuple[str, ...]] = {
    "AWS::IAM::Policy": ("PolicyDocument",),
    "AWS::IAM::ManagedPolicy": ("PolicyDocument",),
    "AWS::S3::BucketPolicy": ("PolicyDocument",),
    "AWS::SQS::QueuePolicy": ("PolicyDocument",),
    "AWS::SNS::TopicPolicy": ("PolicyDocument",),
}
# A variable name that says it carries a secret, and values that look like one.
SECRET_NAME = re.compile(
    r"(^|_)(SECRET|PASSWORD|PASSWD|PWD|TOKEN|CREDENTIALS?|PRIVATE|(API|ACCESS|SECRET|PRIVATE)_?KEY|KEY)(_|$)"
)
SECRET_VALUES = [
    re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),  # an AWS access key id
    re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])"),  # an AWS secret access key
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"\b(ghp|gho|github_pat|xox[abp]|sk_live|glpat)[-_][A-Za-z0-9_-]{10,}"),
    re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@"),  # credentials in a URL
    re.compile(r"(?i)(password|secret|token)\s*[=:]"),
]


@functools.cache
def _translated() -> dict[str, Any]:
    return translate(load_template(ROOT / "template.yaml"), PARAMETERS, ROOT, "us-east-1")


@pytest.fixture
def template() -> dict[str, Any]:
    """The SAM-translated template, a fresh copy per test (tests may seed violations into it)."""
    return copy.deepcopy(_translated())


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# ------------------------------------------------------------------------------------------ IAM
def iam_statements(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every statement of every policy document in the template, with where it is: roles' inline
    policies and trust policies, IAM policies, and resource policies (bucket, queue, topic)."""
    for logical_id, resource in template["Resources"].items():
        kind, props = resource["Type"], resource.get("Properties") or {}
        documents: list[tuple[str, Any]] = []
        if kind == "AWS::IAM::Role":
            documents.append((f"{logical_id}.AssumeRolePolicyDocument", props["AssumeRolePolicyDocument"]))
            for index, policy in enumerate(props.get("Policies") or []):
                name = policy.get("PolicyName", index)
                documents.append((f"{logical_id}.Policies[{name}]", policy["PolicyDocument"]))
        for key in POLICY_DOCUMENTS.get(kind, ()):
            documents.append((f"{logical_id}.{key}", props[key]))
        for where, document in documents:
            for index, statement in enumerate(_as_list(document["Statement"])):
                yield f"{where}.Statement[{statement.get('Sid', index)}]", statement


def iam_violations(template: dict[str, Any]) -> list[str]:
    """Allow statements granting `*` or `service:*` (or anything through NotAction), iam:PassRole
    on `*` or without an iam:PassedToService condition, and managed policies nobody vetted."""
    found = []
    for where, statement in iam_statements(template):
        if statement.get("Effect") != "Allow":
            continue  # a Deny with a wildcard (the buckets' TLS-only policy) takes rights away
        if "NotAction" in statement:
            found.append(f"{where}: Allow with NotAction grants every other action")
        actions = _as_list(statement.get("Action", []))
        for action in actions:
            if not isinstance(action, str):
                found.append(f"{where}: action {action!r} cannot be checked (not a literal)")
            elif action == "*" or action.endswith(":*"):
                found.append(f"{where}: wildcard action {action}")
        if any(isinstance(a, str) and a.lower() in ("iam:passrole", "iam:*", "*") for a in actions):
            resources = _as_list(statement.get("Resource", []))
            if "*" in resources or "NotResource" in statement:
                found.append(f"{where}: iam:PassRole on every role")
            if not any(
                "iam:PassedToService" in (c or {}) for c in (statement.get("Condition") or {}).values()
            ):
                found.append(f"{where}: iam:PassRole without an iam:PassedToService condition")
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] == "AWS::IAM::Role":
            for arn in resource["Properties"].get("ManagedPolicyArns") or []:
                if arn not in MANAGED_POLICIES:
                    found.append(f"{logical_id}: managed policy {arn} is not one of the vetted ones")
    return found


def test_every_iam_statement_is_walked(template):
    # Given the translated template, Then the walk reaches SAM's generated roles, its expanded
    # policy templates and the resource policies, not only the roles written by hand
    where = [w for w, _ in iam_statements(template)]
    assert any(w.startswith("RolloutFunctionRole.Policies") for w in where)
    assert any(
        w.startswith("RetrainStateMachineRole.Policies[RetrainStateMachineRolePolicy1]") for w in where
    )
    assert any(w.startswith("CodeBuildRole.AssumeRolePolicyDocument") for w in where)
    assert any(w.startswith("PipelineBucketPolicy.PolicyDocument") for w in where)
    assert any(w.startswith("AsyncFailureQueuePolicy.PolicyDocument") for w in where)
    roles = [n for n, r in template["Resources"].items() if r["Type"] == "AWS::IAM::Role"]
    assert all(any(w.startswith(f"{role}.") for w in where) for role in roles)


def test_no_wildcard_action_and_no_unscoped_pass_role(template):
    assert iam_violations(template) == []


def test_the_only_pass_role_is_scoped_to_the_sagemaker_role_and_service(template):
    passes = [
        (where, s) for where, s in iam_statements(template) if "iam:PassRole" in _as_list(s.get("Action"))
    ]
    assert [where.split(".")[0] for where, _ in passes] == ["RetrainStateMachineRole"]
    for _, statement in passes:
        assert statement["Resource"] == {"Fn::GetAtt": ["SageMakerExecutionRole", "Arn"]}
        assert statement["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}


def _seed(template: dict[str, Any], statement: dict[str, Any]) -> dict[str, Any]:
    role = template["Resources"]["RolloutFunctionRole"]["Properties"]
    role["Policies"].append({"PolicyName": "Seeded", "PolicyDocument": {"Statement": [statement]}})
    return template


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ({"Effect": "Allow", "Action": "*", "Resource": "*"}, "wildcard action *"),
        ({"Effect": "Allow", "Action": ["s3:GetObject", "s3:*"], "Resource": "*"}, "wildcard action s3:*"),
        ({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}, "Allow with NotAction"),
        ({"Effect": "Allow", "Action": {"Ref": "Actions"}, "Resource": "*"}, "cannot be checked"),
        (
            {
                "Effect": "Allow",
                "Action": "iam:PassRole",
                "Resource": "*",
                "Condition": {"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}},
            },
            "iam:PassRole on every role",
        ),
        (
            {
                "Effect": "Allow",
                "Action": "iam:PassRole",
                "Resource": {"Fn::GetAtt": ["CodeBuildRole", "Arn"]},
            },
            "iam:PassRole without an iam:PassedToService condition",
        ),
    ],
)
def test_the_walker_flags_a_seeded_violation(template, statement, expected):
    # When a bad statement is added to a SAM-generated role, Then the walker names it and where it is
    found = iam_violations(_seed(template, statement))
    assert [f for f in found if expected in f and f.startswith("RolloutFunctionRole.Policies[Seeded]")]


def test_the_walker_flags_an_unvetted_managed_policy(template):
    role = template["Resources"]["RunStateFunctionRole"]["Properties"]
    role["ManagedPolicyArns"].append("arn:aws:iam::aws:policy/AdministratorAccess")
    assert iam_violations(template) == [
        "RunStateFunctionRole: managed policy arn:aws:iam::aws:policy/AdministratorAccess is not one of the vetted ones"
    ]


def test_a_deny_with_a_wildcard_is_not_a_violation(template):
    # The buckets' TLS-only statement denies s3:* to everyone: it removes rights, never grants them
    assert not iam_violations(_seed(template, {"Effect": "Deny", "Action": "*", "Resource": "*"}))


# ------------------------------------------------------------------------------------------ S3
def bucket_violations(template: dict[str, Any]) -> list[str]:
    """Buckets without all four public-access blocks, without a policy denying non-TLS requests on
    the bucket and its objects, or not encrypted with KMS by default (they hold data and models)."""
    resources = template["Resources"]
    found = []
    for name, bucket in resources.items():
        if bucket["Type"] != "AWS::S3::Bucket":
            continue
        props = bucket.get("Properties") or {}
        block = props.get("PublicAccessBlockConfiguration") or {}
        for key in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"):
            if block.get(key) is not True:
                found.append(f"{name}: PublicAccessBlockConfiguration.{key} is not true")
        rules = (props.get("BucketEncryption") or {}).get("ServerSideEncryptionConfiguration") or [{}]
        for rule in rules:
            algorithm = (rule.get("ServerSideEncryptionByDefault") or {}).get("SSEAlgorithm")
            if algorithm not in ("aws:kms", "aws:kms:dsse"):
                found.append(f"{name}: default encryption is {algorithm!r}, not KMS")
        if not any(
            _denies_plain_http(statement, name) for statement in _bucket_policy_statements(resources, name)
        ):
            found.append(f"{name}: no bucket policy statement denies aws:SecureTransport=false")
    return found


def _bucket_policy_statements(resources: dict[str, Any], bucket: str) -> Iterator[dict[str, Any]]:
    for resource in resources.values():
        props = resource.get("Properties") or {}
        if resource["Type"] == "AWS::S3::BucketPolicy" and props.get("Bucket") == {"Ref": bucket}:
            yield from _as_list(props["PolicyDocument"]["Statement"])


def _denies_plain_http(statement: dict[str, Any], bucket: str) -> bool:
    return (
        statement.get("Effect") == "Deny"
        and statement.get("Principal") in ("*", {"AWS": "*"})
        and set(_as_list(statement.get("Action"))) & {"*", "s3:*"} != set()
        and statement.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
        and {"Fn::GetAtt": [bucket, "Arn"]} in _as_list(statement.get("Resource"))
        and {"Fn::Sub": f"${{{bucket}.Arn}}/*"} in _as_list(statement.get("Resource"))
    )


def test_buckets_are_private_tls_only_and_kms_encrypted(template):
    assert [n for n, r in template["Resources"].items() if r["Type"] == "AWS::S3::Bucket"] == [
        "PipelineBucket"
    ]
    assert bucket_violations(template) == []


def _pipeline_bucket(template: dict[str, Any]) -> dict[str, Any]:
    return template["Resources"]["PipelineBucket"]["Properties"]


def _policy_statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    return template["Resources"]["PipelineBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]


@pytest.mark.parametrize(
    ("seed", "expected"),
    [
        (
            lambda t: _pipeline_bucket(t)["PublicAccessBlockConfiguration"].update(
                RestrictPublicBuckets=False
            ),
            "PipelineBucket: PublicAccessBlockConfiguration.RestrictPublicBuckets is not true",
        ),
        (
            lambda t: _pipeline_bucket(t).pop("PublicAccessBlockConfiguration"),
            "PipelineBucket: PublicAccessBlockConfiguration.BlockPublicAcls is not true",
        ),
        (
            lambda t: _pipeline_bucket(t)["BucketEncryption"]["ServerSideEncryptionConfiguration"][0][
                "ServerSideEncryptionByDefault"
            ].update(SSEAlgorithm="AES256"),
            "PipelineBucket: default encryption is 'AES256', not KMS",
        ),
        (lambda t: _policy_statements(t).clear(), "PipelineBucket: no bucket policy statement denies"),
        (
            lambda t: _policy_statements(t)[0].update(Resource=[{"Fn::GetAtt": ["PipelineBucket", "Arn"]}]),
            "PipelineBucket: no bucket policy statement denies",  # objects left reachable over HTTP
        ),
        (
            lambda t: _policy_statements(t)[0].update(Effect="Allow"),
            "PipelineBucket: no bucket policy statement denies",
        ),
    ],
)
def test_the_bucket_check_catches_a_seeded_violation(template, seed: Callable[[dict], Any], expected):
    seed(template)
    assert expected in "\n".join(bucket_violations(template))


# ------------------------------------------------------------------------------------------ at rest
def _sse_dynamodb(props: dict[str, Any]) -> bool:
    return (props.get("SSESpecification") or {}).get("SSEEnabled") is True


def _sse_sqs(props: dict[str, Any]) -> bool:
    return bool(props.get("KmsMasterKeyId")) or props.get("SqsManagedSseEnabled") is True


#: How each resource type that stores data proves encryption at rest (types that always encrypt
#: with no setting, such as CloudWatch Logs, Lambda, Step Functions and SSM String parameters, are
#: not listed; a new data store type fails test_every_data_store_type_is_covered).
ENCRYPTED: dict[str, Callable[[dict[str, Any]], bool]] = {
    "AWS::S3::Bucket": lambda p: all(
        (r.get("ServerSideEncryptionByDefault") or {}).get("SSEAlgorithm") in ("aws:kms", "aws:kms:dsse")
        for r in (p.get("BucketEncryption") or {}).get("ServerSideEncryptionConfiguration") or [{}]
    ),
    "AWS::DynamoDB::Table": _sse_dynamodb,
    "AWS::SNS::Topic": lambda p: bool(p.get("KmsMasterKeyId")),
    "AWS::SQS::Queue": _sse_sqs,
    "AWS::ECR::Repository": lambda p: (p.get("EncryptionConfiguration") or {}).get("EncryptionType") == "KMS",
}
STORES_NOTHING_OR_ALWAYS_ENCRYPTED = {
    "AWS::IAM::Role",
    "AWS::Lambda::Function",
    "AWS::Lambda::LayerVersion",
    "AWS::Lambda::Permission",
    "AWS::Lambda::EventInvokeConfig",
    "AWS::Events::Rule",
    "AWS::Scheduler::ScheduleGroup",
    "AWS::Scheduler::Schedule",  # the image clean-up's; its input is {"dry_run": false}, kept with an AWS owned key
    "AWS::S3::BucketPolicy",
    "AWS::SQS::QueuePolicy",
    "AWS::SNS::Subscription",
    "AWS::CodeBuild::Project",  # NO_ARTIFACTS; its logs go to a log group
    "AWS::Logs::LogGroup",  # CloudWatch Logs encrypts every log group at rest
    "AWS::StepFunctions::StateMachine",  # execution history encrypted by Step Functions
    "AWS::SSM::Parameter",  # a String of resource names, no secret
    "AWS::CloudWatch::Alarm",  # a definition; no data of ours
}


def unencrypted(template: dict[str, Any]) -> list[str]:
    """Data stores whose encryption at rest is not configured as ENCRYPTED requires."""
    found = []
    for name, resource in template["Resources"].items():
        check = ENCRYPTED.get(resource["Type"])
        if check is not None and not check(resource.get("Properties") or {}):
            found.append(f"{name} ({resource['Type']}) is not encrypted at rest as required")
    return found


def test_every_data_store_is_encrypted_at_rest(template):
    assert unencrypted(template) == []
    # And the bucket's KMS default is what SAM and CloudFormation receive
    rule = _pipeline_bucket(template)["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert rule == {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}, "BucketKeyEnabled": True}


def test_every_data_store_type_is_covered(template):
    types = {r["Type"] for r in template["Resources"].values()}
    assert types - set(ENCRYPTED) - STORES_NOTHING_OR_ALWAYS_ENCRYPTED == set()


def test_the_workflows_logs_carry_no_execution_data(template):
    # CloudWatch Logs has no customer key here, so what the logs hold is kept small instead
    logging = template["Resources"]["RetrainStateMachine"]["Properties"]["LoggingConfiguration"]
    assert logging["IncludeExecutionData"] is False and logging["Level"] == "ERROR"


@pytest.mark.parametrize(
    ("resource", "seed"),
    [
        ("NotificationTopic", lambda p: p.pop("KmsMasterKeyId")),
        ("AsyncFailureQueue", lambda p: p.pop("SqsManagedSseEnabled")),
        ("StateTable", lambda p: p["SSESpecification"].update(SSEEnabled=False)),
        ("ServingImageRepository", lambda p: p.pop("EncryptionConfiguration")),
        (
            "PipelineBucket",
            lambda p: p["BucketEncryption"]["ServerSideEncryptionConfiguration"][0][
                "ServerSideEncryptionByDefault"
            ].update(SSEAlgorithm="AES256"),
        ),
    ],
)
def test_the_encryption_check_catches_a_seeded_violation(template, resource, seed):
    seed(template["Resources"][resource]["Properties"])
    assert [f.split(" ")[0] for f in unencrypted(template)] == [resource]


# ------------------------------------------------------------------------------------------ Lambda
def secret_violations(template: dict[str, Any]) -> list[str]:
    """Lambda environment variables whose name says secret or whose value looks like a credential,
    or that take a NoEcho parameter (a secret passed in at deploy time)."""
    no_echo = {
        name
        for name, spec in (template.get("Parameters") or {}).items()
        if str(spec.get("NoEcho", "false")).lower() == "true"
    }
    found = []
    for name, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        variables = ((resource.get("Properties") or {}).get("Environment") or {}).get("Variables") or {}
        for key, value in variables.items():
            if SECRET_NAME.search(key.upper()):
                found.append(f"{name}: variable {key} is named like a secret")
            for text in _strings(value):
                if any(pattern.search(text) for pattern in SECRET_VALUES):
                    found.append(f"{name}: variable {key} has a value that looks like a credential")
            if _refs(value) & no_echo:
                found.append(
                    f"{name}: variable {key} carries the NoEcho parameter {sorted(_refs(value) & no_echo)}"
                )
    return found


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _refs(value: Any) -> set[str]:
    """Parameters and resources a value refers to (Ref, and ${Name} inside Fn::Sub)."""
    if isinstance(value, dict):
        found = {value["Ref"]} if isinstance(value.get("Ref"), str) else set()
        for key, item in value.items():
            if key == "Fn::Sub":
                body = item[0] if isinstance(item, list) else item
                found |= set(re.findall(r"\$\{([A-Za-z0-9]+)\}", str(body)))
            found |= _refs(item)
        return found
    if isinstance(value, list):
        return set().union(*(_refs(item) for item in value)) if value else set()
    return set()


def test_no_lambda_environment_carries_a_secret(template):
    functions = [r for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Function"]
    # one per folder under functions/ (the walk covers them all, whatever their number)
    assert len(functions) == len([d for d in (ROOT / "functions").iterdir() if (d / "app.py").exists()])
    # the Globals' variables reached every function in the transform
    assert all("TABLE_NAME" in f["Properties"]["Environment"]["Variables"] for f in functions)
    assert secret_violations(template) == []


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("API_KEY", "x", "named like a secret"),
        ("DB_PASSWORD", "x", "named like a secret"),
        ("GITHUB_TOKEN", "x", "named like a secret"),
        ("CLIENT_SECRET", "x", "named like a secret"),
        ("AWS_ACCESS_KEY_ID", "x", "named like a secret"),
        ("UPSTREAM", "AKIAIOSFODNN7EXAMPLE", "looks like a credential"),
        ("SIGNING", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "looks like a credential"),
        ("DATABASE_URL", "postgres://admin:hunter2@db.internal/app", "looks like a credential"),
        ("OPTIONS", {"Fn::Sub": "mode=fast;password=hunter2"}, "looks like a credential"),
        ("UPSTREAM", {"Ref": "DbPassword"}, "NoEcho parameter"),
    ],
)
def test_the_secret_check_catches_a_seeded_variable(template, variable, value, expected):
    # Given a NoEcho parameter (a secret handed over at deploy time) and a seeded variable
    template.setdefault("Parameters", {})["DbPassword"] = {"Type": "String", "NoEcho": True}
    env = template["Resources"]["RolloutFunction"]["Properties"]["Environment"]["Variables"]
    env[variable] = value
    # Then the check names the function and the variable
    assert [f for f in secret_violations(template) if f.startswith(f"RolloutFunction: variable {variable} ")]
    assert all(expected in f for f in secret_violations(template))


def test_names_that_only_contain_a_secret_word_are_not_flagged():
    # The pattern matches whole words of a variable name, not substrings
    for name in ("MONKEY_BUSINESS", "KEYSPACE_NAME", "TOKENIZER_PATH", "STACK_NAME", "IMAGE_REPOSITORY_URI"):
        assert not SECRET_NAME.search(name), name


# ------------------------------------------------------------------------------ training image
def _statements_with(template: dict[str, Any], action: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (where, statement)
        for where, statement in iam_statements(template)
        if statement.get("Effect") == "Allow" and action in _as_list(statement.get("Action", []))
    ]


def test_deploy_asks_for_nothing_but_the_cluster():
    parameters = load_template(ROOT / "template.yaml")["Parameters"]
    assert [name for name, p in parameters.items() if "Default" not in p] == ["ClusterName"]
    assert parameters["TrainingImage"]["Default"] == ""


def test_the_training_image_grants_are_scoped_to_the_stacks_own_resources(template):
    # Only ResolveRequest reads the recorded image, and only that one parameter
    readers = _statements_with(template, "ssm:GetParameter")
    assert [where.split(".")[0] for where, _ in readers] == ["ResolveRequestFunctionRole"]
    assert readers[0][1]["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/modelops/${AWS::StackName}/training-image"
    }
    assert template["Resources"]["TrainingImageParameter"]["Properties"]["Name"] == {
        "Fn::Sub": "/modelops/${AWS::StackName}/training-image"
    }
    # No function may write it: only `modelops bootstrap`, with the deployer's credentials
    assert _statements_with(template, "ssm:PutParameter") == []
    # CodeBuild pushes only to the stack's two repositories, SageMaker pulls only from them
    repositories = [
        {"Fn::GetAtt": ["ServingImageRepository", "Arn"]},
        {"Fn::GetAtt": ["TrainingImageRepository", "Arn"]},
    ]
    for action, role in (("ecr:PutImage", "CodeBuildRole"), ("ecr:BatchGetImage", "SageMakerExecutionRole")):
        statements = [st for where, st in _statements_with(template, action) if where.startswith(role + ".")]
        assert statements, (role, action)
        for statement in statements:
            resources = _as_list(statement["Resource"])
            assert (
                all(r in repositories for r in resources)
                and {"Fn::GetAtt": ["TrainingImageRepository", "Arn"]} in resources
            )


def test_the_training_repository_never_expires_a_tagged_image(template):
    import json

    props = template["Resources"]["TrainingImageRepository"]["Properties"]
    assert props["ImageTagMutability"] == "IMMUTABLE"  # a tag always names the image it was built as
    rules = json.loads(props["LifecyclePolicy"]["LifecyclePolicyText"])["rules"]
    # the recorded image is tagged (source-<sha256>), so no rule can ever select it
    assert rules and all(rule["selection"]["tagStatus"] == "untagged" for rule in rules)


def test_only_the_image_clean_up_deletes_images_and_only_in_the_serving_repository(template):
    # Given every statement that allows deleting images or listing them
    deleters = _statements_with(template, "ecr:BatchDeleteImage")
    # Then one role may delete: the clean-up's, in the serving repository only (never the training one)
    assert [where.split(".")[0] for where, _ in deleters] == ["ImageRetentionFunctionRole"]
    (statement,) = [st for _, st in deleters]
    assert _as_list(statement["Resource"]) == [{"Fn::GetAtt": ["ServingImageRepository", "Arn"]}]
    assert sorted(_as_list(statement["Action"])) == ["ecr:BatchDeleteImage", "ecr:DescribeImages"]
    # And its role otherwise only reads the state table and the cluster (and reports a failed
    # invocation to the failure queue, the EventInvokeConfig's destination)
    granted = {
        (action, json.dumps(st.get("Resource"), sort_keys=True))
        for where, st in iam_statements(template)
        if where.startswith("ImageRetentionFunctionRole.Policies")
        for action in _as_list(st["Action"])
    }
    table, queue = '{"Fn::GetAtt": ["StateTable", "Arn"]}', '{"Fn::GetAtt": ["AsyncFailureQueue", "Arn"]}'
    repository = '{"Fn::GetAtt": ["ServingImageRepository", "Arn"]}'
    cluster = json.dumps(
        {"Fn::Sub": "arn:${AWS::Partition}:eks:${AWS::Region}:${AWS::AccountId}:cluster/${ClusterName}"}
    )
    assert granted == {
        ("dynamodb:GetItem", table),
        ("dynamodb:Query", table),
        ("dynamodb:Scan", table),
        ("ecr:DescribeImages", repository),
        ("ecr:BatchDeleteImage", repository),
        ("eks:DescribeCluster", cluster),
        ("sqs:SendMessage", queue),
    }
