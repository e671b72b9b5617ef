"""The real state machine definition, executed by moto's interpreter, with the real handlers."""

from __future__ import annotations

import json

CSV = (
    "tenure_months,monthly_charges,support_calls,usage_gb,contract_months,late_payments,churned\n"
    + "\n".join(f"{i % 60},{20 + i % 80},{i % 7},{i % 50},{12 * (i % 3)},{i % 4},{i % 2}" for i in range(300))
    + "\n"
).encode()
KEY = "incoming/churn/2026-11-22.csv"
FAST = {"canary__bake_seconds": 1, "canary__watch_seconds": 1, "canary__min_requests": 0}


def run(harness, **overrides):
    harness.put_model(**{**FAST, **overrides})
    harness.upload(KEY, CSV)
    started = harness.start({"model": "churn", "dataset_key": KEY, "request_id": "t1"})
    assert started["started"], started
    return started["execution_arn"]


def test_happy_path_promotes_and_releases_the_lock(harness, kube):
    # Given a configured model, new data and a better candidate
    arn = run(harness)
    # When the workflow runs
    result = harness.wait(arn)
    # Then it succeeds through canary, bake, promotion and watch
    assert result["status"] == "SUCCEEDED", (result, harness.states(arn))
    states = harness.states(arn)
    for state in [
        "ValidateDataset",
        "StartTraining",
        "EvaluateModel",
        "RegisterModel",
        "DeployCanary",
        "SmokeTest",
        "Bake",
        "AnalyzeCanary",
        "Promote",
        "Watch",
        "RecordSuccess",
        "ReleaseLock",
        "Promoted",
    ]:
        assert state in states
    stable = kube.deployments["churn-stable"]
    image = stable["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.startswith(harness.repo_uri + "@sha256:")
    assert kube.deployments["churn-canary"]["spec"]["replicas"] == 0
    store = harness.store()
    assert store.lock_holder("churn") is None
    assert store.get_doc("churn", "CHAMPION")["image"] == image
    history = store.query_docs("churn", "HISTORY#")
    assert history[0]["status"] == "promoted"
    assert any("promoted" in m for m in harness.notifications())
    # And the registered version is approved in the model registry
    assert package_status(history[0]) == "Approved"


def package_status(record: dict) -> str:
    import boto3

    sagemaker = boto3.client("sagemaker", region_name="us-east-1")
    group = sagemaker.list_model_packages(ModelPackageGroupName="modelops-churn")["ModelPackageSummaryList"]
    by_version = {str(p["ModelPackageVersion"]): p["ModelPackageArn"] for p in group}
    arn = by_version[str(record["version"])]
    return str(sagemaker.describe_model_package(ModelPackageName=arn)["ModelApprovalStatus"])


def test_rejected_candidate_changes_nothing(harness, kube):
    # Given a candidate that is worse than the champion
    harness.training_evaluation = {"metric": "auc", "candidate": 0.80, "champion": 0.85, "n_validation": 100}
    before = json.dumps(kube.deployments, sort_keys=True)
    arn = run(harness)
    result = harness.wait(arn)
    # Then the run ends as a rejection, nothing on the cluster changed, the lock is free
    assert result["status"] == "SUCCEEDED"
    assert "Rejected" in harness.states(arn) and "DeployCanary" not in harness.states(arn)
    assert json.dumps(kube.deployments, sort_keys=True) == before
    assert harness.store().lock_holder("churn") is None
    assert harness.store().query_docs("churn", "HISTORY#")[0]["status"] == "rejected"


def test_failed_training_fails_with_sagemakers_reason(harness, kube):
    harness.training_failure = "AlgorithmError: label column 'churned' not found in train.csv"
    arn = run(harness)
    result = harness.wait(arn)
    assert result["status"] == "FAILED"
    assert result["error"] == "TrainingFailedError"
    assert "label column 'churned' not found" in result["cause"]
    assert harness.store().lock_holder("churn") is None
    assert "DeployCanary" not in harness.states(arn)


def test_canary_alarm_during_bake_rolls_back_at_once(harness, kube):
    # Given a long bake that only an alarm can cut short
    stable_before = json.dumps(kube.deployments["churn-stable"]["spec"], sort_keys=True)
    arn = run(harness, canary__bake_seconds=300)
    harness.wait_for_state(arn, "Bake")
    # When the canary's error-rate alarm fires (after the bake wait registered its token)
    deadline_ok = False
    for _ in range(100):
        rollout = harness.store().get_rollout("churn")
        if rollout and rollout.get("task_token"):
            deadline_ok = True
            break
        import time

        time.sleep(0.05)
    assert deadline_ok, "bake never registered its task token"
    handled = harness.alarm("modelops-churn-canary-error-rate")
    assert handled["action"] == "rollback"
    result = harness.wait(arn, timeout=30)
    # Then the run rolls back: canary at 0, stable untouched, lock released, error named
    assert result["status"] == "FAILED" and result["error"] == "CanaryAlarmError"
    assert "Rollback" in harness.states(arn) and "Promote" not in harness.states(arn)
    assert kube.deployments["churn-canary"]["spec"]["replicas"] == 0
    assert json.dumps(kube.deployments["churn-stable"]["spec"], sort_keys=True) == stable_before
    assert harness.store().lock_holder("churn") is None
    record = harness.store().query_docs("churn", "HISTORY#")[0]
    assert record["status"] == "rolled_back"
    # And the version that failed its canary is rejected in the model registry
    assert package_status(record) == "Rejected"


def test_alarm_in_watch_window_restores_previous_stable_image(harness, kube):
    from tests.integration.workflow.conftest import OLD

    arn = run(harness, canary__watch_seconds=300)
    harness.wait_for_state(arn, "Watch")
    for _ in range(100):
        rollout = harness.store().get_rollout("churn")
        if rollout and rollout.get("phase") == "watch" and rollout.get("task_token"):
            break
        import time

        time.sleep(0.05)
    assert harness.alarm("modelops-churn-stable-error-rate")["action"] == "rollback"
    result = harness.wait(arn, timeout=30)
    assert result["status"] == "FAILED" and result["error"] == "WatchAlarmError"
    assert kube.deployments["churn-stable"]["spec"]["template"]["spec"]["containers"][0]["image"] == OLD
    assert harness.store().lock_holder("churn") is None


def test_kubernetes_failure_during_promotion_rolls_back(harness, kube):
    from tests.integration.fake_kube import FORBIDDEN

    # Given the functions lose their RBAC permission to patch the stable Deployment
    kube.fail_next("patch", "churn-stable", FORBIDDEN)
    arn = run(harness)
    result = harness.wait(arn)
    # Then the run rolls back, says which permission is missing, and the stable is untouched
    assert result["status"] == "FAILED" and result["error"] == "KubeForbiddenError"
    assert 'cannot patch resource "deployments"' in result["cause"]
    assert "Rollback" in harness.states(arn)
    assert kube.deployments["churn-canary"]["spec"]["replicas"] == 0
    assert harness.store().lock_holder("churn") is None


def test_a_follow_up_with_nothing_newer_than_what_its_holder_trained_trains_nothing(harness, kube):
    # Given the newer upload's run holds the lock and trains
    harness.put_model(**FAST)
    older = _object_created(harness, "incoming/churn/2026-11-22-a.csv", CSV)
    newer = _object_created(harness, "incoming/churn/2026-11-22-b.csv", CSV)
    holder = harness.start(newer)
    harness.wait_for_state(holder["execution_arn"], "StartTraining")
    # When the older upload's run arrives meanwhile, it is coalesced behind the holder
    late = harness.start(older)
    assert (
        json.loads(harness.wait(late["execution_arn"])["output"])["lock"]["holder"]
        == holder["execution_name"]
    )
    assert harness.wait(holder["execution_arn"], timeout=120)["status"] == "SUCCEEDED"

    # Then the follow-up the holder started finds the newest object already trained, trains nothing
    store = harness.store()
    (follow_up,) = [e for e in harness.executions() if "-queued-" in e["name"]]
    result = harness.wait(follow_up["executionArn"])
    lock = json.loads(result["output"])["lock"]
    assert result["status"] == "SUCCEEDED" and "StartTraining" not in harness.states(
        follow_up["executionArn"]
    )
    assert lock["already_trained_by"] == holder["execution_name"], lock
    assert (
        "incoming/churn/2026-11-22-b.csv (ETag" in lock["message"]
        and "start the model manually" in lock["message"]
    )
    # And only the holder's run is in the history; nothing is left held or pending
    assert [h["run_id"] for h in store.query_docs("churn", "HISTORY#")] == [holder["execution_name"]]
    assert store.get_doc("churn", "PENDING") is None and store.lock_holder("churn") is None

    # And a new version of that object (other content, same key) is new data: its run trains it
    again = _object_created(harness, "incoming/churn/2026-11-22-b.csv", CSV + b"1,21,1,1,0,1,1\n")
    rerun = harness.start(again)
    assert rerun["started"], rerun
    assert harness.wait(rerun["execution_arn"], timeout=120)["status"] == "SUCCEEDED"
    assert "StartTraining" in harness.states(rerun["execution_arn"])


def _object_created(harness, key: str, body: bytes) -> dict:
    """Upload `body` under `key` and return the EventBridge Object Created event S3 sends for it."""
    from tests.conftest import load_event
    from tests.integration.workflow.harness import BUCKET

    put = harness.upload(key, body)
    event = load_event("s3_object_created.json")
    event["resources"] = [f"arn:aws:s3:::{BUCKET}"]
    event["detail"]["bucket"]["name"] = BUCKET
    event["detail"]["object"] = {
        "key": key,
        "size": len(body),
        "etag": put["ETag"].strip('"'),
        "sequencer": "0A",
    }
    if put.get("VersionId"):
        event["detail"]["object"]["version-id"] = put["VersionId"]
    return event


def test_an_upload_whose_run_arrives_after_a_newer_one_was_trained_trains_nothing(harness, kube):
    # Given two uploads, where the newer one's run went first and was promoted
    harness.put_model(**FAST)
    older = _object_created(harness, "incoming/churn/2026-11-22-a.csv", CSV)
    newer = _object_created(harness, "incoming/churn/2026-11-22-b.csv", CSV)
    started = harness.start(newer)
    assert harness.wait(started["execution_arn"])["status"] == "SUCCEEDED"
    stable = kube.deployments["churn-stable"]["spec"]["template"]["spec"]["containers"][0]["image"]
    history = harness.store().query_docs("churn", "HISTORY#")

    # When the older upload's run arrives late (delivery order is not upload order)
    late = harness.start(older)
    result = harness.wait(late["execution_arn"])

    # Then it ends without training, saying which newer data superseded it, and nothing changed
    assert result["status"] == "SUCCEEDED"
    states = harness.states(late["execution_arn"])
    assert "Coalesced" in states and "StartTraining" not in states
    lock = json.loads(result["output"])["lock"]
    assert lock["superseded_by"] == "incoming/churn/2026-11-22-b.csv"
    assert "is newer than incoming/churn/2026-11-22-a.csv" in lock["message"]
    assert kube.deployments["churn-stable"]["spec"]["template"]["spec"]["containers"][0]["image"] == stable
    assert harness.store().query_docs("churn", "HISTORY#") == history
    assert (
        harness.store().get_doc("churn", "PENDING") is None and harness.store().lock_holder("churn") is None
    )
