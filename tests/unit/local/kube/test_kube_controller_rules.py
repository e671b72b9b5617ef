"""The local controller's rules without processes: rollout arithmetic, ReplicaSet/Deployment
reconciliation against a real store (pods made Ready by hand, as a kubelet would), back-off,
environment resolution and Service endpoints."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from modelops.deployments import rollout_status
from modelops.errors import RolloutFailedError

from modelops_local.kube import KubeStore
from modelops_local.kube.controller import (
    HASH_LABEL,
    REVISION_ANNOTATION,
    DeploymentController,
    ReplicaSetController,
    deletion_order,
    pod_template_hash,
    resolve_fenceposts,
    scaled_value,
)
from modelops_local.kube.kubelet import HOST_PORTS_ANNOTATION, Backoff, container_env, process_env
from modelops_local.kube.services import endpoints_for

IMAGE_V1 = "repo@sha256:" + "1" * 64
IMAGE_V2 = "repo@sha256:" + "2" * 64


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def _deployment(replicas: int = 2, **spec: Any) -> dict[str, Any]:
    labels = {"app": "churn", "variant": "stable"}
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "churn-stable", "namespace": "models", "labels": dict(labels)},
        "spec": {
            "replicas": replicas,
            "progressDeadlineSeconds": 300,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "selector": {"matchLabels": dict(labels)},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "containers": [
                        {
                            "name": "model",
                            "image": IMAGE_V1,
                            "ports": [{"name": "http", "containerPort": 8080}],
                        }
                    ]
                },
            },
        },
    }
    body["spec"].update(spec)
    return body


class Cluster:
    """The two controllers over one store; `kubelet_ready()` marks pods Ready as a kubelet would."""

    def __init__(self, store: KubeStore) -> None:
        self.store = store
        self.clock = Clock()
        self.rs = ReplicaSetController(store, clock=self.clock)
        self.deployments = DeploymentController(store, clock=self.clock)

    def sync(self, rounds: int = 3) -> None:
        for _ in range(rounds):
            self.rs.sync_all()
            self.deployments.sync_all()
            self.rs.sync_all()

    def pods(self) -> list[dict[str, Any]]:
        return self.store.list("pods", "models")

    def active(self) -> list[dict[str, Any]]:
        return [p for p in self.pods() if not p["metadata"].get("deletionTimestamp")]

    def set_ready(self, pod: dict[str, Any], ready: bool = True) -> None:
        body = copy.deepcopy(pod)
        value = "True" if ready else "False"
        body["status"] = {
            "phase": "Running",
            "podIP": "127.0.0.1",
            "conditions": [
                {"type": "Ready", "status": value, "lastTransitionTime": "2030-01-01T00:00:00Z"},
                {"type": "ContainersReady", "status": value, "lastTransitionTime": "2030-01-01T00:00:00Z"},
            ],
        }
        body["metadata"].pop("resourceVersion", None)
        self.store.update(body, "status")

    def kubelet_ready(self, only_image: str | None = None) -> None:
        """Make every active pod (of `only_image`) Ready, and finish terminating pods."""
        for pod in self.pods():
            if pod["metadata"].get("deletionTimestamp"):
                self.store.delete("pods", "models", pod["metadata"]["name"], grace_period_seconds=0)
            elif only_image in (None, pod["spec"]["containers"][0]["image"]):
                self.set_ready(pod)

    def ready_count(self) -> int:
        return sum(
            1
            for p in self.active()
            if any(
                c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions") or []
            )
        )

    def deployment(self) -> dict[str, Any]:
        return self.store.get("deployments", "models", "churn-stable")

    def status(self):
        return rollout_status(self.deployment(), container="model", expected_image=None)

    def set_image(self, image: str) -> None:
        patch = [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": image}]
        self.store.patch("deployments", "models", "churn-stable", patch, "application/json-patch+json")


@pytest.fixture
def cluster(store: KubeStore) -> Cluster:
    return Cluster(store)


# --- arithmetic ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("surge", "unavailable", "replicas", "expected"),
    [
        (1, 0, 3, (1, 0)),
        ("25%", "25%", 3, (1, 0)),  # surge rounds up, unavailable down
        ("25%", "25%", 10, (3, 2)),
        ("0%", "0%", 4, (0, 1)),  # both zero after rounding: unavailable becomes 1
        ("50%", 2, 5, (3, 2)),
    ],
)
def test_fenceposts_round_like_kubernetes(surge, unavailable, replicas, expected):
    # Given maxSurge/maxUnavailable as ints or percents / When resolved / Then Kubernetes' rounding
    assert resolve_fenceposts(surge, unavailable, replicas) == expected


def test_scaled_value_rounds_percent_in_the_direction_asked():
    assert scaled_value("33%", 10, round_up=True) == 4
    assert scaled_value("33%", 10, round_up=False) == 3
    assert scaled_value(7, 10, round_up=False) == 7


def test_pod_template_hash_is_stable_label_safe_and_template_specific():
    # Given two templates differing only in the image
    first = _deployment()["spec"]["template"]
    second = copy.deepcopy(first)
    second["spec"]["containers"][0]["image"] = IMAGE_V2
    # When hashed / Then the same template always gives the same label-safe value, another a different one
    assert pod_template_hash(first) == pod_template_hash(copy.deepcopy(first))
    assert pod_template_hash(first) != pod_template_hash(second)
    assert set(pod_template_hash(first)) <= set("bcdfghjklmnpqrstvwxz2456789")


def test_backoff_is_immediate_then_doubles_from_10s_to_5min_and_scales():
    # Given the Kubernetes defaults / Then restarts wait 0, 10, 20, 40 ... and never more than 300 s
    backoff = Backoff()
    assert [backoff.restart_delay(n) for n in range(1, 7)] == [0, 10, 20, 40, 80, 160]
    assert backoff.restart_delay(12) == 300
    assert backoff.pull_delay(1) == 10
    # And a scale factor shortens every delay for local runs
    assert Backoff(scale=0.01).restart_delay(3) == pytest.approx(0.2)


def test_deletion_order_prefers_not_ready_then_newest():
    # Given an old ready pod, a new ready pod and a not-ready pod
    def pod(name: str, created: str, ready: bool) -> dict[str, Any]:
        return {
            "metadata": {"name": name, "creationTimestamp": created},
            "spec": {"nodeName": "local-node"},
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            },
        }

    pods = [
        pod("old", "2030-01-01T00:00:00Z", True),
        pod("new", "2030-01-01T00:05:00Z", True),
        pod("unready", "2030-01-01T00:00:00Z", False),
    ]
    # When ranked for deletion / Then not ready goes first, then the newest
    assert [p["metadata"]["name"] for p in deletion_order(pods)] == ["unready", "new", "old"]


def test_env_resolves_field_refs_and_the_contract_overrides_port():
    # Given a pod whose container reads labels and its name, and sets PORT=8080
    pod = {
        "metadata": {
            "name": "churn-abc",
            "namespace": "models",
            "labels": {"app": "churn", "variant": "canary"},
        }
    }
    container = {
        "env": [
            {"name": "MODELOPS_MODEL", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {
                "name": "MODELOPS_VARIANT",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['variant']"}},
            },
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "GREETING", "value": "hi $(POD)"},
            {"name": "PORT", "value": "8080"},
        ]
    }
    # When the environments are built
    env = container_env(pod, container)
    full = process_env(pod, container, Path("/rootfs"), Path("/run/port"))
    # Then the downward API values are there, and PORT is 0 for the process (many pods, one host)
    assert env["MODELOPS_MODEL"] == "churn" and env["MODELOPS_VARIANT"] == "canary"
    assert env["POD"] == "churn-abc" and env["NS"] == "models" and env["GREETING"] == "hi churn-abc"
    assert (
        full["PORT"] == "0" and full["SERVE_HOST"] == "127.0.0.1" and full["SERVE_PORT_FILE"] == "/run/port"
    )
    assert full["SAGEMAKER_BASE_DIR"] == "/rootfs/opt/ml" and full["PYTHONPATH"] == "/rootfs/opt/program"


def test_endpoints_are_ready_matching_non_terminating_pods_on_the_named_port():
    # Given a Service on targetPort "http" and pods in every state
    service = {
        "metadata": {"name": "churn", "namespace": "models"},
        "spec": {"selector": {"app": "churn"}, "ports": [{"port": 8080, "targetPort": "http"}]},
    }

    def pod(name: str, *, ready: bool = True, labels: dict | None = None, deleting: bool = False) -> dict:
        meta: dict[str, Any] = {
            "name": name,
            "namespace": "models",
            "labels": labels or {"app": "churn"},
            "annotations": {HOST_PORTS_ANNOTATION: json.dumps({"model": 40000 + len(name)})},
        }
        if deleting:
            meta["deletionTimestamp"] = "2030-01-01T00:00:00Z"
        return {
            "metadata": meta,
            "spec": {"containers": [{"name": "model", "ports": [{"name": "http", "containerPort": 8080}]}]},
            "status": {"podIP": "127.0.0.1", "conditions": [{"type": "Ready", "status": str(ready)}]},
        }

    pods = [pod("a"), pod("bb", ready=False), pod("ccc", deleting=True), pod("dddd", labels={"app": "other"})]
    # When the endpoints are computed / Then only the ready, matching, non-terminating pod is one
    assert endpoints_for(service, pods) == [("a", "127.0.0.1", 40001)]


# --- controllers against the store -------------------------------------------------------------------


def test_deployment_creates_a_replicaset_per_template_with_hash_owner_and_revision(cluster):
    # Given a Deployment
    created = cluster.store.create(_deployment())
    # When the controllers run
    cluster.sync()
    # Then one ReplicaSet owns the pods, labelled with the template hash, at revision 1
    (rs,) = cluster.store.list("replicasets", "models")
    assert rs["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]
    assert rs["metadata"]["annotations"][REVISION_ANNOTATION] == "1"
    template_hash = rs["metadata"]["labels"][HASH_LABEL]
    assert rs["spec"]["selector"]["matchLabels"][HASH_LABEL] == template_hash
    assert rs["metadata"]["name"] == f"churn-stable-{template_hash}"
    pods = cluster.pods()
    assert len(pods) == 2
    assert all(p["metadata"]["labels"][HASH_LABEL] == template_hash for p in pods)
    assert all(p["spec"]["nodeName"] == "local-node" for p in pods)
    assert cluster.deployment()["metadata"]["annotations"][REVISION_ANNOTATION] == "1"


def test_rolling_update_stages_match_rollout_status_and_keep_ready_pods(cluster):
    # Given a rolled-out Deployment of 2 (maxSurge 1, maxUnavailable 0)
    cluster.store.create(_deployment())
    cluster.sync()
    status = cluster.status()
    assert not status.done and "0 of 2 updated replicas are available" in status.message
    cluster.kubelet_ready()
    cluster.sync()
    assert cluster.status().done
    conditions = {c["type"]: c for c in cluster.deployment()["status"]["conditions"]}
    assert conditions["Progressing"]["reason"] == "NewReplicaSetAvailable"
    assert conditions["Available"]["status"] == "True"
    # When the image changes
    cluster.set_image(IMAGE_V2)
    assert "spec update to be observed" in cluster.status().message
    # Then the controller surges one new pod and scales old ones down only once new ones are available
    seen = []
    for _ in range(10):
        cluster.sync()
        assert cluster.ready_count() >= 2, "maxUnavailable 0: never fewer ready pods than desired"
        seen.append(cluster.status().message)
        if cluster.status().done:
            break
        cluster.kubelet_ready(only_image=IMAGE_V2)
    assert cluster.status().done, seen
    assert any("1 out of 2 new replicas have been updated" in m for m in seen)
    assert len({p["spec"]["containers"][0]["image"] for p in cluster.active()}) == 1
    rs_by_revision = {
        rs["metadata"]["annotations"][REVISION_ANNOTATION]: rs
        for rs in cluster.store.list("replicasets", "models")
    }
    assert rs_by_revision["1"]["spec"]["replicas"] == 0 and rs_by_revision["2"]["spec"]["replicas"] == 2
    assert cluster.deployment()["metadata"]["annotations"][REVISION_ANNOTATION] == "2"


def test_rollback_to_an_old_template_reuses_its_replicaset_with_a_new_revision(cluster):
    def roll_out() -> None:
        for _ in range(6):
            cluster.sync()
            cluster.kubelet_ready()
        assert cluster.status().done

    # Given a Deployment rolled out at v1, then at v2
    cluster.store.create(_deployment())
    roll_out()
    cluster.set_image(IMAGE_V2)
    roll_out()
    # When the template goes back to v1
    cluster.set_image(IMAGE_V1)
    roll_out()
    # Then the v1 ReplicaSet is reused as the newest revision (3); no third ReplicaSet exists
    sets = cluster.store.list("replicasets", "models")
    assert len(sets) == 2
    newest = max(sets, key=lambda rs: int(rs["metadata"]["annotations"][REVISION_ANNOTATION]))
    assert newest["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE_V1
    assert newest["metadata"]["annotations"][REVISION_ANNOTATION] == "3"
    assert newest["spec"]["replicas"] == 2


def test_progress_deadline_exceeded_fails_the_rollout(cluster):
    # Given a Deployment whose pods never become ready, with a 60 s progress deadline
    cluster.store.create(_deployment(progressDeadlineSeconds=60))
    cluster.sync()
    assert not cluster.status().done
    # When more than 60 s pass without progress
    cluster.clock.now += timedelta(seconds=61)
    cluster.sync()
    # Then Progressing is False with ProgressDeadlineExceeded, and rollout_status raises
    progressing = next(c for c in cluster.deployment()["status"]["conditions"] if c["type"] == "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("False", "ProgressDeadlineExceeded")
    with pytest.raises(RolloutFailedError, match="progress deadline"):
        cluster.status()


def test_scale_to_zero_and_back(cluster):
    # Given a ready Deployment of 2
    cluster.store.create(_deployment())
    cluster.sync()
    cluster.kubelet_ready()
    cluster.sync()
    # When scaled to 0
    cluster.store.patch(
        "deployments", "models", "churn-stable", {"spec": {"replicas": 0}}, "application/merge-patch+json"
    )
    cluster.sync()
    # Then every pod is terminating and the status says 0
    assert cluster.active() == [] and len(cluster.pods()) == 2
    assert cluster.status().done and cluster.deployment()["status"]["replicas"] == 0
    # When scaled back to 3 / Then 3 new pods come and the rollout finishes once they are ready
    cluster.kubelet_ready()
    cluster.store.patch(
        "deployments", "models", "churn-stable", {"spec": {"replicas": 3}}, "application/merge-patch+json"
    )
    cluster.sync()
    assert len(cluster.active()) == 3
    cluster.kubelet_ready()
    cluster.sync()
    assert cluster.status().done and cluster.deployment()["status"]["availableReplicas"] == 3


def test_replicaset_deletes_not_ready_pods_first(cluster):
    # Given 3 pods of which one is not ready
    cluster.store.create(_deployment(replicas=3, strategy={"type": "Recreate"}))
    cluster.sync()
    pods = cluster.pods()
    for pod in pods[1:]:
        cluster.set_ready(pod)
    # When scaled to 2
    cluster.store.patch(
        "deployments", "models", "churn-stable", {"spec": {"replicas": 2}}, "application/merge-patch+json"
    )
    cluster.sync()
    # Then the not-ready pod is the one deleted
    deleting = [p["metadata"]["name"] for p in cluster.pods() if p["metadata"].get("deletionTimestamp")]
    assert deleting == [pods[0]["metadata"]["name"]]


def test_recreate_removes_old_pods_before_creating_new_ones(cluster):
    # Given a ready Recreate Deployment
    cluster.store.create(_deployment(strategy={"type": "Recreate"}))
    cluster.sync()
    cluster.kubelet_ready()
    cluster.sync()
    # When the image changes
    cluster.set_image(IMAGE_V2)
    cluster.sync()
    # Then old pods terminate first and no new pod exists while they do
    assert cluster.active() == []
    assert all(p["spec"]["containers"][0]["image"] == IMAGE_V1 for p in cluster.pods())
    cluster.kubelet_ready()  # the kubelet finishes the terminating pods
    cluster.sync()
    assert {p["spec"]["containers"][0]["image"] for p in cluster.active()} == {IMAGE_V2}
    cluster.kubelet_ready()
    cluster.sync()
    assert cluster.status().done


def test_min_ready_seconds_delays_availability(cluster):
    # Given minReadySeconds 30 and ready pods
    cluster.store.create(_deployment(minReadySeconds=30))
    cluster.sync()
    cluster.clock.now = datetime(2030, 1, 1, tzinfo=UTC)  # the pods' Ready transition time
    cluster.kubelet_ready()
    cluster.sync()
    # Then they are ready but not available until 30 s later
    status = cluster.deployment()["status"]
    assert status["readyReplicas"] == 2 and status["availableReplicas"] == 0
    cluster.clock.now += timedelta(seconds=31)
    cluster.sync()
    assert cluster.deployment()["status"]["availableReplicas"] == 2 and cluster.status().done
