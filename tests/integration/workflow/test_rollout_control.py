"""Commands for a version's life (approve, reject, promote, abort) against the real workflow in moto's
interpreter with the real handlers: each command through the `modelops` CLI itself."""

from __future__ import annotations

import json
import time

import boto3
import pytest
from modelops.canary import WAIT_PHASES

from modelops_cli.main import main
from tests.integration.workflow.conftest import OLD
from tests.integration.workflow.harness import BUCKET, STACK, TABLE
from tests.integration.workflow.test_workflow import CSV, FAST, KEY, package_status, run

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
        if (
            rollout
            and rollout.get("phase") == phase
            and (phase in WAIT_PHASES) <= bool(rollout.get("task_token"))
        ):
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
        ("promoting", {}),
        ("watch", {"canary__watch_seconds": 300}),
    ],
)
def test_abort_rolls_back_in_each_phase(harness, kube, cli, monkeypatch, phase, overrides):
    held = {"canary": "churn-canary", "promoting": "churn-stable"}.get(phase)
    settle = kube.settle
    # The held Deployment never reports its rollout done: the run stays in that phase
    monkeypatch.setattr(kube, "settle", lambda name: None if name == held else settle(name))
    arn = run(harness, **{**FAST, **overrides})
    wait_for_phase(harness, phase)
    # When a person aborts
    assert cli("abort", "--model", "churn", "--reason", f"abort in {phase}") == 0
    held = None
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


# --- rollback --to: after runs have ended ---------------------------------------------------------
def promote_versions(harness, kube, count: int) -> dict[str, str]:
    """Run `count` versions to promotion, one after another; their serving images by version."""
    harness.put_model(**FAST)
    harness.upload(KEY, CSV)
    images = {}
    for n in range(count):
        started = harness.start({"model": "churn", "dataset_key": KEY, "request_id": f"v{n}"})
        assert harness.wait(started["execution_arn"])["status"] == "SUCCEEDED"
        record = harness.store().query_docs("churn", "HISTORY#")[0]
        assert record["status"] == "promoted" and stable_image(kube) == record["image"]
        images[str(record["version"])] = record["image"]
    return images


def restore_execution(harness, capsys) -> str:
    out = capsys.readouterr().out
    name = out.split("started ", 1)[1].split(":", 1)[0]
    (execution,) = [e for e in harness.executions() if e["name"] == name]
    return str(execution["executionArn"])


def test_rollback_to_a_version_two_runs_old_brings_it_back_through_the_canary(harness, kube, cli, capsys):
    # Given three promoted versions
    images = promote_versions(harness, kube, 3)
    assert stable_image(kube) == images["3"]
    capsys.readouterr()
    # When a person brings version 1 back
    assert cli("rollback", "--model", "churn", "--to", "1", "--reason", "v2 and v3 drift") == 0
    arn = restore_execution(harness, capsys)
    result = harness.wait(arn)
    # Then it came back by its recorded digest, through the canary and its checks, training nothing
    assert result["status"] == "SUCCEEDED", harness.states(arn)
    states = harness.states(arn)
    for state in ("PrepareRestore", "DeployCanary", "SmokeTest", "Bake", "AnalyzeCanary", "Promote", "Watch"):
        assert state in states
    for state in ("ValidateDataset", "StartTraining", "EvaluateModel", "RegisterModel", "StartBuild"):
        assert state not in states
    assert stable_image(kube) == images["1"] and kube.deployments["churn-canary"]["spec"]["replicas"] == 0
    # And the record says what came back, for whom and why; version 1 is the champion again
    champion = harness.store().get_doc("churn", "CHAMPION")
    assert champion["version"] == "1" and champion["image"] == images["1"] and champion["model_artifact"]
    record = harness.store().query_docs("churn", "HISTORY#")[0]
    assert record["status"] == "promoted" and record["trigger"] == "restore"
    assert record["restore"]["version"] == "1" and record["restore"]["requested_by"] == CALLER
    assert record["restore"]["reason"] == "v2 and v3 drift" and record["restore"]["now"] is False
    assert "restored_by" in registry_package(record)["CustomerMetadataProperties"]
    assert harness.store().lock_holder("churn") is None


