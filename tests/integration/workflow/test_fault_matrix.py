"""Issue 5's fault matrix, the rows about workflow decisions (issue 11): the real state machine in
moto's interpreter, the real handlers, the in-process Kubernetes fake, one test per row.

Each row injects one fault through the harness (FakeKube.on_patch, Harness.lambda_faults,
training_stopped, build_failure, a lock left held) and asserts what the workflow decides: the
execution's status, the run's record, the stable Deployment's image, the canary at 0, the lock free
and no rollout left, plus what the row is about (retries through the fault, no double patch, the
error named). The rows whose point is real processes, real traffic and real timing (pods that
crash-loop or never get ready, the Kubernetes client's read timeout actually firing, with load on
the Service) stay in tests/e2e/test_fault_matrix.py; README "Fault matrix" says which row is where.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from modelops.errors import KubeConflictError, KubeUnavailableError

from tests.integration.fake_kube import FakeKube
from tests.integration.workflow.conftest import OLD
from tests.integration.workflow.harness import Context, Harness, WorkerGone, function_arn, load_handler
from tests.integration.workflow.test_workflow import CSV, FAST, _object_created, run

pytestmark = pytest.mark.timeout(300)

STABLE, CANARY = "churn-stable", "churn-canary"
#: as the KubeClient words a patch whose reply never came (urllib3's read timeout; the server went on)
READ_TIMED_OUT = (
    "patch deployments.apps models/{name}: API server unreachable: ReadTimeoutError: "
    "HTTPSConnectionPool(host='kubernetes', port=443): Read timed out. (read timeout=20.0)"
)


# --- following one run -----------------------------------------------------------------------------
def history(harness: Harness, arn: str) -> list[dict[str, Any]]:
    return list(harness.sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"])


def entered(harness: Harness, arn: str, state: str) -> float | None:
    """When the run first entered `state` (epoch seconds), None if it never did."""
    return next(
        (
            e["timestamp"].timestamp()
            for e in history(harness, arn)
            if e.get("stateEnteredEventDetails", {}).get("name") == state
        ),
        None,
    )


def failures(harness: Harness, arn: str) -> list[tuple[str, str]]:
    """(error, cause) of every task that failed in the run (each one the workflow retried or caught)."""
    details = [
        e.get("lambdaFunctionFailedEventDetails") or e.get("taskFailedEventDetails")
        for e in history(harness, arn)
    ]
    return [(d.get("error", ""), d.get("cause", "")) for d in details if d]


def record(harness: Harness, arn: str) -> dict[str, Any]:
    run_id = arn.rsplit(":", 1)[-1]
    records = harness.store().query_docs("churn", "HISTORY#", limit=50)
    return next((r for r in records if r.get("run_id") == run_id), {})


def image(kube: FakeKube) -> str:
    return str(kube.deployments[STABLE]["spec"]["template"]["spec"]["containers"][0]["image"])


def generation(kube: FakeKube, name: str) -> int:
    return int(kube.deployments[name]["metadata"]["generation"])


def final_state(
    harness: Harness,
    kube: FakeKube,
    arn: str,
    *,
    stable_image: str,
    status: str,
    outcome: str,
    lock_free: bool = True,
) -> dict[str, Any]:
    """Assert the run's end state: the execution's status and the run's record, the stable on
    `stable_image`, the canary at 0, no rollout left and (unless a follow-up took it) the lock
    free; return the record."""
    end = harness.wait(arn, timeout=180)["status"]
    done = record(harness, arn)
    assert end == status and done.get("status") == outcome, (end, done, harness.states(arn))
    assert image(kube) == stable_image, "the stable Deployment does not run the expected image"
    assert kube.deployments[CANARY]["spec"]["replicas"] == 0
    if lock_free:
        assert harness.store().lock_holder("churn") is None
    assert harness.store().get_rollout("churn") is None
    return done


def wait_for_phase(harness: Harness, phase: str, timeout: float = 60) -> dict[str, Any]:
    """The rollout once its waiting `phase` (bake, watch) has registered its task token."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rollout = harness.store().get_rollout("churn")
        if rollout and rollout.get("phase") == phase and rollout.get("task_token"):
            return rollout
        time.sleep(0.05)
    raise TimeoutError(f"rollout never waited in {phase}: {harness.store().get_rollout('churn')}")


