"""The workflow's cases end to end on the local runtime: each uses its own model."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any

import pytest

from modelops_local.demo import SteadyTraffic
from tests.e2e.sfn_history import history

pytestmark = pytest.mark.timeout(900)


def test_first_deploy_then_a_tie_is_rejected_then_a_watch_alarm_restores_the_previous_image(driver):
    # Given a new model and its first dataset
    config = driver.model("e2e-watch")
    first = driver.dataset("e2e-watch", 1500, 11)  # the demo's v1 and v2 data: v2 is better

    # When the first version runs, Then it is promoted and serves with its image pinned by digest
    v1 = driver.run("e2e-watch", first, "v1.csv")
    assert v1.status == "SUCCEEDED" and v1.record["status"] == "promoted"
    v1_image = driver.image(config)
    assert "@sha256:" in v1_image and v1_image == v1.record["image"]
    assert driver.deployment(config, "stable")["status"]["readyReplicas"] == 2
    assert driver.deployment(config, "canary")["spec"]["replicas"] == 0

    # When the same data arrives again under another key (the candidate ties the champion)
    tie = driver.run("e2e-watch", first, "v1-again.csv")
    # Then it is rejected and nothing on the cluster changed
    assert tie.status == "SUCCEEDED" and tie.record["status"] == "rejected"
    assert "Bake" not in [name for _, name in tie.states] and driver.image(config) == v1_image

    # When, under steady traffic, a better version is promoted (a 5 s bake: at 20 predictions/s a
    # third of them reach the canary) and the stable alarm fires in its watch (open up to 10 s)
    driver.model(
        "e2e-watch",
        canary={"bake_seconds": 5, "min_requests": 10, "watch_seconds": 10},
    )
    traffic = SteadyTraffic(driver.cloud.service_url("e2e", "e2e-watch"), [[12, 80, 3, 20, 1, 1]]).start()
    known = driver.executions()
    driver.upload("e2e-watch", driver.dataset("e2e-watch", 4000, 12), "v2.csv")
    sfn = driver.cloud.client("stepfunctions")
    arn = driver.wait_for(lambda: next(iter(driver.executions() - known), None), "the v2 execution")

    def in_watch() -> bool:
        events = history(sfn, arn)
        return any(
            e["type"] == "TaskStateEntered" and e["stateEnteredEventDetails"]["name"] == "Watch"
            for e in events
        )

    def ended() -> bool:
        return sfn.describe_execution(executionArn=arn)["status"] != "RUNNING"

    driver.wait_for(lambda: in_watch() or ended(), "the Watch state", timeout=240)
    if not in_watch():
        traffic.stop()
        records = driver.cloud.store().query_docs("e2e-watch", "HISTORY#", limit=1)
        raise AssertionError(f"v2 never reached Watch: {records}")
    time.sleep(1)  # the watch token is registered by the state's own invocation
    assert driver.image(config) != v1_image  # promoted: stable runs v2 now
    prefix = driver.cloud.info.alarm_prefix
    driver.cloud.set_alarm_state(f"{prefix}e2e-watch-stable-error-rate", "ALARM", "e2e: stable errors")

    # Then the run rolls back and the stable Deployment is restored to exactly v1's image, ready
    final = driver.wait_for(
        lambda: sfn.describe_execution(executionArn=arn)["status"] != "RUNNING" and arn,
        "the end",
        timeout=120,
    )
    traffic.stop()
    record = driver.record("e2e-watch", final.rsplit(":", 1)[-1])
    assert record["status"] == "rolled_back" and record["error"] == "WatchAlarmError", record
    assert driver.image(config) == v1_image
    stable = driver.deployment(config, "stable")
    assert stable["status"]["readyReplicas"] == 2 == stable["status"]["updatedReplicas"]
    # And no request failed on the stable variant through promotion and rollback
    assert traffic.summary().get("stable", {}).get("failed", 0) == 0 and "?" not in traffic.summary(), (
        traffic.summary(),
        traffic.unanswered(),
    )
    driver.retire(config)


def test_a_training_failure_changes_nothing_on_the_cluster_and_says_why(driver):
    # Given a model whose training cannot succeed (scikit-learn refuses max_iter 0)
    config = driver.model("e2e-trainfail", training={"hyperparameters": {"max_iter": 0}})

    # When data arrives
    run = driver.run("e2e-trainfail", driver.dataset("e2e-trainfail", 800, 31), "d.csv")

    # Then the run fails with the training job's reason, no canary was started and the lock is free
    assert run.status == "FAILED" and run.record["status"] == "failed"
    assert "max_iter" in (run.record.get("cause") or ""), run.record
    assert "DeployCanary" not in [name for _, name in run.states]
    assert driver.deployment(config, "canary")["spec"]["replicas"] == 0
    assert driver.cloud.store().lock_holder("e2e-trainfail") is None


def test_a_redelivered_s3_event_starts_nothing_new(driver):
    # Given a model with one upload whose run finished
    config = driver.model("e2e-redeliver", canary={"bake_seconds": 3, "watch_seconds": 2})
    run = driver.run("e2e-redeliver", driver.dataset("e2e-redeliver", 800, 41), "d.csv")
    assert run.record["status"] == "promoted"
    head = driver.cloud.client("s3").head_object(
        Bucket=driver.cloud.info.bucket, Key="incoming/e2e-redeliver/d.csv"
    )
    known = driver.executions()

    # When EventBridge delivers that object's Object Created event again, five times
    detail = {
        "version": "0",
        "bucket": {"name": driver.cloud.info.bucket},
        "object": {
            "key": "incoming/e2e-redeliver/d.csv",
            "size": head["ContentLength"],
            "etag": head["ETag"].strip('"'),
            "version-id": head.get("VersionId"),
            "sequencer": "0001",
        },
        "request-id": "redelivery",
        "requester": "123456789012",
        "reason": "PutObject",
    }
    for _ in range(5):
        driver.cloud.client("events").put_events(
            Entries=[
                {
                    "Source": "aws.s3",
                    "DetailType": "Object Created",
                    "Detail": json.dumps(detail),
                    "Resources": [f"arn:aws:s3:::{driver.cloud.info.bucket}"],
                }
            ]
        )
    driver.cloud.delivery.wait_idle(30)
    driver.cloud.runtime.wait_idle(30)

    # Then start_pipeline ran for each and started no execution: the name is the idempotency key
    assert driver.executions() == known
    driver.retire(config)


# 1,000 uploads (issue 5) saturate the local runtime on 2 cores (~0.5 s per upload end to end),
# so the local burst is 200; the ordering rule it checks does not depend on the count.
BURST = 200


def test_a_burst_of_uploads_never_runs_two_rollouts_and_ends_on_the_newest_data(driver):
    # Given a model with a short canary
    config = driver.model("e2e-burst", canary={"bake_seconds": 3, "watch_seconds": 2})
    data = driver.dataset("e2e-burst", 600, 51)
    known = driver.executions()

    # When BURST datasets land back to back (keys in upload order)
    started = time.monotonic()
    for i in range(BURST):
        driver.upload("e2e-burst", data, f"burst-{i:04d}.csv")
    uploaded_in = time.monotonic() - started
    sfn = driver.cloud.client("stepfunctions")

    def settled() -> bool:
        time.sleep(1)  # ListExecutions is cheap, but not free for the interpreter it shares moto with
        statuses = {arn: status for arn, status in driver.statuses().items() if arn not in known}
        if len(statuses) < BURST or "RUNNING" in statuses.values():
            return False
        store = driver.cloud.store()  # nothing left to run: no lock held, no request waiting
        return store.lock_holder("e2e-burst") is None and store.get_doc("e2e-burst", "PENDING") is None

    driver.wait_for(settled, "every burst execution to end", timeout=900)

    # Then every object started one execution and each run that released the lock with requests
    # coalesced behind it started one follow-up; every other execution was coalesced or superseded
    arns = driver.executions() - known
    trained = []
    for arn in arns:
        events = history(sfn, arn)
        entered = {
            e["stateEnteredEventDetails"]["name"]: e["timestamp"]
            for e in events
            if "stateEnteredEventDetails" in e
        }
        if "ValidateDataset" in entered:
            trained.append((entered["ValidateDataset"], entered["ReleaseLock"], arn))
        else:
            assert "Coalesced" in entered, arn
    follow_ups = [arn for arn in arns if "-queued-" in arn]  # a follow-up may itself be coalesced
    assert len(arns) == BURST + len(follow_ups) and 1 <= len(trained) < 30
    print(
        f"burst: {BURST} uploads in {uploaded_in:.0f}s, {len(arns)} executions, {len(trained)} trained, "
        f"{len(follow_ups)} follow-ups, rest coalesced or superseded"
    )
    # And no two runs ever held the model between lock and release at once
    trained.sort()
    for (_, released, _), (next_start, _, _) in itertools.pairwise(trained):
        assert next_start >= released, "two rollouts overlapped"
    # And the last run to train used the newest upload (its own run or a follow-up, which takes
    # the newest; a late run for older data defers to it)
    records = [driver.record("e2e-burst", arn.rsplit(":", 1)[-1]) for *_, arn in trained]
    assert records[-1]["dataset"]["key"] == f"incoming/e2e-burst/burst-{BURST - 1:04d}.csv", records
    assert driver.cloud.store().lock_holder("e2e-burst") is None
    driver.retire(config)


def test_a_dataset_with_missing_values_in_several_columns_is_promoted(driver):
    # Given churn data where every fourth row misses one cell, in four different columns, so rows
    # whose only missing value is one of those land in the smoke sample the canary is sent
    config = driver.model("e2e-holes")
    lines = driver.dataset("e2e-holes", 1500, 21).decode().splitlines()
    header = lines[0].split(",")
    holes = ["monthly_charges", "support_calls", "usage_gb", "late_payments"]
    for number in range(1, len(lines), 4):
        cells = lines[number].split(",")
        cells[header.index(holes[(number // 4) % len(holes)])] = ""
        lines[number] = ",".join(cells)
    # When it goes through the whole cycle
    result = driver.run("e2e-holes", ("\n".join(lines) + "\n").encode(), "holes.csv")
    # Then it is promoted, after a smoke test whose rows carried the missing values as null
    assert result.status == "SUCCEEDED" and result.record["status"] == "promoted", result.record
    smoke = _smoke_test_input(driver, result.execution_arn)
    sample = smoke["dataset"]["smoke_sample"]
    assert sum(row.count(None) for row in sample) >= 2, sample
    assert all(row.count(None) <= 1 for row in sample)
    driver.retire(config)


def test_a_lightgbm_multiclass_model_is_served_by_name_then_replaced_by_an_xgboost_candidate(
    driver, tmp_path
):
    # Given customer tiers named in words (bronze, gold, silver), a categorical `region` column and
    # empty cells in every column, as a team's export has them, and a LightGBM model of them
    from tests.multiclass_data import REGIONS, TIERS, generate_tier_csv

    def put(algorithm: str, hyperparameters: dict[str, int | float], **sections: dict[str, Any]) -> Any:
        return driver.model(
            "e2e-tiers",
            data=_tier_data(),
            training={
                "algorithm": algorithm,
                "hyperparameters": hyperparameters,
                "objective": {"metric": "macro_f1"},
            },
            **sections,
        )

    config = put("lightgbm", {"n_estimators": 15, "num_leaves": 4})
    v1_data = generate_tier_csv(tmp_path / "tiers.csv", 1200, seed=31).read_bytes()

    # When it goes through the whole cycle
    v1 = driver.run("e2e-tiers", v1_data, "tiers.csv")

    # Then it is promoted, judged on macro-F1, after a smoke test whose rows carried regions as text
    assert v1.status == "SUCCEEDED" and v1.record["status"] == "promoted", v1.record
    assert v1.record["evaluation"]["metric"] == "macro_f1", v1.record
    smoke = _smoke_test_input(driver, v1.execution_arn)
    regions = {row[-1] for row in smoke["dataset"]["smoke_sample"]}
    assert regions - {None} and regions - {None} <= set(REGIONS), regions
    # And the model's Service answers each customer's tier by name, with a probability per tier
    # (a missing cell as null, an unseen region answered as a missing one)
    url = driver.cloud.service_url("e2e", "e2e-tiers")
    rows = [[120.0, 9, 30, None, "north"], [20.0, None, 2, 3, "south"], [60.0, 5, 12, 0, "atlantis"]]
    answer = _post(url, {"instances": rows})
    assert answer["classes"] == list(TIERS) and answer["model_version"] == v1.record["version"]
    assert len(answer["predictions"]) == 3 and set(answer["predictions"]) <= set(TIERS)
    assert all(len(p) == 3 and abs(sum(p) - 1) < 1e-9 for p in answer["probabilities"])
    assert answer["predictions"][0] == "gold" and answer["predictions"][1] == "bronze", answer

    # When the team switches to XGBoost and more data arrives, with clients calling the model (an
    # 8 s bake: at 20 predictions/s a third of them reach the canary, at least 20 asked for)
    config = put(
        "xgboost",
        {"n_estimators": 120, "max_depth": 4, "learning_rate": 0.1},
        canary={"bake_seconds": 8, "min_requests": 20},
    )
    traffic = SteadyTraffic(url, rows).start()
    try:
        v2 = driver.run(
            "e2e-tiers", generate_tier_csv(tmp_path / "more.csv", 2400, seed=32).read_bytes(), "more.csv"
        )
    finally:
        traffic.stop()

    # Then the XGBoost candidate and the LightGBM champion were judged on the same holdout, the
    # candidate won and serves, and it answers by the same names
    evaluation = v2.record["evaluation"]
    assert evaluation["champion"] is not None and evaluation["candidate"] > evaluation["champion"], evaluation
    assert v2.status == "SUCCEEDED" and v2.record["status"] == "promoted", v2.record
    answer = _post(url, {"instances": rows})
    assert answer["model_version"] == v2.record["version"] and answer["classes"] == list(TIERS)
    assert answer["predictions"][:2] == ["gold", "bronze"], answer
    # And the clients were answered throughout, by both variants
    served = traffic.summary()
    assert served["stable"]["failed"] == 0 and served["canary"]["ok"] > 0, served
    driver.retire(config)


def test_a_script_mode_model_trains_from_the_teams_code_and_is_promoted(driver, tmp_path):
    # Given the example team's train.py (a scikit-learn Pipeline) as training.script, from its folder
    from tests.multiclass_data import TIERS, generate_tier_csv

    folder = Path(__file__).resolve().parents[2] / "examples" / "script_mode"
    config = driver.model(
        "e2e-script",
        data=_tier_data(),
        training={
            "script": {"entry_point": "train.py", "source": str(folder)},
            "hyperparameters": {"C": 0.5},
            "objective": {"metric": "macro_f1"},
        },
    )
    data = generate_tier_csv(tmp_path / "tiers.csv", 1200, seed=32).read_bytes()

    # When it goes through the whole cycle (model put uploaded the folder to code/e2e-script/)
    result = driver.run("e2e-script", data, "tiers.csv")

    # Then the script's model is trained, judged and promoted, and the Service answers by name
    assert result.status == "SUCCEEDED" and result.record["status"] == "promoted", result.record
    assert result.record["evaluation"]["metric"] == "macro_f1", result.record
    rows = [[120.0, 9, 30, None, "north"], [20.0, None, 2, 3, "south"], [60.0, 5, 12, 0, "atlantis"]]
    answer = _post(driver.cloud.service_url("e2e", "e2e-script"), {"instances": rows})
    assert answer["classes"] == list(TIERS) and len(answer["predictions"]) == 3, answer
    assert all(len(p) == 3 and abs(sum(p) - 1) < 1e-9 for p in answer["probabilities"])
    driver.retire(config)


def test_a_model_whose_code_needs_a_package_of_its_own_is_built_with_it_and_served(driver, tmp_path):
    # Given a team's train.py whose Pipeline step imports inflection (code/requirements.txt), a
    # package neither the image nor this machine's environment carries
    from tests.multiclass_data import TIERS, generate_tier_csv

    folder = Path(__file__).resolve().parents[1] / "model_code" / "with_requirements"
    config = driver.model(
        "e2e-reqs",
        data=_tier_data(),
        training={
            "script": {"entry_point": "train.py", "source": str(folder)},
            "objective": {"metric": "macro_f1"},
        },
    )
    data = generate_tier_csv(tmp_path / "tiers.csv", 1200, seed=33).read_bytes()

    # When it goes through the whole cycle: training installs it to fit, the image build installs it
    result = driver.run("e2e-reqs", data, "tiers.csv")

    # Then it is promoted and the pods (which never install anything) load and answer with it
    assert result.status == "SUCCEEDED" and result.record["status"] == "promoted", result.record
    rows = [[120.0, 9, 30, None, "North "], [20.0, None, 2, 3, "south"], [60.0, 5, 12, 0, "atlantis"]]
    answer = _post(driver.cloud.service_url("e2e", "e2e-reqs"), {"instances": rows})
    assert answer["classes"] == list(TIERS) and len(answer["predictions"]) == 3, answer
    driver.retire(config)


def _tier_data() -> dict:
    """data: customer tiers in words, with the categorical `region` (tests/multiclass_data.py)."""
    from tests.multiclass_data import TIER_FEATURES, TIER_LABEL

    schema = {
        "label_column": TIER_LABEL,
        "feature_columns": list(TIER_FEATURES),
        "categorical_columns": ["region"],
        "min_rows": 200,
    }
    return {"task": "multiclass_classification", "schema": schema}


def _post(url: str, body: dict) -> dict:
    import urllib.request

    request = urllib.request.Request(
        f"{url}/invocations", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _smoke_test_input(driver, execution_arn: str) -> dict:
    """The SmokeTest state's input in the execution's history (its dataset's smoke sample)."""
    sfn = driver.cloud.client("stepfunctions")
    events = history(sfn, execution_arn, data=True)
    return next(
        json.loads(e["stateEnteredEventDetails"]["input"])
        for e in events
        if e["type"] == "TaskStateEntered" and e["stateEnteredEventDetails"]["name"] == "SmokeTest"
    )
