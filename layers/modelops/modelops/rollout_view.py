"""What `modelops status` says about a model's rollout in progress: its phase, its canary step
(position, the percent asked and the share actually reached) and, while the run waits (bake,
approval, watch), until when; while it waits for approval, what to run. Pure: it reads the rollout
record the rollout function keeps (steps/rollout.py) and writes nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

#: What each phase means to the person reading `modelops status`.
PHASES = {
    "canary": "starting the canary (deploy, readiness, smoke test)",
    "step": "shifting traffic to the canary's step",
    "bake": "baking the canary (alarms and analysis at its end)",
    "approval": "waiting for a person's approval",
    "promoting": "promoting the new version to the stable",
    "watch": "promoted; watching the stable's alarms",
    "rollback": "rolling back to the stable's recorded image",
}

_WAIT_NAMES = {"bake": "bake", "approval": "approval wait", "watch": "watch"}


def _stamp(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")


def _left(seconds: float) -> str:
    if seconds <= 0:
        return "passed"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"in {hours}h{minutes:02d}m"
    return f"in {minutes}m{secs:02d}s" if minutes else f"in {secs}s"


def step_line(rollout: dict[str, Any]) -> str | None:
    """`step 2 of 3: 25% asked, 25% reached (1 of 4 pods)`, or None before the first step."""
    steps = rollout.get("traffic_steps") or []
    if not steps:
        return None
    current = steps[-1]
    index = int(current.get("index", len(steps) - 1))
    total = rollout.get("steps_total")
    where = f"step {index + 1} of {total}" if total else f"step {index + 1}"
    weight = current.get("weight")
    asked = f"{weight}% asked" if weight is not None else "one step, sized by canary.replicas/percent"
    reached = f"{float(current.get('reached', 0.0)):g}% reached"
    pods = current.get("canary_pods"), current.get("stable_pods")
    how = (
        f" ({pods[0]} of {int(pods[0]) + int(pods[1])} pods)"
        if pods[0] is not None and pods[1] is not None
        else f" (router {current.get('router', rollout.get('router', '?'))})"
    )
    return f"{where}: {asked}, {reached}{how}"


def describe_rollout(model: str, rollout: dict[str, Any], *, stack: str, now: float) -> list[str]:
    """The status lines of a model's rollout in progress (each without the leading indent)."""
    phase = str(rollout.get("phase", "?"))
    version = rollout.get("version")
    lines = [
        f"rollout:  {phase} (run {rollout['run_id']}"
        + (f", version {version}" if version else "")
        + f"): {PHASES.get(phase, 'unknown phase')}"
    ]
    step = step_line(rollout)
    if step:
        lines.append(f"canary:   {step}")
    deadline = rollout.get("wait_deadline")
    if phase in _WAIT_NAMES and deadline is not None:
        lines.append(
            f"{_WAIT_NAMES[phase]} ends {_stamp(float(deadline))} ({_left(float(deadline) - now)})"
            + (": no answer by then rolls it back" if phase == "approval" else "")
        )
    if phase == "approval":
        cli = f"modelops --stack {stack}"
        lines.append(
            f"waiting for approval: `{cli} approve --model {model}` promotes it, "
            f"`{cli} reject --model {model}` rolls it back"
        )
    if rollout.get("abort"):
        abort = rollout["abort"]
        lines.append(f"abort requested by {abort.get('by')} at {abort.get('at')}")
    return lines