def run_again(harness: Harness, key: str, **overrides: Any) -> str:
    """Another run, on new data under `key` (as `run` starts the first)."""
    harness.put_model(**{**FAST, **overrides})
    harness.upload(f"incoming/churn/{key}", CSV + f"{len(key)},21,1,1,0,1,1\n".encode())
    started = harness.start({"model": "churn", "dataset_key": f"incoming/churn/{key}", "request_id": key})
    assert started["started"], started
    return str(started["execution_arn"])


def promote_v2(harness: Harness, kube: FakeKube) -> str:
    """A first better version promoted (the stable then runs v2, which later rows roll back to)."""
    arn = run(harness)
    harness.wait(arn)
    v2 = image(kube)
    final_state(harness, kube, arn, stable_image=v2, status="SUCCEEDED", outcome="promoted")
    assert v2 != OLD
    return v2


# --- a person stops the execution mid-canary ---------------------------------------------------------
def test_an_execution_stopped_by_a_person_in_the_bake_leaves_v1_serving(harness, kube, monkeypatch):
    from modelops_local.moto_patches import MotoPatches

    monkeypatch.setenv("ROLLOUT_FUNCTION_ARN", function_arn("rollout"))
    on_execution_end = load_handler("on_execution_end")
    events: list[dict[str, Any]] = []
    with MotoPatches() as patches:
        patches.execution_status_events(events.append)
        # Given a healthy candidate in a long bake, its canary serving
        arn = run(harness, canary__bake_seconds=300)
        wait_for_phase(harness, "bake")
        assert kube.deployments[CANARY]["spec"]["replicas"] == 1
        # When a person stops the execution mid-canary
        harness.sfn.stop_execution(executionArn=arn, cause="a person")
        assert harness.sfn.describe_execution(executionArn=arn)["status"] == "ABORTED"
        deadline = time.monotonic() + 10
        while not events and time.monotonic() < deadline:
            time.sleep(0.05)
    # Then its status change reaches on_execution_end, which releases the lock and scales the canary to 0
    (event,) = events
    cleaned = on_execution_end.handler(event, Context("on_execution_end"))
    assert cleaned["action"] == "cleaned_up" and cleaned["released_lock"] is True, cleaned
    final_state(harness, kube, arn, stable_image=OLD, status="ABORTED", outcome="stopped")


# --- Kubernetes API errors in each phase ---------------------------------------------------------------
#: Each run puts one kind of fault in each phase (a Latin square over canary, promotion, rollback).
LATIN_SQUARE = [
    {"canary": "500", "promotion": "409", "rollback": "timeout"},
    {"canary": "409", "promotion": "timeout", "rollback": "500"},
    {"canary": "timeout", "promotion": "500", "rollback": "409"},
]


def arm(kube: FakeKube, name: str, kind: str, phase: str) -> Any:
    if kind == "500":  # twice; in the rollback five times, more than the old 4 retries allowed

        def answer_500(ops: list[dict[str, Any]]) -> None:
            raise KubeUnavailableError(f"patch deployments.apps models/{name}: API server answered 500: boom")

        return kube.on_patch(name, before=answer_500, times=5 if phase == "rollback" else 2)
    if kind == "409":  # more than the rollout's own 3 re-reads, so the workflow retries too

        def answer_409(ops: list[dict[str, Any]]) -> None:
            raise KubeConflictError(f"patch deployments.apps models/{name}: 409 Conflict: the object changed")

        return kube.on_patch(name, before=answer_409, times=4)

    # the client gives up after its read timeout; the server goes on and applies the patch
    def timed_out() -> None:
        raise KubeUnavailableError(READ_TIMED_OUT.format(name=name))

    return kube.on_patch(name, after=timed_out)


