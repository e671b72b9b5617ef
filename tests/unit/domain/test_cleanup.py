"""on_execution_end's domain: after an execution ends without its own cleanup (stopped, timed out,
failed outside the workflow's paths), the lock is released, the canary rolled back, the run recorded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from modelops.adapters.rollout_function import LambdaRollback
from modelops.adapters.store import StateStore
from modelops.config import load_config_file
from modelops.errors import RequestError, RollbackFailedError
from modelops.run import RunRef
from modelops.steps.cleanup import clean_up_after_execution

ROOT = Path(__file__).resolve().parents[3]
MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:modelops-retrain-and-rollout"
RUN = "churn-s3-0123456789abcdef"


@pytest.fixture
def store(store: StateStore) -> StateStore:
    """The shared empty state table, holding the churn model's config."""
    store.put_model_document("churn", load_config_file(ROOT / "models" / "churn.yaml").to_document())
    return store


class FakeSfn:
    """The Executions port: records what it started."""

    def __init__(self) -> None:
        self.started: list[dict[str, Any]] = []

    def start(self, name: str, payload: str) -> str | None:
        self.started.append({"name": name, "input": payload})
        return f"{MACHINE}:{name}"


def event(
    status: str = "ABORTED", name: str = RUN, machine: str = MACHINE, model: str | None = "churn"
) -> dict:
    return {
        "source": "aws.states",
        "detail-type": "Step Functions Execution Status Change",
        "detail": {
            "executionArn": f"{machine.replace(':stateMachine:', ':execution:')}:{name}",
            "stateMachineArn": machine,
            "name": name,
            "status": status,
            "input": json.dumps({"model": model} if model else {"oops": 1}),
            "error": None,
            "cause": None,
        },
    }


def clean(store: StateStore, sfn: FakeSfn, rollbacks: list[RunRef], **kwargs: Any) -> dict[str, Any]:
    def rollback(run: RunRef) -> dict[str, Any]:
        rollbacks.append(run)
        return {"restored": False}

    return clean_up_after_execution(
        event(**kwargs),
        store=store,
        rollback=rollback,
        executions=sfn,
        state_machine_arn=MACHINE,
        now=1_800_000_000,
    )


@pytest.mark.parametrize("phase", ["canary", "bake", "approval", "watch"])
def test_a_stopped_execution_mid_canary_is_rolled_back_its_lock_released_and_the_follow_up_started(
    store, phase
):
    # Given a run that holds the lock, has a canary out (baking, waiting for approval, or promoted
    # and watched), and a request coalesced behind it
    store.acquire_lock("churn", RUN, 3600)
    steps = [{"index": 0, "weight": 10, "reached": 10.0, "summary": "10% -> weight 10%", "verdict": "pass"}]
    store.update_rollout(
        "churn",
        RUN,
        {
            "phase": phase,
            "task_token": "t",
            "image": "repo@sha256:" + "1" * 64,
            "version": "7",
            "traffic_steps": steps,
        },
    )
    store.put_doc(
        "churn", "PENDING", {"model": "churn", "trigger": "s3", "idempotency_key": "k", "reason": "r"}
    )
    sfn, rollbacks = FakeSfn(), []
    # When its execution is stopped
    result = clean(store, sfn, rollbacks)
    # Then the lock is free, the rollout function's rollback ran for that run with the model's config
    assert result["action"] == "cleaned_up" and result["released_lock"] is True
    assert store.lock_holder("churn") is None and store.get_rollout("churn") is None
    assert [r.run_id for r in rollbacks] == [RUN] and rollbacks[0].config.name == "churn"
    # And the run is in history as stopped, and the coalesced request started as the follow-up
    record = store.query_docs("churn", "HISTORY#", limit=1)[0]
    assert (
        record["status"] == "stopped" and record["version"] == "7" and record["error"] == "ExecutionAborted"
    )
    assert record["traffic_steps"] == steps  # how far its canary got
    assert len(sfn.started) == 1 and "-queued-" in sfn.started[0]["name"] and result["follow_up"]
    # And a redelivered event finds nothing left to do
    assert clean(store, sfn, rollbacks)["action"] == "none" and len(rollbacks) == 1


