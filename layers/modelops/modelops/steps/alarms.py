"""on_alarm: a CloudWatch alarm state change fails the active rollout's Bake, approval wait or Watch at once
(SendTaskFailure on the task token the rollout recorded), so the workflow rolls back."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from modelops.canary import WAIT_PHASES, parse_alarm_name, relevant_alarms
from modelops.ports import Store, TaskCallbacks
from modelops.triggers import drift_alarm_model, parse_alarm_event


def handle_alarm(
    event: Any, *, store: Store, callbacks: TaskCallbacks, alarm_prefix: str, now: float | None = None
) -> dict[str, Any]:
    """Fail the active rollout's bake/watch task when the alarm counts against the new version;
    record it otherwise. Alarms of other stacks or models are ignored."""
    change = parse_alarm_event(event)
    name, state = change.alarm_name, change.state
    if drift_alarm_model(name, alarm_prefix) is not None:
        return {
            "action": "ignored",
            "reason": f"{name} is a drift alarm: its ALARM starts a retrain (start_pipeline)",
        }
    parsed = parse_alarm_name(name, alarm_prefix)
    if parsed is None:
        return {"action": "ignored", "reason": f"alarm {name} is not one of this stack's model alarms"}
    model, variant, kind = parsed
    if store.get_model_document(model) is None:
        return {"action": "ignored", "reason": f"alarm {name} names unknown model {model}"}
    at = now if now is not None else time.time()
    alarm = {
        "name": name,
        "state": state,
        "variant": variant,
        "kind": kind,
        "at": at,
        "reason": change.reason,
    }
    if state != "ALARM":
        return {"action": "ignored", "reason": f"{name} -> {state}"}
    rollout = store.record_alarm_on_rollout(model, alarm)
    if rollout is None:
        stamp = datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")
        store.put_doc(model, f"ALARM#{stamp}#{name}", {**alarm, "note": "fired with no rollout active"})
        return {
            "action": "recorded",
            "reason": f"no rollout of {model} active; {name} recorded in its history",
        }
    phase = rollout.get("phase")
    token = rollout.get("task_token")
    if phase not in WAIT_PHASES or not token:
        return {
            "action": "recorded",
            "reason": f"rollout in phase {phase}; checked when the bake/approval/watch wait starts",
        }
    if name not in relevant_alarms(rollout, phase):
        return {"action": "recorded", "reason": f"{name} does not count in phase {phase}"}
    error = "WatchAlarmError" if phase == "watch" else "CanaryAlarmError"
    cause = json.dumps({"alarm": name, "phase": phase, "reason": change.reason[:500]})
    if not callbacks.fail(token, error, cause):
        return {"action": "recorded", "reason": f"{phase} already over"}
    return {"action": "rollback", "run_id": rollout["run_id"], "phase": phase, "alarm": name}
