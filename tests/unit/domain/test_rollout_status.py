"""What `modelops status` tells about a rollout in progress (modelops.rollout_view), from the
records the rollout steps really write: the canary's step (position, percent asked, share reached
with the replicas router), each wait's deadline and, while a version waits for approval, what to
run and until when."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelops.adapters.store import StateStore
from modelops.config import load_config_file, parse_config
from modelops.rollout_view import describe_rollout, step_line
from modelops.run import RunRef
from modelops.steps.rollout import RolloutService

from tests.integration.fake_kube import FakeKube, deployment

ROOT = Path(__file__).resolve().parents[3]
RUN = "churn-s3-0123456789abcdef"
OLD = "r.example/m@sha256:" + "1" * 64
T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z


class NoAlarms:
    """The TaskCallbacks port: no wait in these tests is ended by the rollout itself."""

    def succeed(self, token: str, output: dict[str, Any]) -> bool:
        raise AssertionError("nothing should end a wait here")

    def fail(self, token: str, error: str, cause: str) -> bool:
        raise AssertionError("nothing should end a wait here")


def stepped_run(**approval: Any) -> RunRef:
    document = load_config_file(ROOT / "models" / "churn.yaml").to_document()
    document["canary"] = {**document["canary"], "replicas": None, "steps": [10, 25, 50], "bake_seconds": 120}
    document["approval"] = {"required": True, "timeout_seconds": 5400, **approval}
    return RunRef(run_id=RUN, model="churn", config=parse_config(document))


def service_at(store: StateStore, kube: FakeKube, now: float) -> RolloutService:
    return RolloutService(kube=kube, store=store, metrics=None, callbacks=NoAlarms(), clock=lambda: now)  # type: ignore[arg-type]


def started(store: StateStore) -> FakeKube:
    """A canary started beside 3 stable pods (what DeployCanary records), holding the lock."""
    kube = FakeKube()
    kube.add(deployment("churn-stable", "stable", OLD, 3))
    kube.add(deployment("churn-canary", "canary", "r.example/m@sha256:" + "2" * 64, 1))
    store.acquire_lock("churn", RUN, 3600)
    store.update_rollout(
        "churn",
        RUN,
        {
            "previous_stable": {"image": OLD, "replicas": 3, "version": "6"},
            "phase": "canary",
            "version": "7",
            "router": "replicas",
        },
    )
    return kube


def status(store: StateStore, now: float) -> list[str]:
    rollout = store.get_rollout("churn")
    assert rollout is not None
    return describe_rollout("churn", rollout, stack="prod", now=now)


def test_status_follows_the_steps_with_the_share_the_replicas_router_reached(store):
    kube = started(store)
    assert status(store, T0) == [
        f"rollout:  canary (run {RUN}, version 7): starting the canary (deploy, readiness, smoke test)"
    ]
    run = stepped_run()
    service_at(store, kube, T0).shift_traffic(run, 0)
    assert "canary:   step 1 of 3: 10% asked, 25% reached (1 of 4 pods)" in status(store, T0)
    service_at(store, kube, T0 + 5).await_signal(run, "bake", "bake-token-1")
    lines = status(store, T0 + 65)
    assert lines[0].startswith(f"rollout:  bake (run {RUN}, version 7): baking the canary")
    assert lines[1:] == [
        "canary:   step 1 of 3: 10% asked, 25% reached (1 of 4 pods)",
        "bake ends 2027-01-15T08:02:05+00:00 (in 1m00s)",
    ]
    service_at(store, kube, T0 + 130).shift_traffic(run, 2)
    assert "canary:   step 3 of 3: 50% asked, 50% reached (3 of 6 pods)" in status(store, T0 + 130)
    assert kube.deployments["churn-canary"]["spec"]["replicas"] == 3


def test_status_while_a_version_waits_for_approval_says_what_to_run_and_until_when(store):
    kube = started(store)
    run = stepped_run()
    service_at(store, kube, T0).shift_traffic(run, 2)
    service_at(store, kube, T0 + 200).await_signal(run, "approval", "approval-token")
    lines = status(store, T0 + 260)
    assert lines == [
        f"rollout:  approval (run {RUN}, version 7): waiting for a person's approval",
        "canary:   step 3 of 3: 50% asked, 50% reached (3 of 6 pods)",
        # approval.timeout_seconds=5400 after the wait began at T0 + 200
        "approval wait ends 2027-01-15T09:33:20+00:00 (in 1h29m): no answer by then rolls it back",
        "waiting for approval: `modelops --stack prod approve --model churn` promotes it, "
        "`modelops --stack prod reject --model churn` rolls it back",
    ]
    # Past the deadline (the workflow's timeout has not rolled it back yet): said so
    assert "approval wait ends 2027-01-15T09:33:20+00:00 (passed)" in status(store, T0 + 6000)[2]


def test_a_weighted_step_and_a_one_step_canary_are_described_by_what_they_reached():
    weighted = {"traffic_steps": [{"index": 0, "router": "gateway_api", "weight": 10, "reached": 10.0}]}
    assert (
        step_line({**weighted, "steps_total": 3})
        == "step 1 of 3: 10% asked, 10% reached (router gateway_api)"
    )
    one = {
        "traffic_steps": [
            {
                "index": 0,
                "router": "replicas",
                "weight": None,
                "reached": 25.0,
                "canary_pods": 1,
                "stable_pods": 3,
            }
        ]
    }
    assert step_line({**one, "steps_total": 1}) == (
        "step 1 of 1: one step, sized by canary.replicas/percent, 25% reached (1 of 4 pods)"
    )
    # a record written before steps_total existed still shows its step
    assert step_line(weighted) == "step 1: 10% asked, 10% reached (router gateway_api)"
    assert step_line({}) is None