@pytest.mark.parametrize("kinds", LATIN_SQUARE, ids=lambda k: "-".join(f"{p}:{v}" for p, v in k.items()))
def test_kubernetes_api_errors_in_canary_promotion_and_rollback_are_retried_to_the_right_outcome(
    harness, kube, kinds
):
    # Given faults on the canary's first patch and the stable's first patch (the promotion)
    canary_fault = arm(kube, CANARY, kinds["canary"], "canary")
    promotion_fault = arm(kube, STABLE, kinds["promotion"], "promotion")
    # When the version is promoted and, in its watch, the stable alarm fires while the rollback's
    # restore of the stable meets the third fault
    arn = run(harness, canary__watch_seconds=300)
    wait_for_phase(harness, "watch")
    assert canary_fault.fired == canary_fault.times and promotion_fault.fired == promotion_fault.times
    assert image(kube) != OLD
    rollback_fault = arm(kube, STABLE, kinds["rollback"], "rollback")
    assert harness.alarm("modelops-churn-stable-error-rate")["action"] == "rollback"
    # Then every phase retried through its fault: rolled back to exactly v1's image
    done = final_state(harness, kube, arn, stable_image=OLD, status="FAILED", outcome="rolled_back")
    assert done["error"] == "WatchAlarmError" and rollback_fault.fired == rollback_fault.times, done
    # And the patch whose reply timed out (applied all the same) was retried
    assert any(
        error == "KubeUnavailableError" and "Read timed out" in cause
        for error, cause in failures(harness, arn)
    ), failures(harness, arn)


# --- the rollout function dies or times out mid-patch -----------------------------------------------------
def test_a_rollout_worker_killed_when_its_promotion_patch_lands_is_retried_with_no_double_patch(
    harness, kube
):
    # Given the worker running the promotion is killed once its patch of the stable reached the API
    # server (the patch lands: the worker died after sending it)
    def killed() -> None:
        raise WorkerGone("Runtime.ExitError", "Error: Runtime exited with error: signal: killed")

    kill = kube.on_patch(STABLE, after=killed)
    stable_generation = generation(kube, STABLE)
    arn = run(harness, canary__watch_seconds=300)
    wait_for_phase(harness, "watch")
    # Then Promote was retried, and the stable changed once: one new pod template, not two
    assert kill.fired == 1
    assert generation(kube, STABLE) == stable_generation + 1
    assert image(kube) != OLD
    # When the stable alarm fires in the watch, Then the recorded previous image (v1) is restored
    assert harness.alarm("modelops-churn-stable-error-rate")["action"] == "rollback"
    final_state(harness, kube, arn, stable_image=OLD, status="FAILED", outcome="rolled_back")
    assert generation(kube, STABLE) == stable_generation + 2
    assert "Runtime.ExitError" in [error for error, _ in failures(harness, arn)], failures(harness, arn)


def test_a_rollout_function_that_times_out_while_its_canary_patch_is_held_is_retried_to_promotion(
    harness, kube
):
    # Given the canary deployment's invocation times out after 1 s while the API server holds its
    # patch until the retried DeployCanary has begun, and then applies it (the worker is gone by
    # then: nothing after the patch runs). (On the local runtime: a 4 s timeout, a 6 s hold; the
    # retry came 4-6 s in, so the held patch landed while it ran.)
    timeout = harness.lambda_faults.add(
        "rollout", match=lambda e: e.get("action") == "deploy_canary", timeout=1
    )

    def deploys() -> int:
        return sum(
            1
            for name, e in list(harness.invocations)
            if name == "rollout" and e.get("action") == "deploy_canary"
        )

    def hold(ops: list[dict[str, Any]]) -> None:
        deadline = time.monotonic() + 60
        while deploys() < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert deploys() >= 2, "DeployCanary was not retried within 60 s"

    def worker_gone() -> None:
        raise WorkerGone("Sandbox.Timedout", "Task timed out after 1.00 seconds")

    held = kube.on_patch(CANARY, before=hold, after=worker_gone)
    canary_generation, stable_generation = generation(kube, CANARY), generation(kube, STABLE)
    # When a better version rolls out
    arn = run(harness)
    # Then DeployCanary is retried, the version is promoted, and each Deployment changed once per
    # step: the canary twice (deployed, scaled to 0), the stable once (promoted)
    harness.wait(arn, timeout=120)
    new_image = image(kube)
    final_state(harness, kube, arn, stable_image=new_image, status="SUCCEEDED", outcome="promoted")
    assert timeout.fired == 1 and held.fired == 1 and new_image != OLD
    assert generation(kube, CANARY) == canary_generation + 2
    assert generation(kube, STABLE) == stable_generation + 1
    assert "Sandbox.Timedout" in [error for error, _ in failures(harness, arn)], failures(harness, arn)