def test_an_execution_that_ended_through_its_own_release_is_left_alone(store):
    # Given another run now holds the lock (the ended one released it itself)
    store.acquire_lock("churn", "churn-s3-another", 3600)
    sfn, rollbacks = FakeSfn(), []
    # When the ended run's FAILED event arrives, Then nothing is touched
    assert clean(store, sfn, rollbacks, status="FAILED")["action"] == "none"
    assert store.lock_holder("churn")[0] == "churn-s3-another" and rollbacks == [] and sfn.started == []


def test_a_timed_out_run_before_its_canary_only_releases_the_lock(store):
    store.acquire_lock("churn", RUN, 3600)
    sfn, rollbacks = FakeSfn(), []
    result = clean(store, sfn, rollbacks, status="TIMED_OUT")
    assert result["released_lock"] is True and result["rollback"] is None and rollbacks == []
    assert store.query_docs("churn", "HISTORY#", limit=1)[0]["status"] == "timed_out"


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"status": "SUCCEEDED"}, "ended SUCCEEDED"),
        ({"machine": MACHINE.replace("modelops-", "other-")}, "not this stack's workflow"),
        ({"model": None}, "names no model"),
    ],
)
def test_other_executions_and_outcomes_are_ignored(store, overrides, reason):
    store.acquire_lock("churn", RUN, 3600)
    result = clean(store, FakeSfn(), [], **overrides)
    assert result["action"] == "ignored" and reason in result["reason"]
    assert store.lock_holder("churn")[0] == RUN


def test_not_a_status_change_event_is_a_request_error(store):
    with pytest.raises(RequestError):
        clean_up_after_execution(
            {"detail-type": "Object Created"},
            store=store,
            rollback=dict,
            executions=FakeSfn(),
            state_machine_arn=MACHINE,
        )


def test_the_rollback_goes_through_the_rollout_function_and_its_failure_is_raised():
    class Payload:
        def __init__(self, body: bytes) -> None:
            self.body = body

        def read(self) -> bytes:
            return self.body

    class FakeLambda:
        def __init__(self, error: bool) -> None:
            self.error, self.calls = error, []

        def invoke(self, **kwargs: Any) -> dict[str, Any]:
            self.calls.append(kwargs)
            if self.error:
                return {
                    "FunctionError": "Unhandled",
                    "Payload": Payload(b'{"errorType": "KubeUnavailableError"}'),
                }
            return {"Payload": Payload(b'{"restored": true}')}

    run = RunRef(run_id=RUN, model="churn", config=load_config_file(ROOT / "models" / "churn.yaml"))
    ok = FakeLambda(error=False)
    assert LambdaRollback(ok, function="arn:rollout")(run) == {"restored": True}
    sent = json.loads(ok.calls[0]["Payload"])
    assert ok.calls[0]["FunctionName"] == "arn:rollout"
    assert sent["action"] == "rollback" and sent["run"]["run_id"] == RUN
    assert RunRef.model_validate(sent["run"]) == run  # the rollout function parses what was sent
    with pytest.raises(RollbackFailedError, match="KubeUnavailableError"):
        LambdaRollback(FakeLambda(error=True), function="arn:rollout")(run)


def test_a_run_that_lost_its_lock_changes_no_deployment():
    from modelops.errors import RolloutFailedError
    from modelops.steps.rollout import RolloutService

    class Store:
        def lock_holder(self, model: str) -> tuple[str, int] | None:
            return None  # released for it (its execution was stopped) or expired and taken

    class NoKube:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"the Kubernetes API was called: {name}")

    service = RolloutService(kube=NoKube(), store=Store(), metrics=None, callbacks=None)  # type: ignore[arg-type]
    run = RunRef(run_id=RUN, model="churn", config=load_config_file(ROOT / "models" / "churn.yaml"))
    with pytest.raises(RolloutFailedError, match="no longer holds the lock"):
        service.deploy_canary(run, "repo@sha256:" + "1" * 64, "7")
