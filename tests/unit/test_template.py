"""Guards on template.yaml: least privilege, names from the stack, the bucket's protections, and
that the template, the functions/ folders, the handlers' environment, the workflow's
substitutions and the CLI's stack parameter agree."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode.cfn_yaml import load

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = load(str(ROOT / "template.yaml"))
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
FUNCTIONS = {n: r for n, r in RESOURCES.items() if r["Type"] == "AWS::Serverless::Function"}
STATE_MACHINE_NAME = {"Fn::Sub": "${AWS::StackName}-retrain-and-rollout"}
# Actions AWS documents without resource-level permissions: only these may use Resource "*".
STAR_ALLOWED = {
    "ecr:GetAuthorizationToken",
    "cloudwatch:PutMetricData",
    "cloudwatch:GetMetricData",
    "states:SendTaskFailure",
    "states:SendTaskSuccess",
    "states:SendTaskHeartbeat",
    # Step Functions logging: "these actions do not support resource-level permissions" (AWS docs).
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
}
# What `modelops` reads from /modelops/<stack>/stack (see the StackConfigParameter resource).
STACK_CONFIG_KEYS = {
    "stack_name",
    "region",
    "bucket",
    "table",
    "state_machine_arn",
    "start_function_arn",
    "topic_arn",
    "schedule_group",
    "scheduler_role_arn",
    "repository_uri",
    "repository_name",
    "codebuild_project",
    "drift_function_arn",
    "training_repository_uri",
    "training_repository_name",
    "training_image_parameter",
    "cluster_name",
    "alarm_prefix",
    "metric_namespace",
    "sagemaker_role_arn",
}


def _statements() -> list[tuple[str, dict[str, Any]]]:
    """Every Allow/Deny statement in the template's IAM policies, with its resource's logical ID."""
    found = []
    for name, resource in RESOURCES.items():
        if resource["Type"] == "AWS::S3::BucketPolicy":
            continue  # a Deny-only TLS policy, checked on its own below
        policies = resource.get("Properties", {}).get("Policies", [])
        docs = [p["PolicyDocument"] for p in policies if isinstance(p, dict) and "PolicyDocument" in p]
        docs += [p for p in policies if isinstance(p, dict) and "Statement" in p]
        for doc in docs:
            found += [(name, s) for s in doc["Statement"]]
    return found


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _required_env(path: Path, class_name: str) -> set[str]:
    """Fields of `class_name` in `path` that have no default (the handler fails without them)."""
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            return {
                stmt.target.id
                for stmt in node.body
                if isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and stmt.value is None
            }
    return set()


def _folder(function: dict[str, Any]) -> str:
    return str(function["Properties"]["CodeUri"]).strip("/").split("/")[-1]


def test_no_wildcard_actions() -> None:
    # Given every IAM statement in the template
    statements = _statements()
    # Then none grants a wildcard or service-wide action
    assert statements
    for name, statement in statements:
        for action in _as_list(statement["Action"]):
            assert "*" not in action, f"{name}: wildcard action {action}"


def test_resource_star_only_where_aws_has_no_resource_level_permissions() -> None:
    # Given the statements whose Resource is "*"
    starred = [(n, s) for n, s in _statements() if "*" in _as_list(s.get("Resource"))]
    # Then each only grants actions AWS cannot scope to a resource
    for name, statement in starred:
        extra = set(_as_list(statement["Action"])) - STAR_ALLOWED
        assert not extra, f"{name}: {extra} on Resource '*'"


def test_pass_role_only_to_sagemaker_for_its_role() -> None:
    # Given the statements that allow iam:PassRole
    passes = [(n, s) for n, s in _statements() if "iam:PassRole" in _as_list(s["Action"])]
    # Then the workflow alone passes the SageMaker execution role, and only to SageMaker
    assert [n for n, _ in passes] == ["RetrainStateMachine"]
    for name, statement in passes:
        assert statement["Resource"] == {"Fn::GetAtt": ["SageMakerExecutionRole", "Arn"]}, name
        assert statement["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}


def test_bucket_is_versioned_encrypted_private_tls_only_and_notifies_eventbridge() -> None:
    # Given the pipeline bucket and its policy
    props = RESOURCES["PipelineBucket"]["Properties"]
    policy = RESOURCES["PipelineBucketPolicy"]["Properties"]
    # Then it keeps versions, encrypts, blocks public access and sends events to EventBridge
    assert props["VersioningConfiguration"]["Status"] == "Enabled"
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert set(props["PublicAccessBlockConfiguration"]) == {
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    }
    assert all(v is True for v in props["PublicAccessBlockConfiguration"].values())
    assert props["NotificationConfiguration"]["EventBridgeConfiguration"]["EventBridgeEnabled"] is True
    # And the policy denies plain HTTP on the bucket and on every object in it
    assert policy["Bucket"] == {"Ref": "PipelineBucket"}
    deny = policy["PolicyDocument"]["Statement"][0]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert deny["Resource"] == [
        {"Fn::GetAtt": ["PipelineBucket", "Arn"]},
        {"Fn::Sub": "${PipelineBucket.Arn}/*"},
    ]


def test_every_function_folder_is_deployed_once() -> None:
    # Given the function resources and the functions/ folders that hold a handler
    uris = [_folder(r) for r in FUNCTIONS.values()]
    folders = sorted(p.name for p in (ROOT / "functions").iterdir() if (p / "app.py").exists())
    # Then each folder is deployed by exactly one function, and no function points elsewhere
    assert sorted(uris) == folders
    assert all(r["Properties"]["Handler"] == "app.handler" for r in FUNCTIONS.values())


def test_every_function_gets_the_environment_its_handler_requires() -> None:
    # Given the variables every handler needs (BaseEnv) and those its own Env model declares
    base = _required_env(ROOT / "layers/modelops/modelops/handler_kit.py", "BaseEnv")
    assert base, "BaseEnv not found in the layer's handler_kit.py"
    shared = set(TEMPLATE["Globals"]["Function"]["Environment"]["Variables"])
    for name, function in FUNCTIONS.items():
        needed = base | _required_env(ROOT / "functions" / _folder(function) / "app.py", "Env")
        # When the template's global and per-function variables are combined
        own = set(function["Properties"].get("Environment", {}).get("Variables", {}))
        # Then nothing the handler requires is missing
        assert not needed - (shared | own), f"{name} lacks {sorted(needed - shared - own)}"


def test_every_function_logs_to_its_own_log_group_with_retention() -> None:
    for name, function in FUNCTIONS.items():
        # Given the log group the function is configured to write to
        ref = function["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        group = RESOURCES[ref]
        # Then it is the /aws/lambda/<function name> group, with the stack's retention
        assert group["Type"] == "AWS::Logs::LogGroup", name
        expected = "/aws/lambda/" + function["Properties"]["FunctionName"]["Fn::Sub"]
        assert group["Properties"]["LogGroupName"] == {"Fn::Sub": expected}, name
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, name


def test_definition_substitutions_match_the_workflow() -> None:
    # Given the ${Key} placeholders in the workflow and the template's substitutions
    asl = ROOT / "statemachines" / "retrain_and_rollout.asl.json"
    if not asl.exists():
        pytest.skip(f"{asl} is not written yet")
    used = set(re.findall(r"\$\{(\w+)\}", asl.read_text()))
    subs = set(RESOURCES["RetrainStateMachine"]["Properties"]["DefinitionSubstitutions"])
    # Then every placeholder is substituted and no substitution is unused
    assert used == subs, f"missing in template: {used - subs}; unused: {subs - used}"


def test_functions_that_start_runs_name_the_state_machine_the_template_creates() -> None:
    # Given the state machine's name (the ARN is built by hand to avoid a dependency cycle)
    machine = RESOURCES["RetrainStateMachine"]["Properties"]
    assert machine["Name"] == STATE_MACHINE_NAME
    arn = {
        "Fn::Sub": "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:stateMachine:"
        + STATE_MACHINE_NAME["Fn::Sub"]
    }
    for name in ("StartPipelineFunction", "RunStateFunction"):
        props = RESOURCES[name]["Properties"]
        # Then the function is told that ARN and may start executions of it, and nothing else
        assert props["Environment"]["Variables"]["STATE_MACHINE_ARN"] == arn, name
        starts = [
            s for s in props["Policies"][0]["Statement"] if "states:StartExecution" in _as_list(s["Action"])
        ]
        assert [s["Resource"] for s in starts] == [arn], name


def test_event_rules_trigger_on_this_stacks_data_and_alarms_only() -> None:
    # Given the EventBridge rules SAM creates from the functions' events
    data = FUNCTIONS["StartPipelineFunction"]["Properties"]["Events"]["DataArrived"]
    alarm = FUNCTIONS["OnAlarmFunction"]["Properties"]["Events"]["AlarmStateChange"]
    # Then new objects under incoming/ in the pipeline bucket start a run
    assert data["Type"] == "EventBridgeRule"
    assert data["Properties"]["Pattern"] == {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {
            "bucket": {"name": [{"Ref": "PipelineBucket"}]},
            "object": {"key": [{"prefix": "incoming/"}]},
        },
    }
    # And only alarms named with this stack's prefix reach on_alarm
    assert alarm["Type"] == "EventBridgeRule"
    assert alarm["Properties"]["Pattern"] == {
        "source": ["aws.cloudwatch"],
        "detail-type": ["CloudWatch Alarm State Change"],
        "detail": {"alarmName": [{"prefix": {"Fn::Sub": "${AWS::StackName}-"}}]},
    }


def test_stack_parameter_is_json_with_every_key_the_cli_reads() -> None:
    # Given the SSM parameter the CLI reads to find the stack's resources
    props = RESOURCES["StackConfigParameter"]["Properties"]
    body, variables = props["Value"]["Fn::Sub"]
    # When every ${...} is replaced by a value, as CloudFormation does
    placeholders = re.findall(r"\$\{([^}]+)\}", body)
    document = json.loads(re.sub(r"\$\{[^}]+\}", "value", body))
    # Then it is a JSON object with exactly the documented keys
    assert set(document) == STACK_CONFIG_KEYS
    assert props["Name"] == {"Fn::Sub": "/modelops/${AWS::StackName}/stack"}
    # And each placeholder names a parameter, resource, pseudo parameter or local variable
    known = set(TEMPLATE["Parameters"]) | set(RESOURCES) | set(variables)
    for placeholder in placeholders:
        assert placeholder.startswith("AWS::") or placeholder.split(".")[0] in known, placeholder


@pytest.mark.parametrize(
    "prop",
    [
        "FunctionName",
        "Name",
        "RepositoryName",
        "LogGroupName",
        "LayerName",
        "TableName",
        "BucketName",
        "TopicName",
        "RoleName",
        "StateMachineName",
        "RuleName",
    ],
)
def test_names_derive_from_the_stack(prop: str) -> None:
    for name, resource in RESOURCES.items():
        # Given a naming property set on a resource
        value = resource.get("Properties", {}).get(prop)
        if value is None:
            continue
        # Then it is built from the stack name, so two stacks never collide
        assert "AWS::StackName" in json.dumps(value), f"{name}.{prop} is hard-coded: {value}"


def test_samconfig_has_no_account_specific_values() -> None:
    # Given the committed deploy configuration
    text = (ROOT / "samconfig.toml").read_text()
    active = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    # Then it names no account, ARN or region, and deploys with IAM capability only
    assert not re.search(r"\b\d{12}\b", text)
    assert "arn:aws" not in text
    assert "region" not in active
    assert 'capabilities = "CAPABILITY_IAM"' in active


def test_an_event_in_the_failure_queue_alarms_to_the_topic_outside_the_model_alarm_prefix() -> None:
    alarm = RESOURCES["AsyncFailureQueueAlarm"]["Properties"]
    # The first undelivered event (one visible message) alarms within a minute
    assert alarm["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["AsyncFailureQueue", "QueueName"]}}
    ]
    assert (alarm["MetricName"], alarm["Statistic"], alarm["Period"]) == (
        "ApproximateNumberOfMessagesVisible",
        "Maximum",
        60,
    )
    assert (alarm["ComparisonOperator"], alarm["Threshold"], alarm["EvaluationPeriods"]) == (
        "GreaterThanThreshold",
        0,
        1,
    )
    assert alarm["AlarmActions"] == [{"Ref": "NotificationTopic"}]
    # and its name is not "<stack>-...": the alarm-state-change rule hands those to on_alarm as model alarms
    assert not alarm["AlarmName"]["Fn::Sub"].startswith("${AWS::StackName}-")
