"""Canary traffic steps in the real state machine (moto's interpreter, the real handlers): each
step shifts the traffic through the model's router, bakes and is analysed; an alarm at any step
rolls back; CanaryPassed after the last step's analysis leads to promotion."""

from __future__ import annotations

import json
import time

import pytest

from tests.integration.fake_kube import http_route
from tests.integration.workflow.conftest import OLD
from tests.integration.workflow.test_workflow import run

GATEWAY = {
    "canary__router": "gateway_api",
    "canary__steps": [10, 25, 50],
    "kubernetes__stable_service": "churn-stable",
    "kubernetes__http_route": "churn",
}


def image_of(deployment):
    return deployment["spec"]["template"]["spec"]["containers"][0]["image"]


def wait_for_bake_of_step(harness, index, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rollout = harness.store().get_rollout("churn") or {}
        if rollout.get("step") == index and rollout.get("phase") == "bake" and rollout.get("task_token"):
            return rollout
        time.sleep(0.02)
    raise TimeoutError(
        f"step {index}'s bake never registered its token: {harness.store().get_rollout('churn')}"
    )


def test_three_httproute_steps_bake_and_pass_then_promote(harness, kube):
    # Given an HTTPRoute sending everything to the stable Service, and a model stepping 10/25/50
    kube.add_object("httproutes", http_route("churn", "churn-stable", "churn-canary"))
    arn = run(harness, **GATEWAY)
    # When the workflow runs
    result = harness.wait(arn)
    # Then every step shifted, baked and was analysed, in order, before promotion
    assert result["status"] == "SUCCEEDED", harness.states(arn)
    states = harness.states(arn)
    assert states.count("ShiftTraffic") == 3 and states.count("Bake") == 3
    assert states.count("AnalyzeCanary") == 3 and states.count("CanaryPassed") == 1
    assert states.index("CanaryPassed") < states.index("Promote")
    # And the route's canary weight went 10, 25, 50, then back to 0 once the stable carried the
    # new version (the canary scaled to 0 only after that)
    assert kube.route_weights == [10, 25, 50, 0]
    names = [name for name, _ in kube.patches]
    stable_patch = names.index("churn-stable")
    route_reset = len(names) - 1 - names[::-1].index("churn")
    canary_out = len(names) - 1 - names[::-1].index("churn-canary")
    assert stable_patch < route_reset < canary_out
    refs = kube.objects[("httproutes", "churn")]["spec"]["rules"][0]["backendRefs"]
    assert [(r["name"], r["weight"]) for r in refs] == [("churn-stable", 100), ("churn-canary", 0)]
    assert image_of(kube.deployments["churn-stable"]).startswith(harness.repo_uri + "@sha256:")
    assert kube.deployments["churn-canary"]["spec"]["replicas"] == 0
    # And the run's record says which share each step reached
    record = harness.store().query_docs("churn", "HISTORY#")[0]
    assert record["status"] == "promoted"
    assert [(s["weight"], s["reached"]) for s in record["traffic_steps"]] == [
        (10, 10.0),
        (25, 25.0),
        (50, 50.0),
    ]
    assert [s["verdict"] for s in record["traffic_steps"]] == ["pass", "pass", "pass"]


@pytest.mark.parametrize("step", [0, 1, 2])
def test_an_alarm_at_any_step_rolls_back_weights_canary_and_nothing_else(harness, kube, step):
    # Given the same three steps, each baked 5 s
    kube.add_object("httproutes", http_route("churn", "churn-stable", "churn-canary"))
    stable_before = json.dumps(kube.deployments["churn-stable"]["spec"], sort_keys=True)
    arn = run(harness, **GATEWAY, canary__bake_seconds=5)
    # When the canary's error-rate alarm fires during that step's bake
    wait_for_bake_of_step(harness, step)
    assert harness.alarm("modelops-churn-canary-error-rate")["action"] == "rollback"
    result = harness.wait(arn, timeout=30)
    # Then the run rolls back from that step: weights 100/0 on the stable, canary at 0, stable untouched
    assert result["status"] == "FAILED" and result["error"] == "CanaryAlarmError"
    states = harness.states(arn)
    assert (
        states.count("ShiftTraffic") == step + 1 and "CanaryPassed" not in states and "Promote" not in states
    )
    assert kube.route_weights == [*[10, 25, 50][: step + 1], 0]
    assert kube.deployments["churn-canary"]["spec"]["replicas"] == 0
    assert json.dumps(kube.deployments["churn-stable"]["spec"], sort_keys=True) == stable_before
    assert image_of(kube.deployments["churn-stable"]) == OLD
    assert harness.store().lock_holder("churn") is None
    record = harness.store().query_docs("churn", "HISTORY#")[0]
    assert record["status"] == "rolled_back"
    assert [s["weight"] for s in record["traffic_steps"]] == [10, 25, 50][: step + 1]


def test_the_replicas_router_approximates_steps_by_pods_and_says_which_share_it_reached(harness, kube):
    # Given the replicas router (no traffic router installed) beside 3 stable pods
    arn = run(harness, canary__steps=[10, 25, 50], canary__replicas=None)
    result = harness.wait(arn)
    assert result["status"] == "SUCCEEDED", harness.states(arn)
    # Then each step's pods are the nearest share the pods allow: 1 of 4 (25%), 1 of 4, 3 of 6 (50%)
    record = harness.store().query_docs("churn", "HISTORY#")[0]
    reached = [
        (s["weight"], s["canary_pods"], s["stable_pods"], s["reached"]) for s in record["traffic_steps"]
    ]
    assert reached == [(10, 1, 3, 25.0), (25, 1, 3, 25.0), (50, 3, 3, 50.0)]
    assert record["traffic_steps"][0]["summary"] == "10% -> 1 of 4 pods = 25%"
    canary_replicas = [
        op["value"]
        for name, ops in kube.patches
        if name == "churn-canary"
        for op in ops
        if op["path"] == "/spec/replicas"
    ]
    assert canary_replicas == [1, 3, 0]
    # And the notification says so too
    assert any("10% -> 1 of 4 pods = 25%" in m for m in harness.notifications())
