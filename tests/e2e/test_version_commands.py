"""A version's life on the local runtime through the ordinary CLI: the approval gate and
`modelops rollback --to`. The refusals and every phase of abort and promote are proven in moto's
interpreter (tests/integration/workflow/test_rollout_control.py); this is the whole stack once."""

from __future__ import annotations

from typing import Any

import pytest

from modelops_cli.main import main
from tests.e2e.sfn_history import history

pytestmark = pytest.mark.timeout(600)
MODEL = "e2e-gate"


def test_approved_versions_are_promoted_and_rollback_to_brings_the_first_back(
    driver, capsys, cli_environment
):
    # Given a model whose versions wait for a person's approval (the shortest bake and watch;
    # judged on the smoke test and alarms: no traffic here)
    config = driver.model(
        MODEL,
        canary={"bake_seconds": 1, "watch_seconds": 1, "min_requests": 0},
        approval={"required": True, "timeout_seconds": 180},
    )
    stack = driver.cloud.info.stack_name
    sfn = driver.cloud.client("stepfunctions")
    caller = driver.cloud.client("sts").get_caller_identity()["Arn"]

    def approve_next(started: str) -> dict[str, Any]:
        """Wait for the run `started` to ask for approval, approve it through the CLI, follow it to its end."""
        driver.wait_for(
            lambda: (
                (r := driver.cloud.store().get_rollout(MODEL))
                and r.get("phase") == "approval"
                and r.get("task_token")
            ),
            "the approval wait",
            timeout=240,
        )
        assert main(["--stack", stack, "approve", "--model", MODEL]) == 0
        driver.wait_for(
            lambda: sfn.describe_execution(executionArn=started)["status"] != "RUNNING",
            "the run's end",
            timeout=120,
        )
        return driver.record(MODEL, started.rsplit(":", 1)[-1])

    def uploaded(data: bytes, key: str) -> str:
        known = driver.executions()
        driver.upload(MODEL, data, key)
        return str(driver.wait_for(lambda: next(iter(driver.executions() - known), None), f"{key}'s run"))

    # When two versions are approved in turn
    v1 = approve_next(uploaded(driver.dataset(MODEL, 1500, 11), "v1.csv"))
    v1_image = driver.image(config)
    v2 = approve_next(uploaded(driver.dataset(MODEL, 4000, 12), "v2.csv"))
    # Then each was promoted, recording who approved it
    assert v1["status"] == "promoted" and v2["status"] == "promoted", (v1, v2)
    assert v1["approval"]["approved_by"] == caller == v2["approval"]["approved_by"]
    assert driver.image(config) == v2["image"] != v1_image

    # When version 1 is brought back (after both runs ended), through the canary and the approval
    capsys.readouterr()
    assert main(["--stack", stack, "rollback", "--model", MODEL, "--to", v1["version"]]) == 0
    name = capsys.readouterr().out.split("started ", 1)[1].split(":", 1)[0]
    (restore,) = [arn for arn in driver.executions() if arn.endswith(f":{name}")]
    record = approve_next(restore)
    # Then the stable runs version 1's exact image again, ready, and the record says so
    assert record["status"] == "promoted" and record["restore"]["version"] == v1["version"], record
    assert driver.image(config) == v1_image
    stable = driver.deployment(config, "stable")
    assert (
        stable["status"]["readyReplicas"] == 2
        and driver.deployment(config, "canary")["spec"]["replicas"] == 0
    )
    states = [
        state
        for event in history(sfn, restore)
        if (state := (event.get("stateEnteredEventDetails") or {}).get("name"))
    ]
    assert "PrepareRestore" in states and "StartTraining" not in states and "SmokeTest" in states
    driver.retire(config)


def test_an_execution_stopped_while_it_waits_for_approval_is_cleaned_up(driver):
    # Given a first version waiting for approval, its canary serving
    name = "e2e-gate-stop"
    config = driver.model(
        name,
        canary={"bake_seconds": 3, "watch_seconds": 3, "min_requests": 0},
        approval={"required": True, "timeout_seconds": 180},
    )
    store, sfn = driver.cloud.store(), driver.cloud.client("stepfunctions")
    known = driver.executions()
    driver.upload(name, driver.dataset(name, 1500, 11), "v1.csv")
    arn = driver.wait_for(lambda: next(iter(driver.executions() - known), None), "the v1 execution")
    driver.wait_for(
        lambda: (r := store.get_rollout(name)) and r.get("phase") == "approval" and r.get("task_token"),
        "the approval wait",
        timeout=240,
    )
    assert driver.deployment(config, "canary")["spec"]["replicas"] == 1
    # When a person stops the execution during the wait
    sfn.stop_execution(executionArn=arn, cause="e2e: stopped while waiting for approval")
    # Then on_execution_end (through EventBridge) scales the canary to 0, frees the lock, records it
    driver.wait_for(
        lambda: (
            store.lock_holder(name) is None and driver.deployment(config, "canary")["spec"]["replicas"] == 0
        ),
        "the lock released and the canary at 0",
        timeout=30,
    )
    assert sfn.describe_execution(executionArn=arn)["status"] == "ABORTED"
    # (the record is written before the rollout is cleared, so a redelivered event after a crash
    # between the two still finds the rollout: wait for both, not the record alone)
    record = driver.wait_for(
        lambda: (store.get_rollout(name) is None and driver.record(name, arn.rsplit(":", 1)[-1])) or None,
        "its record and the rollout cleared",
        30,
    )
    assert record["status"] == "stopped", record
    driver.retire(config)
