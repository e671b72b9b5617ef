"""What kube-controller-manager and a kubelet would do for the local Kubernetes stand-in.

    controller = LocalController(store, images, state_dir=Path("state"), on_stdout_line=sink)
    controller.start()          # reacts to store changes (subscribe) plus a periodic resync
    ...
    controller.stop(timeout=10) # every pod process ends (SIGTERM, then SIGKILL)

- Deployment controller (as pkg/controller/deployment documents it): one ReplicaSet per pod
  template (label `pod-template-hash`, a controller ownerReference, annotation
  `deployment.kubernetes.io/revision`), RollingUpdate honouring maxSurge/maxUnavailable (ints or
  percents; surge rounds up, unavailable down; both 0 means unavailable 1), Recreate (old pods gone
  before new ones start), scaling (also to 0 and back), revisionHistoryLimit, paused; status via the
  status subresource: observedGeneration, replicas, updatedReplicas, readyReplicas,
  availableReplicas, unavailableReplicas and the `Available` / `Progressing` conditions
  (NewReplicaSetCreated, FoundNewReplicaSet, ReplicaSetUpdated, NewReplicaSetAvailable, and
  ProgressDeadlineExceeded once progressDeadlineSeconds pass without progress).
- ReplicaSet controller: creates or deletes Pods to match `spec.replicas` (deleting unscheduled,
  pending, not-ready pods first, then the newest), status replicas / fullyLabeledReplicas /
  readyReplicas / availableReplicas (ready for minReadySeconds) / observedGeneration. Pods are
  created bound to the one node (`spec.nodeName`), standing in for the scheduler.
- Kubelet: see kubelet.py (processes, probes, back-off, graceful deletion, logs).
"""

from __future__ import annotations

import json
import logging
import math
import sys
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from modelops_local.kube.errors import KubeApiError, NotFoundError
from modelops_local.kube.jsoncopy import json_copy
from modelops_local.kube.kubelet import (
    NODE_NAME,
    Backoff,
    ImageResolver,
    Kubelet,
    ProcessRegistry,
    StdoutSink,
    timestamp,
)
from modelops_local.kube.patch import MERGE_PATCH
from modelops_local.kube.resources import DEPLOYMENTS, PODS, REPLICASETS
from modelops_local.kube.store import KubeStore

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Objects = list[Obj]

HASH_LABEL = "pod-template-hash"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
DESIRED_REPLICAS_ANNOTATION = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS_ANNOTATION = "deployment.kubernetes.io/max-replicas"
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


# --- pure rules (unit-tested) ------------------------------------------------------------------------


