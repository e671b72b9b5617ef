"""Commands for a version's life (approve, reject, promote, abort) against the real workflow in moto's
interpreter with the real handlers: each command through the `modelops` CLI itself."""

from __future__ import annotations

import json
import time

import boto3
import pytest

from modelops_cli.main import main
from tests.integration.workflow.conftest import OLD
from tests.integration.workflow.harness import BUCKET, STACK, TABLE
from tests.integration.workflow.test_workflow import FAST, package_status, run

CALLER = "arn:aws:sts::123456789012:user/moto"  # moto's GetCallerIdentity
APPROVAL = {"approval__required": True, "approval__timeout_seconds": 300}


@pytest.fixture
def cli(harness):
    """The stack document the CLI finds its table through (as `sam deploy` writes it)."""
    info = {
        "stack_name": STACK,
        "table": TABLE,
        "bucket": BUCKET,
        "state_machine_arn": harness.state_machine_arn,
        "start_function_arn": "arn:aws:lambda:us-east-1:123456789012:function:modelops-start_pipeline",
        "schedule_group": STACK,
        "scheduler_role_arn": harness.role_arn,
        "alarm_prefix": f"{STACK}-",
        "metric_namespace": "ModelOps",
    }
    boto3.client("ssm", region_name="us-east-1").put_parameter(
        Name=f"/modelops/{STACK}/stack", Type="String", Value=json.dumps(info)
    )

    def modelops(*argv: str) -> int:
        return main(list(argv))

    return modelops


