"""AnalyzeCanary: after the bake, alarms plus canary-versus-stable error rate and latency."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from modelops.canary import AlarmState, analyze
from modelops.errors import EvaluationError
from modelops.ports import Metrics, Store
from modelops.run import RunRef


def analyze_canary(
    run: RunRef, *, store: Store, metrics: Metrics, now: float | None = None
) -> dict[str, Any]:
    """{"verdict": "pass" | "fail", "reasons": [...], ...} over the bake window."""
    config = run.config
    rollout = store.get_rollout(config.name)
    if rollout is None or rollout.get("run_id") != run.run_id:
        raise EvaluationError(f"no active rollout for run {run.run_id}: cannot analyze the canary")
    end = datetime.fromtimestamp(now if now is not None else time.time(), UTC)
    started = rollout.get("bake_started_at") or rollout.get("started_at") or end.timestamp()
    start = datetime.fromtimestamp(float(started), UTC)
    if (end - start).total_seconds() < 1:
        start = datetime.fromtimestamp(end.timestamp() - 1, UTC)
    preexisting = set(rollout.get("preexisting_alarms", []))
    alarms = [
        AlarmState(a.name, a.state, a.variant, preexisting=a.name in preexisting)
        for a in metrics.alarm_states(config.name)
    ]
    report = analyze(
        config.canary,
        canary=metrics.variant_metrics(config.name, "canary", start, end),
        stable=metrics.variant_metrics(config.name, "stable", start, end),
        alarms=alarms,
        first_version=int((rollout.get("previous_stable") or {}).get("replicas") or 0) == 0,
    )
    steps = rollout.get("traffic_steps") or []
    if steps:  # the step just baked keeps its verdict in the run's record
        steps = [*steps[:-1], {**steps[-1], "verdict": report.verdict}]
        store.update_rollout(config.name, run.run_id, {"traffic_steps": steps})
    return {**report.to_dict(), "window": {"start": start.isoformat(), "end": end.isoformat()}}
