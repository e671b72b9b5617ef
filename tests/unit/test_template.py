"""Guards on template.yaml: least privilege, names from the stack, the bucket's protections, and
that the template, the functions/ folders and the workflow's substitutions agree."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode.cfn_yaml import load

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = load(str(ROOT / "template.yaml"))
RESOURCES = TEMPLATE["Resources"]
# Actions AWS documents without resource-level permissions: only these may use Resource "*".
STAR_ALLOWED = {
    "ecr:GetAuthorizationToken",
    "cloudwatch:PutMetricData",
    "cloudwatch:GetMetricData",
    "states:SendTaskFailure",
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
}


def _statements() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for name, resource in RESOURCES.items():
        props = resource.get("Properties", {})
        docs = [
            p["PolicyDocument"]
            for p in props.get("Policies", [])
            if isinstance(p, dict) and "PolicyDocument" in p
        ]
        docs += [p for p in props.get("Policies", []) if isinstance(p, dict) and "Statement" in p]
        if resource["Type"] == "AWS::S3::BucketPolicy":
            continue  # a Deny-only TLS policy
        for doc in docs:
            found += [(name, s) for s in doc["Statement"]]
    return found


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_no_wildcard_actions():
    for name, statement in _statements():
        for action in _as_list(statement["Action"]):
            assert "*" not in action, f"{name}: wildcard action {action}"


def test_resource_star_only_where_aws_has_no_resource_level_permissions():
    for name, statement in _statements():
        if "*" in _as_list(statement.get("Resource")):
            extra = set(_as_list(statement["Action"])) - STAR_ALLOWED
            assert not extra, f"{name}: {extra} on Resource '*'"


def test_pass_role_only_to_sagemaker_for_its_role():
    passes = [(n, s) for n, s in _statements() if "iam:PassRole" in _as_list(s["Action"])]
    assert passes, "the workflow must pass the SageMaker role"
    for name, statement in passes:
        assert statement["Resource"] == {"Fn::GetAtt": ["SageMakerExecutionRole", "Arn"]}, name
        assert statement["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}


def test_bucket_is_versioned_encrypted_private_tls_only_and_notifies_eventbridge():
    props = RESOURCES["PipelineBucket"]["Properties"]
    assert props["VersioningConfiguration"]["Status"] == "Enabled"
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert all(props["PublicAccessBlockConfiguration"].values())
    assert props["NotificationConfiguration"]["EventBridgeConfiguration"]["EventBridgeEnabled"] is True
    deny = RESOURCES["PipelineBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_every_function_folder_is_deployed_once():
    uris = [
        r["Properties"]["CodeUri"].strip("/").split("/")[-1]
        for r in RESOURCES.values()
        if r["Type"] == "AWS::Serverless::Function"
    ]
    folders = sorted(p.name for p in (ROOT / "functions").iterdir() if (p / "app.py").exists())
    assert sorted(uris) == folders


def test_definition_substitutions_match_the_workflow():
    asl = (ROOT / "statemachines" / "retrain_and_rollout.asl.json").read_text()
    used = set(re.findall(r"\$\{(\w+)\}", asl))
    subs = set(RESOURCES["RetrainStateMachine"]["Properties"]["DefinitionSubstitutions"])
    assert used == subs


@pytest.mark.parametrize(
    "prop", ["FunctionName", "Name", "RepositoryName", "LogGroupName", "LayerName", "TableName"]
)
def test_names_derive_from_the_stack(prop):
    for name, resource in RESOURCES.items():
        value = resource.get("Properties", {}).get(prop)
        if value is None or (prop == "Name" and resource["Type"] == "AWS::SNS::Topic"):
            continue
        assert "AWS::StackName" in json.dumps(value), f"{name}.{prop} is hard-coded: {value}"


def test_samconfig_has_no_account_specific_values():
    text = (ROOT / "samconfig.toml").read_text()
    assert not re.search(r"\b\d{12}\b", text)
    assert "arn:aws" not in text