def scaled_value(value: int | str | None, total: int, *, round_up: bool) -> int:
    """An IntOrString against `total`: ints as they are, "25%" of total rounded up or down."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text.endswith("%"):
        share = int(text[:-1]) * total / 100
        return math.ceil(share) if round_up else math.floor(share)
    return int(text)


def resolve_fenceposts(
    max_surge: int | str | None, max_unavailable: int | str | None, desired: int
) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) as numbers of pods, as the deployment controller resolves them."""
    surge = scaled_value(max_surge, desired, round_up=True)
    unavailable = scaled_value(max_unavailable, desired, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1  # validation forbids both 0; a percent rounding to 0 must still progress
    return surge, unavailable


def rolling_params(deployment: Mapping[str, Any]) -> tuple[int, int]:
    """The Deployment's resolved (maxSurge, maxUnavailable); (0, 0) for Recreate."""
    spec = deployment.get("spec") or {}
    strategy = spec.get("strategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return 0, 0
    rolling = strategy.get("rollingUpdate") or {}
    return resolve_fenceposts(
        rolling.get("maxSurge", "25%"), rolling.get("maxUnavailable", "25%"), int(spec.get("replicas", 1))
    )


def max_unavailable(deployment: Mapping[str, Any]) -> int:
    """deploymentutil.MaxUnavailable: what the Available condition tolerates."""
    spec = deployment.get("spec") or {}
    replicas = int(spec.get("replicas", 1))
    if (spec.get("strategy") or {}).get("type", "RollingUpdate") != "RollingUpdate" or replicas == 0:
        return 0
    return min(rolling_params(deployment)[1], replicas)


def pod_template_hash(template: Mapping[str, Any], collision_count: int = 0) -> str:
    """A stable, label-safe hash of a pod template (FNV-1a 32 over canonical JSON, like ComputeHash)."""
    data = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    if collision_count:
        data += str(collision_count).encode()
    value = 0x811C9DC5
    for byte in data:
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return "".join(_SAFE_ALPHABET[ord(c) % len(_SAFE_ALPHABET)] for c in str(value))


def template_without_hash(template: Mapping[str, Any]) -> Obj:
    """The template with the pod-template-hash label removed (EqualIgnoreHash compares these)."""
    copied = json_copy(dict(template))
    labels = (copied.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(HASH_LABEL, None)
    return copied


def new_rs_replicas(deployment: Mapping[str, Any], all_rs: Objects, new_rs: Mapping[str, Any] | None) -> int:
    """How many replicas the new ReplicaSet should have now (NewRSNewReplicas)."""
    spec = deployment.get("spec") or {}
    desired = int(spec.get("replicas", 1))
    if (spec.get("strategy") or {}).get("type", "RollingUpdate") != "RollingUpdate":
        return desired
    current_new = int(((new_rs or {}).get("spec") or {}).get("replicas", 0))
    surge, _ = rolling_params(deployment)
    current_total = sum(int((rs.get("spec") or {}).get("replicas", 0)) for rs in all_rs)
    max_total = desired + surge
    if current_total >= max_total:
        return current_new
    scale_up = min(max_total - current_total, desired - current_new)
    return current_new + max(scale_up, 0)


def old_rs_scale_down(
    deployment: Mapping[str, Any], new_rs: Mapping[str, Any], old_rs: Objects
) -> dict[str, int]:
    """New spec.replicas per old ReplicaSet name (only the ones to change), as
    reconcileOldReplicaSets decides: unhealthy replicas first, then down to minAvailable."""
    desired = int((deployment.get("spec") or {}).get("replicas", 1))
    old_pods = sum(int((rs.get("spec") or {}).get("replicas", 0)) for rs in old_rs)
    if old_pods == 0:
        return {}
    replicas = {rs["metadata"]["name"]: int((rs.get("spec") or {}).get("replicas", 0)) for rs in old_rs}
    new_spec = int((new_rs.get("spec") or {}).get("replicas", 0))
    all_pods = old_pods + new_spec
    _, unavailable = rolling_params(deployment)
    min_available = desired - unavailable
    new_unavailable = new_spec - int((new_rs.get("status") or {}).get("availableReplicas", 0))
    max_scaled_down = all_pods - min_available - new_unavailable
    if max_scaled_down <= 0:
        return {}
    ordered = sorted(old_rs, key=_creation_key)
    # cleanupUnhealthyReplicas: old pods that are not available can go first
    cleaned = 0
    for rs in ordered:
        if cleaned >= max_scaled_down:
            break
        name = rs["metadata"]["name"]
        available = int((rs.get("status") or {}).get("availableReplicas", 0))
        unhealthy = replicas[name] - available
        if replicas[name] == 0 or unhealthy <= 0:
            continue
        down = min(max_scaled_down - cleaned, unhealthy)
        replicas[name] -= down
        cleaned += down
    # scaleDownOldReplicaSetsForRollingUpdate: keep at least minAvailable available pods
    available_total = sum(
        int((rs.get("status") or {}).get("availableReplicas", 0)) for rs in [new_rs, *old_rs]
    )
    remaining = available_total - min_available
    if remaining > 0:
        # pods already cleaned up were unavailable, so availability is unchanged by them
        for rs in ordered:
            name = rs["metadata"]["name"]
            if remaining <= 0:
                break
            if replicas[name] == 0:
                continue
            down = min(replicas[name], remaining)
            replicas[name] -= down
            remaining -= down
    return {name: count for name, count in replicas.items() if count != int(_spec_replicas(old_rs, name))}


def _spec_replicas(rs_list: Objects, name: str) -> int:
    for rs in rs_list:
        if rs["metadata"]["name"] == name:
            return int((rs.get("spec") or {}).get("replicas", 0))
    return 0


def _creation_key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return (str(meta.get("creationTimestamp", "")), str(meta.get("name", "")))


def pod_is_ready(pod: Mapping[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def pod_is_active(pod: Mapping[str, Any]) -> bool:
    """Counted by a ReplicaSet: not terminating, not finished."""
    return not (pod.get("metadata") or {}).get("deletionTimestamp") and (pod.get("status") or {}).get(
        "phase"
    ) not in (
        "Succeeded",
        "Failed",
    )


def pod_is_available(pod: Mapping[str, Any], min_ready_seconds: int, now: datetime) -> bool:
    """Ready for at least `min_ready_seconds` (by the Ready condition's lastTransitionTime)."""
    if not pod_is_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            since = parse_time(condition.get("lastTransitionTime"))
            return since is not None and since + timedelta(seconds=min_ready_seconds) <= now
    return False


def parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}


def deletion_order(pods: Objects) -> Objects:
    """Pods in the order a ReplicaSet deletes them (ActivePods ranking): unscheduled before
    scheduled, Pending before Running, not ready before ready, more restarts before fewer, newer
    before older."""

    def key(pod: Obj) -> tuple[int, int, int, int, float]:
        spec, status = pod.get("spec") or {}, pod.get("status") or {}
        restarts = sum(int(c.get("restartCount", 0)) for c in status.get("containerStatuses") or [])
        created = parse_time(pod["metadata"].get("creationTimestamp"))
        return (
            1 if spec.get("nodeName") else 0,
            _PHASE_RANK.get(str(status.get("phase")), 1),
            1 if pod_is_ready(pod) else 0,
            -restarts,
            -(created.timestamp() if created else 0.0),
        )

    # creation times have second resolution: the name order (newest generated last) breaks ties
    return sorted(sorted(pods, key=lambda p: p["metadata"]["name"], reverse=True), key=key)


def owned_by(obj: Mapping[str, Any], owner: Mapping[str, Any]) -> bool:
    uid = owner["metadata"]["uid"]
    return any(
        ref.get("uid") == uid and ref.get("controller")
        for ref in (obj.get("metadata") or {}).get("ownerReferences") or []
    )


def _owner_reference(owner: Mapping[str, Any], kind: str) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _condition(status: Mapping[str, Any], kind: str) -> Obj | None:
    for condition in status.get("conditions") or []:
        if condition.get("type") == kind:
            return dict(condition)
    return None


def set_condition(
    status: Obj, kind: str, value: str, reason: str, message: str, now: str, *, keep_transition: bool = True
) -> None:
    """SetDeploymentCondition: replace the condition of `kind`; unchanged status and reason leave it
    alone; an unchanged status keeps lastTransitionTime."""
    current = _condition(status, kind)
    if current is not None and current.get("status") == value and current.get("reason") == reason:
        return
    condition = {
        "type": kind,
        "status": value,
        "lastUpdateTime": now,
        "lastTransitionTime": now,
        "reason": reason,
        "message": message,
    }
    if current is not None and current.get("status") == value and keep_transition:
        condition["lastTransitionTime"] = current.get("lastTransitionTime", now)
    status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != kind] + [condition]


def calculate_status(deployment: Mapping[str, Any], all_rs: Objects, new_rs: Mapping[str, Any] | None) -> Obj:
    """The replica counts of the Deployment's status (conditions not included)."""
    desired = int((deployment.get("spec") or {}).get("replicas", 1))

    def total(field: str, rs_list: Objects) -> int:
        return sum(int((rs.get("status") or {}).get(field, 0)) for rs in rs_list)

    available = total("availableReplicas", all_rs)
    return {
        "observedGeneration": int(deployment["metadata"].get("generation", 1)),
        "replicas": total("replicas", all_rs),
        "updatedReplicas": int(((new_rs or {}).get("status") or {}).get("replicas", 0)),
        "readyReplicas": total("readyReplicas", all_rs),
        "availableReplicas": available,
        "unavailableReplicas": max(desired - available, 0),
    }


def rollout_conditions(
    deployment: Mapping[str, Any], status: Obj, new_rs: Mapping[str, Any] | None, now: datetime
) -> None:
    """Set `Available` and `Progressing` on `status` (the new status, holding the current
    conditions) the way calculateStatus and syncRolloutStatus do. The deployment's stored status
    is the "old" status progress is measured against."""
    spec = deployment.get("spec") or {}
    desired = int(spec.get("replicas", 1))
    stamp = timestamp(now)
    if status["availableReplicas"] >= desired - max_unavailable(deployment):
        set_condition(
            status,
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
            stamp,
        )
    else:
        set_condition(
            status,
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            stamp,
        )
    deadline = spec.get("progressDeadlineSeconds")
    if spec.get("paused") or deadline is None:
        return
    old = deployment.get("status") or {}
    current = _condition(status, "Progressing")
    complete_before = (
        status["replicas"] == status["updatedReplicas"]
        and (current or {}).get("reason") == "NewReplicaSetAvailable"
    )
    if complete_before:
        return
    rs_name = (new_rs or {}).get("metadata", {}).get("name")
    subject = f'ReplicaSet "{rs_name}"' if rs_name else f'Deployment "{deployment["metadata"]["name"]}"'
    complete = (
        status["updatedReplicas"] == desired
        and status["replicas"] == desired
        and status["availableReplicas"] == desired
        and status["observedGeneration"] >= int(deployment["metadata"].get("generation", 1))
    )
    old_old = int(old.get("replicas", 0)) - int(old.get("updatedReplicas", 0))
    new_old = status["replicas"] - status["updatedReplicas"]
    progressing = (
        status["updatedReplicas"] > int(old.get("updatedReplicas", 0))
        or new_old < old_old
        or status["readyReplicas"] > int(old.get("readyReplicas", 0))
        or status["availableReplicas"] > int(old.get("availableReplicas", 0))
    )
    if complete:
        set_condition(
            status,
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            f"{subject} has successfully progressed.",
            stamp,
        )
    elif progressing:
        condition = {
            "type": "Progressing",
            "status": "True",
            "lastUpdateTime": stamp,
            "lastTransitionTime": stamp,
            "reason": "ReplicaSetUpdated",
            "message": f"{subject} is progressing.",
        }
        if current is not None and current.get("status") == "True":
            condition["lastTransitionTime"] = current.get("lastTransitionTime", stamp)
        status["conditions"] = [
            c for c in status.get("conditions") or [] if c.get("type") != "Progressing"
        ] + [condition]
    elif current is not None and current.get("reason") != "ProgressDeadlineExceeded":
        since = parse_time(current.get("lastUpdateTime"))
        if since is not None and since + timedelta(seconds=int(deadline)) < now:
            set_condition(
                status,
                "Progressing",
                "False",
                "ProgressDeadlineExceeded",
                f"{subject} has timed out progressing.",
                stamp,
            )


# --- the controllers ---------------------------------------------------------------------------------


class ReplicaSetController:
    """Keeps each ReplicaSet's pods at spec.replicas and its status current."""

    def __init__(
        self, store: KubeStore, *, node_name: str = NODE_NAME, clock: Callable[[], datetime] | None = None
    ) -> None:
        self.store = store
        self.node_name = node_name
        self.clock = clock or (lambda: datetime.now(UTC))

    def sync_all(self, pods: Objects | None = None) -> None:
        """One pass over every ReplicaSet; `pods` is the current pod list (listed when omitted)."""
        all_pods = self.store.list(PODS) if pods is None else pods
        for rs in self.store.list(REPLICASETS):
            try:
                self.sync(rs, all_pods)
            except NotFoundError:
                pass
            except KubeApiError as exc:
                log.warning(
                    "replicaset %s/%s: %s", rs["metadata"].get("namespace"), rs["metadata"]["name"], exc
                )

    def sync(self, rs: Obj, all_pods: Objects) -> None:
        meta = rs["metadata"]
        namespace = meta["namespace"]
        if meta.get("deletionTimestamp"):
            return
        pods = [p for p in all_pods if p["metadata"].get("namespace") == namespace and owned_by(p, rs)]
        active = [p for p in pods if pod_is_active(p)]
        wanted = int((rs.get("spec") or {}).get("replicas", 1))
        if len(active) < wanted:
            for _ in range(wanted - len(active)):
                active.append(self._create_pod(rs))
        elif len(active) > wanted:
            for pod in deletion_order(active)[: len(active) - wanted]:
                self.store.delete(
                    PODS, namespace, pod["metadata"]["name"], preconditions={"uid": pod["metadata"]["uid"]}
                )
                active.remove(pod)
        self._update_status(rs, active)

    def _create_pod(self, rs: Obj) -> Obj:
        template = json_copy((rs.get("spec") or {}).get("template") or {})
        template_meta = template.get("metadata") or {}
        meta: Obj = {
            "generateName": f"{rs['metadata']['name']}-",
            "namespace": rs["metadata"]["namespace"],
            "labels": dict(template_meta.get("labels") or {}),
            "ownerReferences": [_owner_reference(rs, "ReplicaSet")],
        }
        if template_meta.get("annotations"):
            meta["annotations"] = dict(template_meta["annotations"])
        spec = template.get("spec") or {}
        spec["nodeName"] = self.node_name  # no scheduler: the one node takes every pod
        return self.store.create({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec})

    def _update_status(self, rs: Obj, active: Objects) -> None:
        spec = rs.get("spec") or {}
        min_ready = int(spec.get("minReadySeconds") or 0)
        now = self.clock()
        template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        status: Obj = {
            "replicas": len(active),
            "fullyLabeledReplicas": sum(
                1
                for p in active
                if all((p["metadata"].get("labels") or {}).get(k) == v for k, v in template_labels.items())
            ),
            "readyReplicas": sum(1 for p in active if pod_is_ready(p)),
            "availableReplicas": sum(1 for p in active if pod_is_available(p, min_ready, now)),
            "observedGeneration": int(rs["metadata"].get("generation", 1)),
        }
        if (rs.get("status") or {}) == status:
            return
        body = json_copy(rs)
        body["status"] = status
        body["metadata"].pop("resourceVersion", None)
        self.store.update(body, "status")


class DeploymentController:
    """Rolls Deployments out through ReplicaSets and reports their status."""

    def __init__(self, store: KubeStore, *, clock: Callable[[], datetime] | None = None) -> None:
        self.store = store
        self.clock = clock or (lambda: datetime.now(UTC))

    def sync_all(self) -> None:
        """One pass over every Deployment."""
        all_rs = self.store.list(REPLICASETS)
        all_pods: Objects | None = None
        for deployment in self.store.list(DEPLOYMENTS):
            if (deployment.get("spec") or {}).get("strategy", {}).get(
                "type"
            ) == "Recreate" and all_pods is None:
                all_pods = self.store.list(PODS)
            try:
                self.sync(deployment, all_rs, all_pods or [])
            except NotFoundError:
                pass
            except KubeApiError as exc:
                meta = deployment["metadata"]
                log.warning("deployment %s/%s: %s", meta.get("namespace"), meta["name"], exc)

    def sync(self, deployment: Obj, all_rs: Objects, all_pods: Objects) -> None:
        meta = deployment["metadata"]
        if meta.get("deletionTimestamp"):
            return
        namespace = meta["namespace"]
        owned = sorted(
            (
                rs
                for rs in all_rs
                if rs["metadata"].get("namespace") == namespace and owned_by(rs, deployment)
            ),
            key=_creation_key,
        )
        spec = deployment.get("spec") or {}
        template = spec.get("template") or {}
        new_rs = next((rs for rs in owned if template_without_hash(rs["spec"]["template"]) == template), None)
        old_rs = [rs for rs in owned if rs is not new_rs]
        # conditions as the "old" status after getNewReplicaSet (which may set one)
        working = json_copy(deployment.get("status") or {})
        stamp = timestamp(self.clock())
        has_deadline = spec.get("progressDeadlineSeconds") is not None
        max_old_revision = max((_revision(rs) for rs in old_rs), default=0)
        if spec.get("paused"):
            self._write_status(deployment, owned, new_rs, working)
            return
        recreate = (spec.get("strategy") or {}).get("type") == "Recreate"
        if recreate and self._recreate_scale_down(deployment, old_rs, all_pods):
            self._write_status(deployment, owned, new_rs, working)
            return
        if new_rs is None:
            replicas = new_rs_replicas(deployment, owned, None)
            new_rs = self._create_rs(deployment, template, replicas, max_old_revision + 1)
            owned.append(new_rs)
            if has_deadline:
                set_condition(
                    working,
                    "Progressing",
                    "True",
                    "NewReplicaSetCreated",
                    f'Created new replica set "{new_rs["metadata"]["name"]}"',
                    stamp,
                )
        else:
            if _revision(new_rs) <= max_old_revision:
                new_rs = self._patch_rs(
                    new_rs, {"metadata": {"annotations": {REVISION_ANNOTATION: str(max_old_revision + 1)}}}
                )
            if has_deadline and _condition(working, "Progressing") is None:
                set_condition(
                    working,
                    "Progressing",
                    "True",
                    "FoundNewReplicaSet",
                    f'Found new replica set "{new_rs["metadata"]["name"]}"',
                    stamp,
                )
        self._set_deployment_revision(deployment, _revision(new_rs))
        before = int(new_rs["spec"].get("replicas", 0))
        new_rs = self._sync_new_rs(deployment, owned, new_rs)
        scaled_up = int(new_rs["spec"].get("replicas", 0)) > before
        owned = [new_rs if rs["metadata"]["uid"] == new_rs["metadata"]["uid"] else rs for rs in owned]
        old_rs = [rs for rs in owned if rs["metadata"]["uid"] != new_rs["metadata"]["uid"]]
        if not recreate and not scaled_up:  # like rolloutRolling: a scale-up ends this pass
            for name, replicas in old_rs_scale_down(deployment, new_rs, old_rs).items():
                rs = next(r for r in old_rs if r["metadata"]["name"] == name)
                self._scale_rs(deployment, rs, replicas)
        status = self._write_status(deployment, owned, new_rs, working)
        if status.get("updatedReplicas") == spec.get("replicas", 1) and status.get(
            "availableReplicas"
        ) == spec.get("replicas", 1):
            self._cleanup(deployment, old_rs)

    def _recreate_scale_down(self, deployment: Obj, old_rs: Objects, all_pods: Objects) -> bool:
        """Recreate: scale old ReplicaSets to 0 and wait until their pods are gone; True while waiting."""
        waiting = False
        for rs in old_rs:
            if int(rs["spec"].get("replicas", 0)) > 0:
                self._scale_rs(deployment, rs, 0)
                waiting = True
        for rs in old_rs:
            if any(
                owned_by(p, rs) and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
                for p in all_pods
            ):
                waiting = True
        return waiting

    def _sync_new_rs(self, deployment: Obj, owned: Objects, new_rs: Obj) -> Obj:
        desired = int(deployment["spec"].get("replicas", 1))
        current = int(new_rs["spec"].get("replicas", 0))
        wanted = desired if current > desired else new_rs_replicas(deployment, owned, new_rs)
        annotations = new_rs["metadata"].get("annotations") or {}
        if wanted != current or annotations.get(DESIRED_REPLICAS_ANNOTATION) != str(desired):
            return self._scale_rs(deployment, new_rs, wanted)
        return new_rs

    def _create_rs(self, deployment: Obj, template: Obj, replicas: int, revision: int) -> Obj:
        meta = deployment["metadata"]
        template_hash = pod_template_hash(template)
        rs_template = json_copy(template)
        rs_template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = template_hash
        selector = json_copy(deployment["spec"].get("selector") or {})
        selector.setdefault("matchLabels", {})[HASH_LABEL] = template_hash
        desired = int(deployment["spec"].get("replicas", 1))
        surge, _ = rolling_params(deployment)
        body: Obj = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"{meta['name']}-{template_hash}",
                "namespace": meta["namespace"],
                "labels": dict(rs_template["metadata"]["labels"]),
                "annotations": {
                    REVISION_ANNOTATION: str(revision),
                    DESIRED_REPLICAS_ANNOTATION: str(desired),
                    MAX_REPLICAS_ANNOTATION: str(desired + surge),
                },
                "ownerReferences": [_owner_reference(deployment, "Deployment")],
            },
            "spec": {
                "replicas": replicas,
                "minReadySeconds": int(deployment["spec"].get("minReadySeconds") or 0),
                "selector": selector,
                "template": rs_template,
            },
        }
        log.info(
            "deployment %s/%s: created ReplicaSet %s (%d)",
            meta["namespace"],
            meta["name"],
            body["metadata"]["name"],
            replicas,
        )
        return self.store.create(body)

    def _scale_rs(self, deployment: Obj, rs: Obj, replicas: int) -> Obj:
        desired = int(deployment["spec"].get("replicas", 1))
        surge, _ = rolling_params(deployment)
        patch = {
            "spec": {"replicas": replicas},
            "metadata": {
                "annotations": {
                    DESIRED_REPLICAS_ANNOTATION: str(desired),
                    MAX_REPLICAS_ANNOTATION: str(desired + surge),
                }
            },
        }
        if int(rs["spec"].get("replicas", 0)) != replicas:
            log.info(
                "deployment %s/%s: scaled ReplicaSet %s from %s to %d",
                deployment["metadata"]["namespace"],
                deployment["metadata"]["name"],
                rs["metadata"]["name"],
                rs["spec"].get("replicas", 0),
                replicas,
            )
        return self._patch_rs(rs, patch)

    def _patch_rs(self, rs: Obj, patch: Obj) -> Obj:
        return self.store.patch(
            REPLICASETS, rs["metadata"]["namespace"], rs["metadata"]["name"], patch, MERGE_PATCH
        )

    def _set_deployment_revision(self, deployment: Obj, revision: int) -> None:
        if (deployment["metadata"].get("annotations") or {}).get(REVISION_ANNOTATION) == str(revision):
            return
        patch = {"metadata": {"annotations": {REVISION_ANNOTATION: str(revision)}}}
        updated = self.store.patch(
            DEPLOYMENTS,
            deployment["metadata"]["namespace"],
            deployment["metadata"]["name"],
            patch,
            MERGE_PATCH,
        )
        deployment["metadata"] = updated["metadata"]

    def _write_status(self, deployment: Obj, owned: Objects, new_rs: Obj | None, working: Obj) -> Obj:
        # the ReplicaSets' current status (the ReplicaSet pass ran before this one)
        fresh = []
        for rs in owned:
            try:
                fresh.append(self.store.get(REPLICASETS, rs["metadata"]["namespace"], rs["metadata"]["name"]))
            except NotFoundError:
                continue
        new_fresh = next(
            (rs for rs in fresh if new_rs is not None and rs["metadata"]["uid"] == new_rs["metadata"]["uid"]),
            None,
        )
        status = calculate_status(deployment, fresh, new_fresh)
        if working.get("conditions"):
            status["conditions"] = json_copy(working["conditions"])
        rollout_conditions(deployment, status, new_fresh, self.clock())
        if status == deployment.get("status"):
            return status
        body = json_copy(deployment)
        body["status"] = status
        body["metadata"].pop("resourceVersion", None)
        self.store.update(body, "status")
        return status

    def _cleanup(self, deployment: Obj, old_rs: Objects) -> None:
        limit = (deployment.get("spec") or {}).get("revisionHistoryLimit")
        if limit is None:
            return
        idle = [
            rs
            for rs in old_rs
            if int(rs["spec"].get("replicas", 0)) == 0
            and int((rs.get("status") or {}).get("replicas", 0)) == 0
        ]
        idle.sort(key=_revision)
        for rs in idle[: max(len(idle) - int(limit), 0)]:
            self.store.delete(
                REPLICASETS,
                rs["metadata"]["namespace"],
                rs["metadata"]["name"],
                preconditions={"uid": rs["metadata"]["uid"]},
            )


def _revision(rs: Mapping[str, Any]) -> int:
    try:
        return int(((rs.get("metadata") or {}).get("annotations") or {}).get(REVISION_ANNOTATION, 0))
    except ValueError:
        return 0


class LocalController:
    """The Deployment and ReplicaSet controllers plus a kubelet for one local node.

    `images(ref)` returns the unpacked rootfs of an image reference (any exception: the pull
    failed). `on_stdout_line(pod_metadata, line)` receives every stdout line of every pod (EMF
    metrics). Logs: `<state_dir>/pods/<namespace>_<pod>.log`.
    Timing knobs: `backoff_scale` multiplies the restart and image-pull back-off (Kubernetes:
    `backoff_initial`=10 s doubling to `backoff_max`=300 s; default scale 1.0); `probe_scale`
    multiplies probe periods and initial delays (default 1.0); `max_grace_seconds` caps a pod's
    terminationGracePeriodSeconds (default 30); `resync_seconds` is the periodic resync (0.25 s).
    """

    def __init__(
        self,
        store: KubeStore,
        images: ImageResolver,
        *,
        state_dir: Path | str,
        python: str = sys.executable,
        on_stdout_line: StdoutSink | None = None,
        node_name: str = NODE_NAME,
        backoff_scale: float = 1.0,
        backoff_initial: float = 10.0,
        backoff_max: float = 300.0,
        probe_scale: float = 1.0,
        max_grace_seconds: float = 30.0,
        resync_seconds: float = 0.25,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.store = store
        self.state_dir = Path(state_dir)
        self.resync_seconds = resync_seconds
        self.registry = ProcessRegistry()
        self.kubelet = Kubelet(
            store,
            images,
            state_dir=self.state_dir,
            python=python,
            on_stdout_line=on_stdout_line,
            node_name=node_name,
            backoff=Backoff(backoff_initial, backoff_max, backoff_scale),
            probe_scale=probe_scale,
            max_grace_seconds=max_grace_seconds,
            resync_seconds=resync_seconds,
            registry=self.registry,
        )
        self.replicasets = ReplicaSetController(store, node_name=node_name, clock=clock)
        self.deployments = DeploymentController(store, clock=clock)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._round_lock = threading.Lock()
        # the safety net: pod processes die with the controller object or the interpreter
        self._finalizer = weakref.finalize(self, self.registry.kill_all)

    def start(self) -> LocalController:
        """Start reconciling in a background thread; returns at once."""
        if self._thread is not None:
            raise RuntimeError("LocalController already started")
        (self.state_dir / "pods").mkdir(parents=True, exist_ok=True)
        self._stopping.clear()
        self._unsubscribe = self.store.subscribe(lambda _type, _obj: self._wake.set())
        self._thread = threading.Thread(target=self._loop, name="kube-controller", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop reconciling and end every pod process: SIGTERM, SIGKILL after a grace bounded by
        `timeout` and max_grace_seconds. Returns within about `timeout` seconds; no process is
        left behind. Pod objects stay in the store as they were."""
        deadline = time.monotonic() + timeout
        self._stopping.set()
        self._wake.set()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._thread is not None:
            self._thread.join(max(min(deadline - time.monotonic(), 5.0), 0.1))
            self._thread = None
        self.kubelet.stop(max(deadline - time.monotonic(), 0.5))
        self.registry.kill_all()

    def __enter__(self) -> LocalController:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reconcile(self) -> None:
        """One full round: ReplicaSets, Deployments, ReplicaSets again, then the kubelet."""
        with self._round_lock:
            self.replicasets.sync_all()
            self.deployments.sync_all()
            self.replicasets.sync_all()
            if not self._stopping.is_set():
                self.kubelet.sync(self.store.list(PODS))

    def host_port(self, namespace: str, pod: str, target: int | str) -> int | None:
        """The 127.0.0.1 port serving container port `target` (number or name) of `pod` now."""
        return self.kubelet.host_port(namespace, pod, target)

    def pids(self) -> list[int]:
        """Pids of the pod processes running now."""
        return self.kubelet.pids()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                self.reconcile()
            except Exception:
                log.exception("controller round failed")
            self._wake.wait(self.resync_seconds)