def test_rollback_to_now_patches_the_stable_at_once_and_records_why(harness, kube, cli, capsys):
    images = promote_versions(harness, kube, 2)
    capsys.readouterr()
    # --now needs a reason: refused without one, nothing started
    executions = len(harness.executions())
    assert cli("rollback", "--model", "churn", "--to", "1", "--now") == 1
    assert "--now skips the canary: say why with --reason" in capsys.readouterr().err
    assert len(harness.executions()) == executions
    # When a person brings version 1 back at once, saying why
    assert cli("rollback", "--model", "churn", "--to", "1", "--now", "--reason", "incident 42") == 0
    arn = restore_execution(harness, capsys)
    result = harness.wait(arn)
    # Then the stable runs version 1 without a canary, and the record says why
    assert result["status"] == "SUCCEEDED", harness.states(arn)
    states = harness.states(arn)
    assert "RestoreNow" in states and "Promote" in states and "DeployCanary" not in states
    assert stable_image(kube) == images["1"]
    patched = [name for name, _ in kube.patches]
    assert patched[-2:] == ["churn-stable", "churn-canary"]  # the stable's patch, then the canary kept at 0
    record = harness.store().query_docs("churn", "HISTORY#")[0]
    assert record["restore"]["now"] is True and record["restore"]["reason"] == "incident 42"
    assert harness.store().get_doc("churn", "CHAMPION")["version"] == "1"


def test_rollback_to_refuses_what_it_cannot_bring_back_and_starts_nothing(harness, kube, cli, capsys):
    from tests.integration.fake_kube import FORBIDDEN

    # Given version 1 promoted and version 2 rolled back (its promotion was refused by the cluster)
    promote_versions(harness, kube, 1)
    kube.fail_next("patch", "churn-stable", FORBIDDEN)
    failed = harness.start({"model": "churn", "dataset_key": KEY, "request_id": "bad"})
    assert harness.wait(failed["execution_arn"])["status"] == "FAILED"
    capsys.readouterr()
    executions, history = len(harness.executions()), harness.store().query_docs("churn", "HISTORY#")
    refusals = {
        "99": "version 99 of churn is unknown: no run recorded it (versions that were promoted: 1)",
        "2": "version 2 of churn was never promoted (its run churn-manual-",
        "1": "version 1 of churn is already serving (the champion): nothing to do",
    }
    for version, message in refusals.items():
        assert cli("rollback", "--model", "churn", "--to", version) == 1
        err = capsys.readouterr().err
        assert message in err and "nothing started" in err, err
    # And while a run holds the model's lock, nothing is started either
    harness.store().acquire_lock("churn", "churn-manual-running", 3600)
    assert cli("rollback", "--model", "churn", "--to", "1") == 1
    assert "run churn-manual-running holds churn's lock" in capsys.readouterr().err
    assert len(harness.executions()) == executions
    assert harness.store().query_docs("churn", "HISTORY#") == history


def as_before_version_records(harness, version: str) -> dict:
    """Make `version` look as a run before VERSION# records left it: no VERSION# item, and its
    HISTORY# record with only the fields runs wrote then."""
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    ddb.delete_item(TableName=TABLE, Key={"pk": {"S": "MODEL#churn"}, "sk": {"S": f"VERSION#{version}"}})
    kept = {"run_id", "model", "status", "finished_at", "trigger", "dataset", "version", "image"}
    kept |= {"evaluation", "analysis", "error", "cause"}
    for item in ddb.query(
        TableName=TABLE,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :h)",
        ExpressionAttributeValues={":pk": {"S": "MODEL#churn"}, ":h": {"S": "HISTORY#"}},
    )["Items"]:
        doc = json.loads(item["doc"]["S"])
        if str(doc.get("version")) == version:
            old = {k: v for k, v in doc.items() if k in kept}
            ddb.put_item(TableName=TABLE, Item={**item, "doc": {"S": json.dumps(old)}})
            return old
    raise AssertionError(f"no history record of version {version}")