# --- alarms: during bake and promotion, after the watch, another model's --------------------------------
def test_another_models_canary_alarm_during_the_bake_is_ignored_and_the_version_promoted(harness, kube):
    harness.add_model("other", OLD)  # its alarms count; it never rolls out here
    # Given a healthy candidate in its bake
    arn = run(harness, canary__bake_seconds=3)
    wait_for_phase(harness, "bake")
    # When another model's canary alarm fires
    handled = harness.alarm("modelops-other-canary-error-rate")
    assert handled["action"] == "recorded", handled
    # Then this rollout ignores it and promotes
    harness.wait(arn, timeout=60)
    v2 = image(kube)
    final_state(harness, kube, arn, stable_image=v2, status="SUCCEEDED", outcome="promoted")
    assert v2 != OLD


def test_an_alarm_after_the_watch_ended_is_recorded_in_history_and_changes_nothing(harness, kube):
    # Given a version promoted, its watch over
    v2 = promote_v2(harness, kube)
    known = harness.executions()
    deployments = json.dumps(kube.deployments, sort_keys=True)
    # When this model's stable alarm fires
    handled = harness.alarm("modelops-churn-stable-error-rate")
    # Then it is recorded in the model's history and nothing changes
    assert handled["action"] == "recorded", handled
    recorded = harness.store().query_docs("churn", "ALARM#", limit=5)
    assert any(a["name"].endswith("churn-stable-error-rate") for a in recorded), recorded
    assert harness.executions() == known and image(kube) == v2
    assert json.dumps(kube.deployments, sort_keys=True) == deployments


def test_a_stable_alarm_during_promotion_rolls_back_at_the_watchs_first_moment(harness, kube):
    v2 = promote_v2(harness, kube)
    # Given a better candidate whose promotion is still rolling out the stable's pods
    kube.on_patch(STABLE, after=lambda: kube.unsettled.add(STABLE))
    arn = run_again(harness, "promotion-alarm.csv", canary__watch_seconds=300)
    harness.wait_for_state(arn, "WaitStableReady")
    # When the stable alarm fires meanwhile (no wait has a token yet: it is recorded on the rollout)
    handled = harness.alarm("modelops-churn-stable-error-rate")
    assert handled["action"] == "recorded", handled
    kube.unsettled.discard(STABLE)  # the stable's new pods get ready
    # Then the watch's first moment fails on it and the stable returns to v2's image
    done = final_state(harness, kube, arn, stable_image=v2, status="FAILED", outcome="rolled_back")
    assert done["error"] == "WatchAlarmError", done
    assert "Rollback" in harness.states(arn)


def test_a_canary_alarm_during_the_bake_rolls_back(harness, kube):
    # Given a candidate in its bake
    arn = run(harness, canary__bake_seconds=300)
    wait_for_phase(harness, "bake")
    # When its canary alarm fires, Then the bake fails at once and the run rolls back
    assert harness.alarm("modelops-churn-canary-error-rate")["action"] == "rollback"
    done = final_state(harness, kube, arn, stable_image=OLD, status="FAILED", outcome="rolled_back")
    assert done["error"] == "CanaryAlarmError", done


