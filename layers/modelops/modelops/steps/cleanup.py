"""on_execution_end: clean up after an execution that ended without running its own Rollback and ReleaseLock.

Step Functions runs no Catch when a person calls StopExecution (or when the execution times out, or
fails outside the workflow's error paths), so a canary could keep serving and the model's lock stay
held until it expires. EventBridge's `Step Functions Execution Status Change` event (ABORTED,
TIMED_OUT, FAILED) invokes `on_execution_end`, which:

1. releases the model's lock if that execution still holds it: from then on the run's own rollout
   actions refuse to change the Deployments (`RolloutService._require_lock`), so a call still in
   flight when the execution was stopped cannot start or promote a canary afterwards;
2. if the execution still has an active rollout (it got as far as DeployCanary), runs the rollout
   function's own `rollback` action: the canary to 0 and, if promotion had begun, the stable back to
   the image recorded before the canary started;
3. records the run in history (`stopped`, `timed_out` or `failed`) and starts the follow-up run
   for requests coalesced meanwhile, as ReleaseLock does.

Idempotent: an execution that went through its own ReleaseLock (every FAILED run of the workflow's
own paths) holds no lock and no rollout, and is left alone; a redelivered event finds nothing left.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from modelops.errors import RequestError
from modelops.ports import Executions, Rollback, Store
from modelops.run import RunRef
from modelops.steps.lock import release
from modelops.steps.resolve import load_model

#: Execution statuses after which the workflow may not have cleaned up itself.
ENDED_ABNORMALLY = {"ABORTED": "stopped", "TIMED_OUT": "timed_out", "FAILED": "failed"}


class ExecutionStatusChange(BaseModel):
    """The `detail` of a `Step Functions Execution Status Change` event (the fields used here)."""

    model_config = ConfigDict(extra="ignore")

    executionArn: str
    stateMachineArn: str
    name: str
    status: str
    input: str | None = None
    error: str | None = None
    cause: str | None = None


def parse_execution_event(event: Any) -> ExecutionStatusChange:
    """The event's detail; RequestError when it is not a Step Functions status change."""
    if not isinstance(event, dict) or event.get("detail-type") != "Step Functions Execution Status Change":
        raise RequestError("not a 'Step Functions Execution Status Change' event")
    try:
        return ExecutionStatusChange.model_validate(event.get("detail"))
    except ValidationError as exc:
        raise RequestError(f"Step Functions status change event without {exc.errors()[0]['loc']}") from None


def clean_up_after_execution(
    event: Any,
    *,
    store: Store,
    rollback: Rollback,
    executions: Executions,
    state_machine_arn: str,
    now: float | None = None,
) -> dict[str, Any]:
    """See the module docstring; returns what was done (`action`: ignored | none | cleaned_up)."""
    change = parse_execution_event(event)
    if change.stateMachineArn != state_machine_arn:
        return {"action": "ignored", "reason": f"{change.stateMachineArn} is not this stack's workflow"}
    outcome = ENDED_ABNORMALLY.get(change.status)
    if outcome is None:
        return {"action": "ignored", "reason": f"execution {change.name} ended {change.status}"}
    model = _model_of(change.input)
    if model is None:
        return {"action": "ignored", "reason": f"execution {change.name}'s input names no model"}
    run_id = change.name
    holder = store.lock_holder(model)
    held = holder is not None and holder[0] == run_id
    rollout = store.get_rollout(model)
    active = rollout is not None and rollout.get("run_id") == run_id
    if not held and not active:
        return {
            "action": "none",
            "reason": f"{run_id} holds neither the lock nor a rollout of {model}: it cleaned up itself",
        }
    # 1. The lock first: it fences off this run's own rollout actions still in flight.
    released = store.release_lock(model, run_id) if held else False
    # 2. The canary to 0 and the stable to its recorded image, by the rollout function's own action.
    rolled_back: dict[str, Any] | None = None
    if active:
        rolled_back = rollback(RunRef(run_id=run_id, model=model, config=load_model(store, model)))
    # 3. History, then the follow-up for requests coalesced while this run held the lock.
    when = datetime.fromtimestamp(now if now is not None else time.time(), UTC).isoformat(timespec="seconds")
    record = {
        "run_id": run_id,
        "model": model,
        "status": outcome,
        "finished_at": when,
        "version": (rollout or {}).get("version"),
        "image": (rollout or {}).get("image"),
        "error": change.error or f"Execution{change.status.title().replace('_', '')}",
        "cause": change.cause
        or f"execution {change.status}; cleaned up by on_execution_end (lock released: {released}, "
        f"rollback: {'run' if active else 'not needed'})",
        "cleanup": {"released_lock": released, "rollback": rolled_back},
        "traffic_steps": (rollout or {}).get("traffic_steps") if active else None,
    }
    store.put_doc(model, f"HISTORY#{when}#{run_id}", record)
    store.clear_rollout(model, run_id)
    follow_up = None
    if released:
        follow_up = release(model, run_id, store=store, executions=executions)["follow_up"]
    return {
        "action": "cleaned_up",
        "run_id": run_id,
        "model": model,
        "status": outcome,
        "released_lock": released,
        "rollback": rolled_back,
        "follow_up": follow_up,
    }


def _model_of(text: str | None) -> str | None:
    try:
        document = json.loads(text or "")
    except ValueError:
        return None
    model = document.get("model") if isinstance(document, dict) else None
    return model if isinstance(model, str) and model else None