def test_rollback_to_a_version_from_before_version_records_rebuilds_its_record_from_the_run_history(
    harness, kube, cli, capsys
):
    # Given version 1 promoted before VERSION# records existed (only its run history names it)
    images = promote_versions(harness, kube, 2)
    as_before_version_records(harness, "1")
    capsys.readouterr()
    # When a person brings it back by number
    assert cli("rollback", "--model", "churn", "--to", "1", "--reason", "v2 regressed") == 0
    arn = restore_execution(harness, capsys)
    # Then it comes back by its digest through the canary, smoke-tested with its own data's rows
    assert harness.wait(arn)["status"] == "SUCCEEDED", harness.states(arn)
    assert "SmokeTest" in harness.states(arn) and stable_image(kube) == images["1"]
    record = harness.store().get_doc("churn", "VERSION#1")
    assert record["recovered_from"] == "run history" and record["image"] == images["1"]
    assert record["package_arn"] == registry_package({"version": "1"})["ModelPackageArn"]
    assert len(record["smoke_sample"]) == 20 and record["model_artifact"]
    assert harness.store().get_doc("churn", "CHAMPION")["version"] == "1"


def test_a_version_from_before_version_records_whose_data_is_gone_needs_now(harness, kube, cli, capsys):
    # Given version 1 from before VERSION# records, and its training data deleted since
    images = promote_versions(harness, kube, 2)
    old = as_before_version_records(harness, "1")
    boto3.client("s3", region_name="us-east-1").delete_object(Bucket=BUCKET, Key=old["dataset"]["key"])
    capsys.readouterr()
    executions = len(harness.executions())
    # Then through the canary it is refused, saying why and what to do, starting and writing nothing
    assert cli("rollback", "--model", "churn", "--to", "1") == 1
    err = capsys.readouterr().err
    assert "version 1 of churn predates version records; its run churn-manual-" in err
    assert "kept no smoke rows and its training data cannot give them" in err
    assert "`--now --reason R` brings it back without the canary's smoke test; nothing started" in err
    assert len(harness.executions()) == executions and harness.store().get_doc("churn", "VERSION#1") is None
    # And with --now (no smoke test) it comes back
    assert cli("rollback", "--model", "churn", "--to", "1", "--now", "--reason", "incident 7") == 0
    assert harness.wait(restore_execution(harness, capsys))["status"] == "SUCCEEDED"
    assert stable_image(kube) == images["1"]


def test_a_canary_alarm_during_the_approval_wait_rolls_back(harness, kube):
    arn = run(harness, **APPROVAL)
    wait_for_phase(harness, "approval")
    # When the canary's error-rate alarm fires while the version waits for a person
    assert harness.alarm("modelops-churn-canary-error-rate")["action"] == "rollback"
    result = harness.wait(arn)
    # Then it is rolled back without anyone answering
    assert result["status"] == "FAILED" and result["error"] == "CanaryAlarmError"
    assert stable_image(kube) == OLD and kube.deployments["churn-canary"]["spec"]["replicas"] == 0


def test_an_execution_stopped_while_it_waits_for_approval_is_cleaned_up(harness, kube, monkeypatch):
    from modelops_local.moto_patches import MotoPatches
    from tests.integration.workflow.harness import Context, function_arn, load_handler

    # Given a version waiting for approval, its canary serving, and StopExecution as on AWS (the
    # execution ABORTED at once, its status-change event emitted)
    monkeypatch.setenv("ROLLOUT_FUNCTION_ARN", function_arn("rollout"))
    on_execution_end = load_handler("on_execution_end")
    events: list[dict] = []
    with MotoPatches() as patches:
        patches.execution_status_events(events.append)
        arn = run(harness, **APPROVAL)
        wait_for_phase(harness, "approval")
        assert kube.deployments["churn-canary"]["spec"]["replicas"] == 1
        # When a person stops the execution during the wait
        harness.sfn.stop_execution(executionArn=arn, error="Stopped", cause="wrong dataset")
        deadline = time.monotonic() + 10
        while not events and time.monotonic() < deadline:
            time.sleep(0.05)
    assert harness.sfn.describe_execution(executionArn=arn)["status"] == "ABORTED"
    # And EventBridge delivers its status change to on_execution_end
    result = on_execution_end.handler(events[0], Context("on_execution_end"))
    # Then the canary is at 0, the stable untouched, the lock free and the run recorded as stopped
    assert result["action"] == "cleaned_up" and result["released_lock"] is True, result
    assert kube.deployments["churn-canary"]["spec"]["replicas"] == 0 and stable_image(kube) == OLD
    assert harness.store().lock_holder("churn") is None and harness.store().get_rollout("churn") is None
    record = harness.store().query_docs("churn", "HISTORY#")[0]
    assert record["status"] == "stopped" and record["run_id"] == arn.rsplit(":", 1)[-1]