# --- training and build faults; a lock holder that died -----------------------------------------------------
TRAINING_AND_BUILD_FAULTS: dict[str, tuple[Callable[[Harness], None], str, str]] = {
    # a person's StopTrainingJob: SageMaker reports the job Stopped
    "training stopped": (
        lambda h: setattr(h, "training_stopped", ("Stopped", "Training job stopped")),
        "TrainingFailedError",
        "Stopped",
    ),
    # the job's StoppingCondition: SageMaker stops it, secondary status MaxRuntimeExceeded
    "training over its max runtime": (
        lambda h: setattr(
            h,
            "training_stopped",
            ("MaxRuntimeExceeded", "Training job stopped: it exceeded MaxRuntimeInSeconds=2"),
        ),
        "TrainingFailedError",
        "MaxRuntimeExceeded",
    ),
    # a corrupt source zip: CodeBuild fails the build in DOWNLOAD_SOURCE (the local CodeBuild does:
    # tests/integration/local/test_codebuild_local.py, corrupt_source)
    "image build fails": (
        lambda h: setattr(
            h,
            "build_failure",
            (
                "DOWNLOAD_SOURCE",
                "CLIENT_ERROR: source s3://modelops-pipeline/source/serving_image.zip: "
                "File is not a zip file",
            ),
        ),
        "BuildFailedError",
        "",
    ),
}


@pytest.mark.parametrize("fault", list(TRAINING_AND_BUILD_FAULTS))
def test_training_stopped_or_over_its_runtime_or_a_failed_build_fails_before_any_canary(harness, kube, fault):
    inject, error, says = TRAINING_AND_BUILD_FAULTS[fault]
    deployments = json.dumps(kube.deployments, sort_keys=True)
    # Given the fault, When a better version's run starts
    inject(harness)
    arn = run(harness)
    # Then the run fails before any canary, naming why, and nothing changed on the cluster
    done = final_state(harness, kube, arn, stable_image=OLD, status="FAILED", outcome="failed")
    assert done["error"] == error and says in done["cause"], done
    assert "DeployCanary" not in harness.states(arn)
    assert json.dumps(kube.deployments, sort_keys=True) == deployments


def test_a_lock_left_by_a_dead_holder_coalesces_requests_until_it_expires_then_the_next_run_proceeds(
    harness, kube
):
    # Given the model's lock is held by a run that died (no execution will release it), for 10 s more
    harness.put_model(**FAST)
    store = harness.store()
    dead = store.acquire_lock("churn", "churn-dead-holder", 10)
    assert dead.acquired
    # When data arrives while it is held, Then that request is coalesced (nothing rolls out)
    blocked = harness.start(_object_created(harness, "incoming/churn/while-held.csv", CSV))
    assert harness.wait(blocked["execution_arn"])["status"] == "SUCCEEDED"
    states = harness.states(blocked["execution_arn"])
    assert "Coalesced" in states and "ValidateDataset" not in states
    # When data arrives after the lock expired, Then that run takes the lock and rolls out
    deadline = time.monotonic() + 30
    while time.time() <= dead.expires_at + 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    newer = _object_created(harness, "incoming/churn/after-expiry.csv", CSV + b"1,21,1,1,0,1,1\n")
    after = harness.start(newer)
    arn = after["execution_arn"]
    harness.wait(arn, timeout=120)
    final_state(
        harness, kube, arn, stable_image=image(kube), status="SUCCEEDED", outcome="promoted", lock_free=False
    )
    took = entered(harness, arn, "ValidateDataset")
    assert took is not None and took > dead.expires_at and image(kube) != OLD
    # And the coalesced request ran after it as the follow-up, and found the newest object already
    # trained by that run: it trains nothing
    deadline = time.monotonic() + 30
    follow_ups: list[dict[str, Any]] = []
    while not follow_ups and time.monotonic() < deadline:
        follow_ups = [e for e in harness.executions() if "-queued-" in e["name"]]
        time.sleep(0.05)
    (follow,) = follow_ups
    assert harness.wait(follow["executionArn"])["status"] == "SUCCEEDED"
    follow_states = harness.states(follow["executionArn"])
    assert "Coalesced" in follow_states and "ValidateDataset" not in follow_states
    assert (entered(harness, follow["executionArn"], "AcquireLock") or 0) >= (
        entered(harness, arn, "ReleaseLock") or 0
    )
    assert store.lock_holder("churn") is None
