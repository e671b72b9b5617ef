"""The workflow's retry policies for the faults of issue 5: a rollout invocation that timed out or
whose worker died is retried (its actions are idempotent), and a rollback is retried for minutes."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
STATES = json.loads((ROOT / "statemachines" / "retrain_and_rollout.asl.json").read_text())["States"]
ROLLOUT_STATES = [
    name
    for name, state in STATES.items()
    if "RolloutFunctionArn" in json.dumps(state.get("Resource", "")) + json.dumps(state.get("Parameters", {}))
]


def test_every_rollout_state_retries_a_timed_out_or_dead_invocation():
    assert {"DeployCanary", "Promote", "Rollback", "CheckRollbackReady", "Bake", "Watch"} <= set(
        ROLLOUT_STATES
    )
    for name in ROLLOUT_STATES:
        retried = {error for retrier in STATES[name]["Retry"] for error in retrier["ErrorEquals"]}
        assert {
            "Sandbox.Timedout",
            "Runtime.ExitError",
            "Lambda.Unknown",
            "KubeUnavailableError",
        } <= retried, name


def test_the_rollout_functions_own_timeout_fires_before_its_tasks():
    template = (ROOT / "template.yaml").read_text()
    rollout = template.split("  RolloutFunction:\n", 1)[1].split("\n  RolloutLogs:", 1)[0]
    function_timeout = int(rollout.split("Timeout: ", 1)[1].split()[0])
    for name in ROLLOUT_STATES:
        if "TimeoutSeconds" in STATES[name]:
            assert STATES[name]["TimeoutSeconds"] > function_timeout, name


def test_a_rollback_is_retried_for_minutes_before_it_is_reported_failed():
    for name in ("Rollback", "CheckRollbackReady"):
        (retrier,) = STATES[name]["Retry"]
        waits = [
            min(retrier["IntervalSeconds"] * retrier["BackoffRate"] ** n, retrier.get("MaxDelaySeconds", 1e9))
            for n in range(retrier["MaxAttempts"])
        ]
        assert retrier["MaxAttempts"] >= 10 and 180 <= sum(waits) <= 600, (name, waits)


def test_every_transient_fault_is_retried_with_jittered_exponential_backoff():
    # The integration tier scales these waits down (tests/integration/workflow/conftest.py,
    # RETRY_WAIT_SCALE); the intervals AWS waits are these, read from the definition.
    lambda_tasks = [
        name
        for name, state in STATES.items()
        if state["Type"] == "Task" and "FunctionArn" in json.dumps(state.get("Resource", ""))
    ]
    assert len(lambda_tasks) >= 20
    for name in lambda_tasks:
        retriers = [
            r
            for r in STATES[name].get("Retry", [])
            if {"TransientError", "States.ALL"} & set(r["ErrorEquals"])
        ]
        assert retriers, name
        for retrier in retriers:
            assert retrier["IntervalSeconds"] >= 2 and retrier["BackoffRate"] >= 2.0, (name, retrier)
            assert retrier["MaxAttempts"] >= 4 and retrier["JitterStrategy"] == "FULL", (name, retrier)
