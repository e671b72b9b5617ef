"""RecordSuccess, RecordRejection, RecordRollback, RecordFailure: the run's outcome goes into the
model's history (and the champion, when promoted), the registered version gets its approval, and
the Notify state publishes the message returned here."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any, Literal

from modelops.ports import ModelRegistry, Store
from modelops.run import RunState
from modelops.steps.registry import APPROVAL_BY_STATUS

#: Smoke rows kept with a version's record (a DynamoDB item holds 400 KB).
SMOKE_ROWS_KEPT = 100

Status = Literal["promoted", "rejected", "failed", "rolled_back", "rollback_failed"]


def record_outcome(
    state: RunState,
    status: Status,
    *,
    store: Store,
    registry: ModelRegistry | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """Record the run's outcome; return the notification (`subject`, `message`) and, for a failed
    run, the error and cause its Fail state reports."""
    run, package, build, evaluation = state.run, state.package, state.build, state.evaluation
    when = datetime.fromtimestamp(now if now is not None else time.time(), UTC).isoformat(timespec="seconds")
    error = state.error or {}
    error_name = str(error.get("Error", "")) if error else ""
    if error_name.startswith("States."):  # a Fail state may not reuse the reserved States.* names
        error_name = "Workflow" + error_name.removeprefix("States.") + "Error"
    cause = _cause_text(error.get("Cause")) if error else ""
    rollout = store.get_rollout(run.model)
    own = rollout is not None and rollout.get("run_id") == run.run_id
    decision = state.decision
    restore = run.restore
    # The version's model as judged when it was trained: this run's evaluation, or for a restore
    # run the record of the version it brings back.
    artifact, metric, value = (
        (evaluation.model_artifact, evaluation.metric, evaluation.candidate)
        if evaluation
        else (restore.model_artifact, restore.metric, restore.value)
        if restore
        else (None, None, None)
    )
    if registry is not None and package is not None:
        _approve_in_registry(registry, state, status, f"{error_name}: {cause}" if error_name else "")
    record = {
        "run_id": run.run_id,
        "model": run.model,
        "status": status,
        "finished_at": when,
        "trigger": run.request.trigger,
        "drift": run.request.drift,
        "dataset": run.dataset.to_payload(),
        "version": package.version if package else None,
        "image": build.image if build else None,
        "evaluation": evaluation.to_payload() if evaluation else None,
        "analysis": state.analysis,
        # each canary step: the percent asked, the share reached (pods for the replicas router)
        "traffic_steps": (rollout or {}).get("traffic_steps") if own else None,
        "approval": decision,
        "restore": restore.model_dump(mode="json", exclude={"smoke_sample"}) if restore else None,
        "error": error_name or None,
        "cause": cause or None,
    }
    store.put_doc(run.model, f"HISTORY#{when}#{run.run_id}", record)
    trained = (state.lock or {}).get("object")
    if trained and evaluation:  # its candidate was trained and evaluated: see lock.newer_or_trained
        store.put_doc(run.model, "TRAINED", {**trained, "run_id": run.run_id})
    if restore is None and package is not None and build is not None and build.image:
        # What `modelops rollback --to VERSION` brings back: the version's serving image by digest,
        # whether it was ever promoted, and the rows its canary was smoke-tested with.
        store.put_doc(
            run.model,
            f"VERSION#{package.version}",
            {
                "version": package.version,
                "image": build.image,
                "package_arn": package.package_arn,
                "group": package.group,
                "model_artifact": artifact,
                "metric": metric,
                "value": value,
                "dataset": run.dataset.to_payload(),
                "smoke_sample": (state.dataset or {}).get("smoke_sample", [])[:SMOKE_ROWS_KEPT],
                "run_id": run.run_id,
                "status": status,
                "promoted_at": when if status == "promoted" else None,
                "finished_at": when,
            },
        )
    if status == "promoted":
        store.put_doc(
            run.model,
            "CHAMPION",
            {
                "version": package.version if package else None,
                "image": build.image if build else None,
                "model_artifact": artifact,
                "metric": metric,
                "value": value,
                "run_id": run.run_id,
                "promoted_at": when,
                "baseline": evaluation.baseline if evaluation else None,
            },
        )
    store.clear_rollout(run.model, run.run_id)
    subject, message = _notification(record)
    return {
        "status": status,
        "subject": subject,
        "message": message,
        "error": error_name or "RunFailed",
        "cause": cause or message,
    }


def _approve_in_registry(registry: ModelRegistry, state: RunState, status: Status, error: str) -> None:
    """The registered version's approval once its run ends, saying who approved it (a person's
    `approve` or `promote`), who brought it back (a restore run) and why it failed."""
    run, package, build, decision, restore = (
        state.run,
        state.package,
        state.build,
        state.decision,
        state.run.restore,
    )
    approval = APPROVAL_BY_STATUS.get(status)
    if package is None or approval is None or (restore is not None and status != "promoted"):
        return  # a version that served before keeps its approval when bringing it back fails
    description = f"modelops run {run.run_id}: {status}"
    metadata: dict[str, str] = {"outcome": status}
    if restore is not None:
        description += f"; brought back by {restore.requested_by or 'unknown'} (rollback --to"
        description += f"{' --now' if restore.now else ''}): {restore.reason}"
        metadata["restored_by"] = restore.requested_by
    if decision is not None:
        description += f"; approved by {decision['approved_by']} at {decision['approved_at']} (modelops {decision.get('via')})"
        metadata.update(approved_by=str(decision["approved_by"]), approved_at=str(decision["approved_at"]))
    if error:
        description += f"; {error}"
    if build is not None and build.image:
        metadata["serving_image"] = build.image
    registry.set_approval(package.package_arn, approval, description, metadata)


def _cause_text(cause: Any) -> str:
    """Lambda errors arrive as a JSON payload with errorMessage; keep the human part."""
    if isinstance(cause, str):
        try:
            parsed = json.loads(cause)
        except ValueError:
            return cause[:2000]
        if isinstance(parsed, dict) and "errorMessage" in parsed:
            return str(parsed["errorMessage"])[:2000]
        return cause[:2000]
    return json.dumps(cause)[:2000] if cause is not None else ""


def _notification(record: dict[str, Any]) -> tuple[str, str]:
    model, status, version = record["model"], record["status"], record.get("version")
    titles = {
        "promoted": f"[modelops] {model}: version {version} promoted",
        "rejected": f"[modelops] {model}: candidate rejected by evaluation",
        "coalesced": f"[modelops] {model}: request coalesced",
        "rolled_back": f"[modelops] {model}: version {version} ROLLED BACK",
        "failed": f"[modelops] {model}: run failed",
        "rollback_failed": f"[modelops] {model}: ROLLBACK FAILED - action needed",
    }
    lines = [f"run {record['run_id']} finished {status} at {record['finished_at']}"]
    if record.get("image"):
        lines.append(f"image: {record['image']}")
    if record.get("evaluation"):
        lines.append(f"evaluation: {record['evaluation'].get('reason', '')}")
    if record.get("traffic_steps"):
        steps = [
            f"{s.get('summary')}" + (f" ({s['verdict']})" if s.get("verdict") else "")
            for s in record["traffic_steps"]
        ]
        lines.append(f"canary steps: {'; '.join(steps)}")
    if record.get("restore"):
        restore = record["restore"]
        lines.append(
            f"brought back version {restore['version']} (rollback --to{' --now' if restore.get('now') else ''}) "
            f"for {restore.get('requested_by') or 'unknown'}: {restore.get('reason') or ''}"
        )
    if record.get("approval"):
        decision = record["approval"]
        lines.append(
            f"approved by {decision['approved_by']} at {decision['approved_at']} (modelops {decision.get('via')})"
        )
    if record.get("error"):
        lines.append(f"error: {record['error']}: {record.get('cause') or ''}")
    return titles.get(status, f"[modelops] {model}: {status}")[:100], "\n".join(lines)
