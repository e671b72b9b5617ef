"""The drift monitor (a scheduled function, per model): the stable variant's live traffic over the
last period against the serving version's baseline, as PSI per feature and for the predictions.

It publishes the figures as metrics (`DriftPSI` per feature, `DriftMaxPSI`, `DriftSamples`), which
the model's alarm `<stack>-<model>-drift` watches (created by `modelops model put`), and stores
them as the model's DRIFT document, which `modelops status` shows and a drift-triggered run
carries into its record. The alarm's ALARM reaches start_pipeline through EventBridge like any
other trigger: this function never starts a run itself.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from modelops.drift import BASELINE_FILE, DRIFT_DOC, PREDICTION, Baseline, parse_baseline, report
from modelops.errors import DriftError, EvaluationError, RequestError
from modelops.evaluation import read_tarball_member
from modelops.ports import DriftMetrics, ObjectStore, Store
from modelops.run import Champion
from modelops.steps.evaluation import MAX_ARTIFACT_BYTES, split_s3_uri
from modelops.steps.resolve import load_model
from modelops.triggers import MODEL_NAME_RE

#: The variant whose traffic is judged: the one serving the champion.
VARIANT = "stable"

# Baselines by artifact URI while the function stays warm (an artifact never changes).
_baselines: dict[str, Baseline] = {}


class DriftTick(BaseModel):
    """The input of a model's drift schedule (EventBridge Scheduler, created by `modelops model put`)."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(pattern=r"^modelops\.drift$")
    model: str = Field(pattern=MODEL_NAME_RE.pattern)
    scheduled_time: str = Field(default="", max_length=64)


def drift_schedule_input(model: str) -> str:
    """The schedule's Input; EventBridge Scheduler fills the scheduled time in."""
    return json.dumps(
        {"source": "modelops.drift", "model": model, "scheduled_time": "<aws.scheduler.scheduled-time>"}
    )


def monitor(
    tick: DriftTick,
    *,
    store: Store,
    objects: ObjectStore,
    metrics: DriftMetrics,
    now: float | None = None,
) -> dict[str, Any]:
    """Judge the last period of the model's stable traffic against its champion's baseline;
    publish and store the figures. Skips (saying why) a model without drift monitoring, a
    champion or a baseline. UnknownModelError for a model without a config."""
    config = load_model(store, tick.model)
    drift = config.drift
    if not drift.enabled:
        return {"action": "skipped", "reason": f"drift monitoring is off for {tick.model}"}
    champion = Champion.model_validate(store.get_doc(tick.model, "CHAMPION") or {})
    artifact = (champion.baseline or {}).get("artifact")
    if not champion.version or not artifact:
        why = (champion.baseline or {}).get("note") or "its serving version has no baseline"
        return {"action": "skipped", "reason": f"no drift baseline for {tick.model}: {why}"}
    baseline = load_baseline(objects, str(artifact))
    end = datetime.fromtimestamp(now if now is not None else time.time(), UTC).replace(microsecond=0)
    start = end - timedelta(minutes=drift.period_minutes)
    promoted = _moment(champion.promoted_at)
    if promoted is not None and promoted > start:
        start = promoted  # only the serving version's traffic counts
    watched = drift.features or [p.name for p in baseline.features]
    codes = {name: len(baseline.profile(name).shares) for name in [*watched, PREDICTION]}
    counts = metrics.code_counts(tick.model, VARIANT, codes, start, end)
    result = report(
        baseline,
        counts,
        model=tick.model,
        version=champion.version,
        window=(start.isoformat(), end.isoformat()),
        threshold=drift.threshold,
        min_samples=drift.min_samples,
        features=watched,
    )
    # The datapoint belongs to the window it judged: stamped at its start, so the alarm's period
    # holding it is already over when it arrives.
    metrics.publish_drift(tick.model, result.psi, result.samples, start)
    doc = {**result.to_dict(), "headline": result.headline(), "checked_at": end.isoformat()}
    store.put_doc(tick.model, DRIFT_DOC, doc)
    return {"action": "checked", **doc}


def load_baseline(objects: ObjectStore, artifact: str) -> Baseline:
    """The baseline.json inside `artifact` (a model.tar.gz), cached while warm; DriftError names
    what is wrong."""
    cached = _baselines.get(artifact)
    if cached is not None:
        return cached
    try:
        bucket, key = split_s3_uri(artifact)
    except EvaluationError as exc:  # not an s3:// URI
        raise DriftError(str(exc)) from None
    size = objects.size(bucket, key)
    if size is None:
        raise DriftError(f"{artifact}: the artifact holding the drift baseline is missing")
    if size > MAX_ARTIFACT_BYTES:
        raise DriftError(f"{artifact}: {size} bytes is too large to read the baseline from")
    raw = read_tarball_member(objects.read(bucket, key), BASELINE_FILE, source=artifact)
    if raw is None:
        raise DriftError(f"{artifact}: no {BASELINE_FILE} in the artifact")
    try:
        baseline = parse_baseline(json.loads(raw), source=f"{artifact}/{BASELINE_FILE}")
    except ValueError as exc:
        raise DriftError(f"{artifact}/{BASELINE_FILE}: not valid JSON: {exc}") from None
    _baselines[artifact] = baseline
    return baseline


def parse_tick(event: Any) -> DriftTick:
    """The schedule's input; RequestError naming the field when malformed."""
    from pydantic import ValidationError

    from modelops.config import format_validation_error

    if not isinstance(event, dict):
        raise RequestError(f"event must be a JSON object, got {type(event).__name__}")
    try:
        return DriftTick.model_validate(event)
    except ValidationError as exc:
        raise RequestError(f"malformed drift schedule input: {format_validation_error(exc)}") from None


def _moment(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
