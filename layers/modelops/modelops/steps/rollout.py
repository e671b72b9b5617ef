"""DeployCanary, CheckCanaryReady, SmokeTest, Bake, Promote, CheckStableReady, FinishPromotion,
Watch, Rollback and CheckRollbackReady: the rollout actions on EKS, each idempotent (safe to retry
or repeat).

begin          record the stable Deployment's image (once, before any change): what rollback restores
deploy_canary  begin, then patch the canary (the router reset to the stable first)
shift_traffic  give the canary a step's share of the traffic through the model's router
status         is the target Deployment rolled out on the expected image? (bounded by a deadline)
smoke_test     predictions through the API server's service proxy to the canary Service
await_signal   register the bake/approval/watch task token; fail at once if an alarm already
               fired or `modelops abort` was asked for
promote        patch the stable Deployment with the new image
finish         all traffic to the stable (router weights 100/0), then the canary to 0, once the
               stable carries the new image
rollback       router weights back to the stable, the canary to 0, the stable's recorded image

The readiness checks, promote, finish and the waits first check the rollout for an abort
(`modelops abort`, recorded by `modelops.control`): AbortRequestedError, which the workflow
catches into Rollback (the smoke test, a few seconds, is not interrupted: the bake's wait that
follows it fails at once).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable
from typing import Any, Literal

from modelops.canary import WAIT_PHASES, relevant_alarms
from modelops.config import ModelConfig
from modelops.deployments import current_image, image_patch, replicas_patch, rollout_status
from modelops.errors import (
    AbortRequestedError,
    KubeConflictError,
    KubeInvalidError,
    KubeNotFoundError,
    RollbackFailedError,
    RolloutFailedError,
    SmokeTestFailedError,
)
from modelops.ports import Kube, Metrics, Store, TaskCallbacks
from modelops.routers import TrafficRouter, router_for, step_plan
from modelops.run import RunRef

Target = Literal["canary", "stable", "rollback"]
_PATCH_ATTEMPTS = 3


class RolloutService:
    """The rollout actions of one function invocation, over its ports."""

    def __init__(
        self,
        *,
        kube: Kube,
        store: Store,
        metrics: Metrics,
        callbacks: TaskCallbacks,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.kube = kube
        self.store = store
        self.metrics = metrics
        self.callbacks = callbacks
        self.clock = clock

    # --- deploy ------------------------------------------------------------------------------
    def begin(self, run: RunRef, image: str, version: str) -> dict[str, Any]:
        """Record the stable Deployment's image (once, before any change) as this run's rollout:
        what Rollback restores. DeployCanary starts with it; `rollback --to --now` promotes after it."""
        cfg = run.config
        k = cfg.kubernetes
        run_id, model = run.run_id, cfg.name
        self._require_lock(model, run_id)
        stable = self.kube.get_deployment(k.namespace, k.stable_deployment)
        existing = self.store.get_rollout(model)
        if existing is not None and existing.get("run_id") != run_id:
            # We hold the model's lock, so a rollout record of another run is stale (it died).
            self.store.clear_rollout(model, existing["run_id"])
            existing = None
        if existing is None or "previous_stable" not in existing:
            previous = {
                "image": current_image(stable, k.container),
                "replicas": int(stable.get("spec", {}).get("replicas", 0)),
                "version": stable.get("spec", {})
                .get("template", {})
                .get("metadata", {})
                .get("annotations", {})
                .get("modelops.io/version"),
            }
            preexisting = [a.name for a in self.metrics.alarm_states(model) if a.state == "ALARM"]
            existing = self.store.update_rollout(
                model,
                run_id,
                {
                    "previous_stable": previous,
                    "preexisting_alarms": preexisting,
                    "phase": "canary",
                    "image": image,
                    "version": version,
                    "started_at": self.clock(),
                },
            )
        return {
            "previous_stable": existing["previous_stable"],
            "preexisting_alarms": existing.get("preexisting_alarms", []),
        }

    def shift_traffic(self, run: RunRef, index: int) -> dict[str, Any]:
        """Step `index` of the canary: its share of the traffic set through the router and recorded
        on the rollout (`traffic_steps`: asked, reached, pods); returns what the workflow's step
        loop reads (`next`, `last`, the step's `bake_seconds`)."""
        cfg = run.config
        plan = step_plan(cfg)
        if not 0 <= index < len(plan):
            raise RolloutFailedError(f"canary step {index} does not exist: the model has {len(plan)} step(s)")
        rollout = self._rollout(cfg.name, run.run_id)
        self._require_lock(cfg.name, run.run_id)
        _refuse_if_aborted(rollout)
        shift = self._router(cfg, rollout).shift(plan[index])
        recorded = [s for s in rollout.get("traffic_steps") or [] if int(s.get("index", -1)) < index]
        entry = {"index": index, **shift.to_dict(), "summary": shift.describe(), "at": self.clock()}
        self.store.update_rollout(
            cfg.name,
            run.run_id,
            {
                "phase": "step",
                "step": index,
                "steps_total": len(plan),
                "traffic_steps": [*recorded, entry],
                # a step that adds canary pods is waited for like the first one
                "deadline_canary": self.clock() + cfg.canary.ready_timeout_seconds,
            },
        )
        return {
            "index": index,
            "next": index + 1,
            "last": index == len(plan) - 1,
            "steps": len(plan),
            "weight": shift.weight,
            "reached": shift.reached,
            "summary": shift.describe(),
            "bake_seconds": cfg.canary.step_bake_seconds,
        }

    def deploy_canary(self, run: RunRef, image: str, version: str) -> dict[str, Any]:
        cfg = run.config
        k = cfg.kubernetes
        begun = self.begin(run, image, version)
        router = self._router(cfg, begun)
        # A weighted router still routing to a canary (a run that died mid-step) is reset before
        # the canary changes: the new image gets traffic only from its first step on.
        router.reset()
        replicas = router.canary_pods(step_plan(cfg)[0])
        self._patch_image(k.namespace, k.canary_deployment, k.container, image, version, run.run_id, replicas)
        self.store.update_rollout(
            cfg.name,
            run.run_id,
            {"deadline_canary": self.clock() + cfg.canary.ready_timeout_seconds, "router": router.kind},
        )
        return {"router": router.kind, "canary_replicas": replicas, **begun}

    def promote(self, run: RunRef, image: str, version: str) -> dict[str, Any]:
        cfg = run.config
        k = cfg.kubernetes
        rollout = self._rollout(cfg.name, run.run_id)
        _refuse_if_aborted(rollout)
        self._require_lock(cfg.name, run.run_id)
        # Recorded before the patch: if the patch's response is lost, rollback still restores.
        self.store.update_rollout(
            cfg.name,
            run.run_id,
            {
                "phase": "promoting",
                "stable_changed": True,
                "promoted_at": self.clock(),
                "deadline_stable": self.clock() + cfg.canary.ready_timeout_seconds,
            },
        )
        previous_replicas = int(rollout["previous_stable"]["replicas"] or 0)
        replicas = None if previous_replicas > 0 else k.initial_replicas
        self._patch_image(k.namespace, k.stable_deployment, k.container, image, version, run.run_id, replicas)
        return {"stable_image": image, "replicas": replicas or previous_replicas}

    def finish_promotion(self, run: RunRef) -> dict[str, Any]:
        cfg = run.config
        k = cfg.kubernetes
        rollout = self._rollout(cfg.name, run.run_id)
        _refuse_if_aborted(rollout)
        # The stable carries the new version now: all traffic to it, and only then the canary
        # out (never a moment where a weight points at a Service with no pods).
        self._router(cfg, rollout).reset()
        self.kube.patch_deployment(k.namespace, k.canary_deployment, replicas_patch(0))
        self.store.update_rollout(cfg.name, run.run_id, {"phase": "watch"})
        return {"canary_replicas": 0}

    # --- checks ------------------------------------------------------------------------------
    def status(self, run: RunRef, target: Target, image: str | None) -> dict[str, Any]:
        """{"ready": bool, "message": ...}; RolloutFailedError on ProgressDeadlineExceeded or past the deadline."""
        cfg = run.config
        k = cfg.kubernetes
        rollout = self._rollout(cfg.name, run.run_id)
        if target == "rollback":
            return self._rollback_status(cfg, rollout)
        _refuse_if_aborted(rollout)
        name = k.canary_deployment if target == "canary" else k.stable_deployment
        deployment = self.kube.get_deployment(k.namespace, name)
        result = rollout_status(deployment, container=k.container, expected_image=image)
        deadline = float(rollout.get(f"deadline_{target}", math.inf))
        if not result.done and self.clock() > deadline:
            raise RolloutFailedError(
                f"{result.message} (not ready within ready_timeout_seconds={cfg.canary.ready_timeout_seconds})"
            )
        return {
            "ready": result.done,
            "message": result.message,
            "ready_replicas": result.ready,
            "replicas": result.replicas,
        }

    def smoke_test(self, run: RunRef, sample: list[list[float | str | None]]) -> dict[str, Any]:
        """Predictions for the dataset's smoke rows (a missing value is null, a categorical
        feature's value its text) from the canary Service; SmokeTestFailedError unless it answers
        200 with one prediction per row: a finite number (regression) or a class label named in
        `classes`, with that row's finite class `probabilities` (classification)."""
        cfg = run.config
        k = cfg.kubernetes
        rows = sample[: cfg.canary.smoke_sample_size]
        if not rows:
            raise SmokeTestFailedError("no smoke sample rows: the dataset validator produced none")
        status, body = self.kube.service_proxy_post(
            k.namespace,
            k.canary_service,
            k.port,
            "invocations",
            {"instances": rows},
            "application/json",
        )
        where = f"service {k.namespace}/{k.canary_service}:{k.port}/invocations"
        if status != 200:
            raise SmokeTestFailedError(f"{where} answered {status}: {body[:300]}")
        try:
            doc = json.loads(body)
            predictions = doc["predictions"]
        except (ValueError, KeyError, TypeError):
            raise SmokeTestFailedError(
                f"{where} answered 200 without a predictions list: {body[:300]}"
            ) from None
        if not isinstance(predictions, list) or len(predictions) != len(rows):
            raise SmokeTestFailedError(
                f"{where} returned {len(predictions) if isinstance(predictions, list) else 'no'} "
                f"predictions for {len(rows)} rows"
            )
        problem = _prediction_problem(doc, predictions)
        if problem:
            raise SmokeTestFailedError(f"{where} {problem}")
        return {"rows": len(rows), "status": status}

    def await_signal(
        self, run: RunRef, phase: Literal["bake", "approval", "watch"], token: str
    ) -> dict[str, Any]:
        """Store the phase's task token; if a relevant alarm already fired, or an abort was asked
        for before the wait began, fail the task now (whoever asks later finds the token)."""
        assert phase in WAIT_PHASES
        now = self.clock()
        rollout = self.store.update_rollout(
            run.model,
            run.run_id,
            {
                "phase": phase,
                "task_token": token,
                f"{phase}_started_at": now,
                # when the workflow's wait times out (`modelops status` shows it)
                "wait_deadline": now + _wait_seconds(run.config, phase),
            },
        )
        if rollout.get("abort"):
            self.callbacks.fail(token, "AbortRequestedError", abort_cause(rollout["abort"]))
            return {"phase": phase, "aborted": True, "alarms": []}
        fired = relevant_alarms(rollout, phase)
        if fired:
            self.callbacks.fail(
                token,
                "WatchAlarmError" if phase == "watch" else "CanaryAlarmError",
                json.dumps({"alarms": fired, "phase": phase}),
            )
        return {"phase": phase, "alarms": fired}

    # --- rollback ----------------------------------------------------------------------------
    def rollback(self, run: RunRef) -> dict[str, Any]:
        cfg = run.config
        k = cfg.kubernetes
        rollout = self.store.get_rollout(cfg.name)
        if rollout is None or rollout.get("run_id") != run.run_id:
            # Failed before the canary changed anything: nothing to restore.
            return {"restored": False, "reason": "no rollout recorded for this run"}
        self.store.update_rollout(
            cfg.name,
            run.run_id,
            {"phase": "rollback", "deadline_rollback": self.clock() + cfg.canary.ready_timeout_seconds},
        )
        # Weights back to the stable first, then the canary out (as after a promotion). No route
        # or Ingress at all (a run that failed on exactly that) routes nothing to the canary.
        with contextlib.suppress(KubeNotFoundError):
            self._router(cfg, rollout).reset()
        with contextlib.suppress(KubeNotFoundError):  # no canary Deployment: nothing serving from it
            self.kube.patch_deployment(k.namespace, k.canary_deployment, replicas_patch(0))
        previous = rollout["previous_stable"]
        stable = self.kube.get_deployment(k.namespace, k.stable_deployment)
        restored = False
        drifted = current_image(stable, k.container) != previous["image"] or int(
            stable["spec"].get("replicas", 0)
        ) != int(previous["replicas"])
        if rollout.get("stable_changed") and drifted:
            self._patch_image(
                k.namespace,
                k.stable_deployment,
                k.container,
                previous["image"],
                previous.get("version"),
                run.run_id,
                int(previous["replicas"]),
                require_digest=False,
            )
            restored = True
        return {"restored": restored, "stable_image": previous["image"]}

    def _rollback_status(self, cfg: ModelConfig, rollout: dict[str, Any]) -> dict[str, Any]:
        k = cfg.kubernetes
        previous = rollout["previous_stable"]
        try:
            stable = self.kube.get_deployment(k.namespace, k.stable_deployment)
            result = rollout_status(stable, container=k.container, expected_image=previous["image"])
        except RolloutFailedError as exc:
            raise RollbackFailedError(
                f"stable Deployment did not return to {previous['image']}: {exc}"
            ) from None
        canary = self.kube.get_deployment(k.namespace, k.canary_deployment)
        canary_left = int((canary.get("status") or {}).get("replicas") or 0)
        try:
            weight = self._router(cfg, rollout).canary_share()
        except KubeNotFoundError:
            weight = 0.0
        ready = result.done and canary_left == 0 and weight == 0
        message = (
            result.message
            if not result.done
            else f"stable on {previous['image']}; {canary_left} canary pods left; canary weight {weight:g}%"
        )
        if not ready and self.clock() > float(rollout.get("deadline_rollback", math.inf)):
            raise RollbackFailedError(f"rollback not verified in time: {message}")
        return {"ready": ready, "message": message, "stable_image": previous["image"]}

    # --- helpers -----------------------------------------------------------------------------
    def _router(self, cfg: ModelConfig, rollout: dict[str, Any]) -> TrafficRouter:
        """The model's router, sized by the stable's replicas recorded before the canary started."""
        stable_replicas = int((rollout.get("previous_stable") or {}).get("replicas") or 0)
        return router_for(cfg, self.kube, stable_replicas)

    def _require_lock(self, model: str, run_id: str) -> None:
        """Change a Deployment only while this run holds the model's lock: a run whose lock expired
        or was released for it (its execution was stopped) must not start or promote a canary."""
        holder = self.store.lock_holder(model)
        if holder is None or holder[0] != run_id:
            raise RolloutFailedError(
                f"run {run_id} no longer holds the lock of model {model} "
                f"({'held by ' + holder[0] if holder else 'released'}); not changing its Deployments"
            )

    def _rollout(self, model: str, run_id: str) -> dict[str, Any]:
        rollout = self.store.get_rollout(model)
        if rollout is None or rollout.get("run_id") != run_id:
            raise RolloutFailedError(
                f"no active rollout of run {run_id} for model {model} (was it rolled back?)"
            )
        return rollout

    def _patch_image(
        self,
        namespace: str,
        name: str,
        container: str,
        image: str,
        version: str | None,
        run_id: str,
        replicas: int | None,
        *,
        require_digest: bool = True,
    ) -> dict[str, Any]:
        """Read, build a guarded JSON Patch, apply; on a conflict re-read and try again (bounded)."""
        last: Exception | None = None
        for _ in range(_PATCH_ATTEMPTS):
            deployment = self.kube.get_deployment(namespace, name)
            if require_digest:
                ops = image_patch(
                    deployment,
                    container=container,
                    image=image,
                    replicas=replicas,
                    version=version,
                    run_id=run_id,
                )
            else:  # restoring whatever ran before, which may predate digest pinning
                ops = _unpinned_patch(deployment, container, image, replicas, version, run_id)
            try:
                return self.kube.patch_deployment(namespace, name, ops)
            except KubeConflictError as exc:
                last = exc
            except KubeInvalidError as exc:
                if "test" not in str(exc).lower():
                    raise
                last = exc  # the pod template moved under us: re-read and rebuild the patch
        raise KubeConflictError(
            f"deployment {namespace}/{name} kept changing; gave up after {_PATCH_ATTEMPTS} tries: {last}"
        )


def abort_cause(abort: dict[str, Any]) -> str:
    """The error cause an abort is reported with (the run's history keeps it)."""
    reason = f": {abort['reason']}" if abort.get("reason") else ""
    return f"aborted by {abort.get('by', 'unknown')} at {abort.get('at', '?')} in phase {abort.get('phase', '?')}{reason}"


def _wait_seconds(cfg: ModelConfig, phase: str) -> int:
    """The wait's timeout as the workflow sets it (Bake: the step's bake; AwaitApproval:
    approval.timeout_seconds; Watch: watch_seconds)."""
    if phase == "approval":
        return cfg.approval.timeout_seconds
    return cfg.canary.watch_seconds if phase == "watch" else cfg.canary.step_bake_seconds


def _refuse_if_aborted(rollout: dict[str, Any]) -> None:
    if rollout.get("abort"):
        raise AbortRequestedError(abort_cause(rollout["abort"]))


def _unpinned_patch(
    deployment: dict[str, Any],
    container: str,
    image: str,
    replicas: int | None,
    version: str | None,
    run_id: str,
) -> list[dict[str, Any]]:
    fake_digest = "x@sha256:" + "0" * 64  # build the ops with a pinned placeholder, then swap the image in
    ops = image_patch(
        deployment, container=container, image=fake_digest, replicas=replicas, version=version, run_id=run_id
    )
    for op in ops:
        if op.get("value") == fake_digest:
            op["value"] = image
    return ops


def _prediction_problem(doc: dict[str, Any], predictions: list[Any]) -> str | None:
    """What is wrong with an answer's predictions, or None. A regressor answers finite numbers; a
    classifier answers labels out of its `classes`, each row with one finite probability per class."""
    classes = doc.get("classes")
    if classes is None:
        bad = [p for p in predictions if not _finite(p)]
        return f"returned non-numeric predictions, e.g. {bad[:3]}" if bad else None
    if not isinstance(classes, list) or len(classes) < 2:
        return f"returned classes {classes!r}: a classifier names at least 2"
    unknown = [p for p in predictions if p not in classes]
    if unknown:
        return f"returned predictions {unknown[:3]} that are not among its classes {classes[:10]}"
    probabilities = doc.get("probabilities")
    if not isinstance(probabilities, list) or len(probabilities) != len(predictions):
        return "returned no probabilities row per prediction"
    bad_rows = [
        row
        for row in probabilities
        if not isinstance(row, list) or len(row) != len(classes) or not all(_finite(v) for v in row)
    ]
    if bad_rows:
        return (
            f"returned probabilities that are not {len(classes)} finite numbers per row, e.g. {bad_rows[:2]}"
        )
    return None


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