def wait_for_phase(harness, phase: str, timeout: float = 30) -> dict:
    """The rollout once its `phase` is recorded (with the wait's task token, for a waiting phase)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rollout = harness.store().get_rollout("churn")
        if rollout and rollout.get("phase") == phase and (phase == "canary" or rollout.get("task_token")):
            return rollout
        time.sleep(0.05)
    raise TimeoutError(f"rollout never reached phase {phase}: {harness.store().get_rollout('churn')}")


def stable_image(kube) -> str:
    return str(kube.deployments["churn-stable"]["spec"]["template"]["spec"]["containers"][0]["image"])


def registry_package(record: dict) -> dict:
    sagemaker = boto3.client("sagemaker", region_name="us-east-1")
    group = sagemaker.list_model_packages(ModelPackageGroupName="modelops-churn")["ModelPackageSummaryList"]
    (arn,) = [p["ModelPackageArn"] for p in group if str(p["ModelPackageVersion"]) == str(record["version"])]
    return dict(sagemaker.describe_model_package(ModelPackageName=arn))


def test_an_approved_version_is_promoted_and_the_record_and_registry_say_who_approved(
    harness, kube, cli, capsys
):
    # Given a model whose versions need a person's approval
    arn = run(harness, **APPROVAL)
    wait_for_phase(harness, "approval")
    # Then the notification says exactly what to run, and nothing is promoted yet
    message = " ".join(harness.notifications())
    assert "modelops --stack modelops approve --model churn" in message
    assert "modelops --stack modelops reject --model churn" in message
    assert "Promote" not in harness.states(arn) and stable_image(kube) == OLD
    # When a person approves it
    assert cli("approve", "--model", "churn", "--reason", "looks good") == 0
    assert f"approved run {arn.split(':')[-1]} of churn as {CALLER}" in capsys.readouterr().out
    result = harness.wait(arn)
    # Then it is promoted, and the run's record and the model registry keep who approved and when
    assert result["status"] == "SUCCEEDED", harness.states(arn)
    assert stable_image(kube).startswith(harness.repo_uri + "@sha256:")
    record = harness.store().query_docs("churn", "HISTORY#")[0]
    assert record["status"] == "promoted"
    assert record["approval"]["approved_by"] == CALLER and record["approval"]["via"] == "approve"
    assert record["approval"]["reason"] == "looks good" and record["approval"]["approved_at"]
    package = registry_package(record)
    assert package["ModelApprovalStatus"] == "Approved"
    assert f"approved by {CALLER} at {record['approval']['approved_at']}" in package["ApprovalDescription"]
    metadata = package["CustomerMetadataProperties"]
    assert metadata["approved_by"] == CALLER and metadata["run_id"] == record["run_id"]
    assert metadata["serving_image"] == stable_image(kube)


def test_an_approval_that_never_comes_rolls_back_when_it_times_out(harness, kube):
    # Given a model whose approval wait is 1 s
    arn = run(harness, approval__required=True, approval__timeout_seconds=1)
    result = harness.wait(arn)
    # Then the version is rolled back, the stable untouched, and the record says the approval timed out
    assert result["status"] == "FAILED" and result["error"] == "ApprovalTimeoutError"
    states = harness.states(arn)
    assert "AwaitApproval" in states and "ApprovalTimedOut" in states and "Promote" not in states
    assert stable_image(kube) == OLD and kube.deployments["churn-canary"]["spec"]["replicas"] == 0
    record = harness.store().query_docs("churn", "HISTORY#")[0]
    assert record["status"] == "rolled_back" and record["error"] == "ApprovalTimeoutError"
    assert "approval.timeout_seconds=1" in record["cause"]
    assert package_status(record) == "Rejected"
    assert harness.store().lock_holder("churn") is None and harness.store().get_rollout("churn") is None


def test_a_rejected_version_is_rolled_back_and_the_record_says_who_rejected(harness, kube, cli):
    arn = run(harness, **APPROVAL)
    wait_for_phase(harness, "approval")
    # When a person rejects it
    assert cli("reject", "--model", "churn", "--reason", "bad offline slice") == 0
    result = harness.wait(arn)
    # Then it is rolled back and the record and registry say who rejected it, and why
    assert result["status"] == "FAILED" and result["error"] == "ApprovalRejectedError"
    assert stable_image(kube) == OLD and kube.deployments["churn-canary"]["spec"]["replicas"] == 0
    record = harness.store().query_docs("churn", "HISTORY#")[0]
    assert record["status"] == "rolled_back"
    assert record["cause"].startswith(f"rejected by {CALLER} at ") and "bad offline slice" in record["cause"]
    package = registry_package(record)
    assert package["ModelApprovalStatus"] == "Rejected"
    assert f"rejected by {CALLER}" in package["ApprovalDescription"]


def test_promote_during_the_bake_skips_the_rest_of_it_and_the_analysis(harness, kube, cli):
    # Given a long bake (and approval required, which promote counts as)
    arn = run(harness, canary__bake_seconds=300, **APPROVAL)
    wait_for_phase(harness, "bake")
    # When a person promotes now
    assert cli("promote", "--model", "churn") == 0
    result = harness.wait(arn)
    # Then the version is promoted without analysis or approval wait, and the record says who
    assert result["status"] == "SUCCEEDED", harness.states(arn)
    states = harness.states(arn)
    assert "AnalyzeCanary" not in states and "AwaitApproval" not in states and "Promote" in states
    assert stable_image(kube).startswith(harness.repo_uri + "@sha256:")
    record = harness.store().query_docs("churn", "HISTORY#")[0]
    assert record["approval"]["via"] == "promote" and record["approval"]["phase"] == "bake"


@pytest.mark.parametrize(
    ("phase", "overrides"),
    [
        ("canary", {}),
        ("bake", {"canary__bake_seconds": 300}),
        ("approval", APPROVAL),
        ("watch", {"canary__watch_seconds": 300}),
    ],
)
def test_abort_rolls_back_in_each_phase(harness, kube, cli, phase, overrides):
    if phase == "canary":
        kube.auto_settle = False  # the canary never becomes ready: the run stays in that phase
    arn = run(harness, **{**FAST, **overrides})
    wait_for_phase(harness, phase)
    # When a person aborts
    assert cli("abort", "--model", "churn", "--reason", f"abort in {phase}") == 0
    kube.auto_settle = True
    result = harness.wait(arn)
    # Then the run rolls back: the stable serves what it served before, the canary is at 0
    assert result["status"] == "FAILED" and result["error"] == "AbortRequestedError", harness.states(arn)
    assert "Rollback" in harness.states(arn)
    assert stable_image(kube) == OLD and kube.deployments["churn-canary"]["spec"]["replicas"] == 0
    record = harness.store().query_docs("churn", "HISTORY#")[0]
    assert record["status"] == "rolled_back"
    assert record["cause"].startswith(f"aborted by {CALLER} at ") and f"abort in {phase}" in record["cause"]
    assert harness.store().lock_holder("churn") is None and harness.store().get_rollout("churn") is None


def test_every_command_refuses_after_the_run_ended_and_changes_nothing(harness, kube, cli, capsys):
    arn = run(harness)
    assert harness.wait(arn)["status"] == "SUCCEEDED"
    history = harness.store().query_docs("churn", "HISTORY#")
    for command in ("approve", "reject", "promote", "abort", "rollback"):
        assert cli(command, "--model", "churn") == 1
        assert "no rollout of churn in progress" in capsys.readouterr().err
    assert harness.store().query_docs("churn", "HISTORY#") == history
