"""Canary analysis: alarms plus canary-versus-stable error rate and latency over the bake window.

Pure: the analyzer handler fetches metric sums and alarm states and passes them here.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from modelops.config import CanaryConfig

ALARM_KINDS = ("error-rate", "latency-p99")
VARIANTS = ("canary", "stable")


@dataclass(frozen=True)
class VariantMetrics:
    requests: float
    errors: float
    latency_p99_ms: float | None

    @property
    def error_rate(self) -> float | None:
        return None if self.requests <= 0 else self.errors / self.requests


@dataclass(frozen=True)
class AlarmState:
    name: str
    state: str  # OK | ALARM | INSUFFICIENT_DATA
    variant: str | None
    preexisting: bool = False  # already in ALARM before the canary started


@dataclass(frozen=True)
class CanaryReport:
    verdict: Literal["pass", "fail"]
    reasons: list[str]
    notes: list[str]
    canary: dict[str, Any]
    stable: dict[str, Any]
    alarms: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def alarm_name(prefix: str, model: str, variant: str, kind: str) -> str:
    """The name `modelops model put` gives an alarm; on_alarm parses it back with parse_alarm_name."""
    return f"{prefix}{model}-{variant}-{kind}"


def parse_alarm_name(name: str, prefix: str) -> tuple[str, str, str] | None:
    """(model, variant, kind) for one of our alarms, None for anyone else's."""
    if not name.startswith(prefix):
        return None
    kinds = "|".join(re.escape(k) for k in ALARM_KINDS)
    match = re.fullmatch(
        rf"(?P<model>[a-z0-9][-a-z0-9]*)-(?P<variant>canary|stable)-(?P<kind>{kinds})", name[len(prefix) :]
    )
    if match is None:
        return None
    return match["model"], match["variant"], match["kind"]


def analyze(
    config: CanaryConfig,
    *,
    canary: VariantMetrics,
    stable: VariantMetrics,
    alarms: list[AlarmState],
    first_version: bool = False,
) -> CanaryReport:
    """Pass only when no canary alarm fires, enough canary requests arrived, and the canary's error
    rate and p99 latency stay within the absolute and relative-to-stable thresholds.

    `first_version`: nothing serves the model yet (the stable Deployment has no replicas), so no
    production traffic can reach the canary and there is no baseline; the minimum-request guard
    becomes a note, and the smoke test, alarms and absolute thresholds decide (Flagger likewise
    skips analysis on a workload's initial deployment)."""
    reasons: list[str] = []
    notes: list[str] = []
    for alarm in alarms:
        if alarm.state != "ALARM":
            continue
        if alarm.preexisting:
            # Firing before the canary started: not the new version's fault, but never promote
            # past a canary alarm we cannot judge.
            notes.append(f"alarm {alarm.name} was already in ALARM before the canary started")
            if alarm.variant == "canary":
                reasons.append(
                    f"canary alarm {alarm.name} has been in ALARM since before the canary started; fix it first"
                )
        elif alarm.variant == "canary":
            reasons.append(f"canary alarm {alarm.name} is in ALARM")
        else:
            notes.append(f"alarm {alarm.name} ({alarm.variant}) is in ALARM; not counted against the canary")

    if canary.requests < config.min_requests and first_version:
        notes.append(
            f"first version: canary served {canary.requests:.0f} requests (min_requests {config.min_requests} "
            "applies once a stable version serves traffic); judged on the smoke test and alarms"
        )
    elif canary.requests < config.min_requests:
        reasons.append(
            f"canary served {canary.requests:.0f} requests, fewer than min_requests {config.min_requests}: "
            "not enough evidence to promote"
        )
    canary_rate = canary.error_rate
    stable_rate = stable.error_rate
    if canary_rate is not None:
        if canary_rate > config.max_error_rate:
            reasons.append(
                f"canary error rate {canary_rate:.2%} exceeds max_error_rate {config.max_error_rate:.2%}"
            )
        if stable_rate is not None and canary_rate > stable_rate + config.max_error_rate_increase:
            reasons.append(
                f"canary error rate {canary_rate:.2%} exceeds stable {stable_rate:.2%} by more than "
                f"{config.max_error_rate_increase:.2%}"
            )
    if canary.latency_p99_ms is not None:
        if canary.latency_p99_ms > config.max_latency_p99_ms:
            reasons.append(
                f"canary p99 latency {canary.latency_p99_ms:.1f} ms exceeds {config.max_latency_p99_ms} ms"
            )
        if (
            stable.latency_p99_ms
            and canary.latency_p99_ms > stable.latency_p99_ms * config.max_latency_ratio
            and canary.latency_p99_ms - stable.latency_p99_ms > config.min_latency_increase_ms
        ):
            reasons.append(
                f"canary p99 latency {canary.latency_p99_ms:.1f} ms is more than {config.max_latency_ratio}x "
                f"stable's {stable.latency_p99_ms:.1f} ms (and more than {config.min_latency_increase_ms:g} ms "
                "above it)"
            )
    summary = [asdict(a) for a in alarms]
    return CanaryReport(
        verdict="fail" if reasons else "pass",
        reasons=reasons,
        notes=notes,
        canary={**asdict(canary), "error_rate": canary_rate},
        stable={**asdict(stable), "error_rate": stable_rate},
        alarms=summary,
    )


#: The rollout's phases that wait on a task token (Bake, AwaitApproval, Watch): an alarm, `abort`,
#: `approve`, `reject` or `promote` ends the wait through that token.
WAIT_PHASES = ("bake", "approval", "watch")


def relevant_alarms(rollout: dict[str, Any], phase: str) -> list[str]:
    """Alarms recorded on the rollout that count against the new version in `phase`: the canary's
    during the bake and the approval wait (the canary still serves), the stable's after promotion
    during the watch; never one already firing before the canary started."""
    preexisting = set(rollout.get("preexisting_alarms", []))
    since = float(rollout.get("promoted_at", 0)) if phase == "watch" else 0.0
    variant = "stable" if phase == "watch" else "canary"
    fired = []
    for alarm in rollout.get("alarms", []):
        if alarm.get("state") != "ALARM" or alarm.get("name") in preexisting:
            continue
        if alarm.get("variant") == variant and float(alarm.get("at", 0)) >= since:
            fired.append(alarm["name"])
    return fired
