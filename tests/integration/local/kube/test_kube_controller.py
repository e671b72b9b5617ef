"""The local controller with real pod processes (a fake serving image): rollouts judged by
modelops.deployments.rollout_status, crash loops, image pulls, progress deadlines, scaling, stop()."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from kube_pods import (
    IMAGE,
    IMAGE_V2,
    MISSING_IMAGE,
    LocalCluster,
    deployment,
    pods_of,
    ready,
    service,
    wait_for,
)
from modelops.errors import RolloutFailedError

from modelops_local.kube import kubelet as kubelet_module


@pytest.fixture
def cluster(tmp_path: Path):
    with LocalCluster(tmp_path) as local:
        yield local


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is not running
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _container_status(pod: dict[str, Any]) -> dict[str, Any]:
    return ((pod.get("status") or {}).get("containerStatuses") or [{}])[0]


def test_deployment_becomes_ready_with_pod_status_logs_and_stdout_lines(cluster):
    # Given a Deployment of 2 replicas of the fake image
    cluster.store.create(deployment("churn-stable", replicas=2))
    # When the controller runs it
    cluster.wait_rolled_out("churn-stable")
    # Then the pods are Running and Ready with the kubelet's status fields
    pods = pods_of(cluster.store, "app=churn")
    assert len(pods) == 2
    for pod in pods:
        status = pod["status"]
        assert status["phase"] == "Running" and status["podIP"] == "127.0.0.1"
        kinds = {c["type"]: c["status"] for c in status["conditions"]}
        assert kinds == {
            "Initialized": "True",
            "Ready": "True",
            "ContainersReady": "True",
            "PodScheduled": "True",
        }
        container = _container_status(pod)
        assert container["ready"] and container["started"] and container["restartCount"] == 0
        assert "running" in container["state"]
    # And the Deployment status says so, as the real controller writes it
    status = cluster.deployment("churn-stable")["status"]
    assert (status["replicas"], status["updatedReplicas"], status["readyReplicas"]) == (2, 2, 2)
    assert (status["availableReplicas"], status["unavailableReplicas"]) == (2, 0)
    assert status["observedGeneration"] == cluster.deployment("churn-stable")["metadata"]["generation"]
    # And every stdout line reached the sink; stdout and stderr are in the pod's log file
    names = {p["metadata"]["name"] for p in pods}
    wait_for("started lines", lambda: {n for n, line in cluster.lines if '"started"' in line} == names, 5)
    for name in names:
        assert '"started": true' in (cluster.state_dir / "pods" / f"models_{name}.log").read_text()


def test_rolling_update_keeps_ready_pods_and_matches_rollout_status(cluster):
    # Given a rolled-out Deployment of 3 (maxSurge 1, maxUnavailable 0) and a recorder of every pod change
    cluster.store.create(deployment("churn-stable", replicas=3))
    cluster.wait_rolled_out("churn-stable")
    serving: dict[str, bool] = {}
    lowest = [3]
    lock = threading.Lock()

    def record(_type: str, obj: dict[str, Any]) -> None:
        if obj.get("kind") != "Pod":
            return
        with lock:
            serving[obj["metadata"]["name"]] = (
                _type != "DELETED" and ready(obj) and not obj["metadata"].get("deletionTimestamp")
            )
            lowest[0] = min(lowest[0], sum(serving.values()))

    for pod in pods_of(cluster.store, "app=churn"):
        serving[pod["metadata"]["name"]] = True
    unsubscribe = cluster.store.subscribe(record)
    messages: list[str] = []
    try:
        # When the image changes
        cluster.set_image("churn-stable", IMAGE_V2)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            status = cluster.rollout("churn-stable", IMAGE_V2)
            if not messages or messages[-1] != status.message:
                messages.append(status.message)
            if status.done:
                break
            time.sleep(0.02)
    finally:
        unsubscribe()
    # Then rollout_status went through the kubectl stages and finished
    assert messages[-1].endswith("successfully rolled out"), messages
    assert any("new replicas have been updated" in m or "old replicas are pending" in m for m in messages)
    # And ready, non-terminating pods never dropped below the desired 3
    assert lowest[0] >= 3, f"ready pods dropped to {lowest[0]}"
    images = {p["spec"]["containers"][0]["image"] for p in pods_of(cluster.store, "app=churn") if ready(p)}
    assert IMAGE_V2 in images


def test_a_crashing_container_goes_to_crash_loop_back_off(cluster):
    # Given a Deployment whose container exits at start
    cluster.store.create(deployment("churn-stable", env={"FAKE_CRASH": "1"}))

    # When it has crashed a few times
    def crash_looping() -> dict[str, Any] | None:
        for pod in pods_of(cluster.store, "app=churn"):
            container = _container_status(pod)
            waiting = container.get("state", {}).get("waiting", {})
            if waiting.get("reason") == "CrashLoopBackOff" and container.get("restartCount", 0) >= 2:
                return pod
        return None

    pod = wait_for("CrashLoopBackOff with 2 restarts", crash_looping, 10)
    # Then the status says why, with the last termination, and the rollout is not done
    container = _container_status(pod)
    assert container["lastState"]["terminated"]["exitCode"] == 3
    assert container["lastState"]["terminated"]["reason"] == "Error"
    assert "back-off" in container["state"]["waiting"]["message"]
    assert not container["ready"] and pod["status"]["phase"] == "Running"
    first = container["restartCount"]
    wait_for(
        "restartCount to increase",
        lambda: any(
            _container_status(p).get("restartCount", 0) > first for p in pods_of(cluster.store, "app=churn")
        ),
        10,
    )
    assert not cluster.rollout("churn-stable").done


def test_an_image_that_cannot_be_pulled_is_image_pull_back_off(cluster):
    # Given a Deployment of an image the registry does not have
    reasons: list[str] = []
    cluster.store.subscribe(
        lambda _t, obj: (
            reasons.append(_container_status(obj).get("state", {}).get("waiting", {}).get("reason", ""))
            if obj.get("kind") == "Pod"
            else None
        )
    )
    cluster.store.create(deployment("churn-stable", image=MISSING_IMAGE))
    # When the kubelet tries to pull it / Then ErrImagePull, then ImagePullBackOff; the pod stays Pending
    wait_for("ImagePullBackOff", lambda: "ImagePullBackOff" in reasons, 10)
    assert "ErrImagePull" in reasons
    (pod,) = pods_of(cluster.store, "app=churn")
    assert pod["status"]["phase"] == "Pending"
    assert (
        "manifest unknown" in str(pod["status"]["containerStatuses"][0]["state"]) or "ErrImagePull" in reasons
    )
    assert cluster.deployment("churn-stable")["status"]["availableReplicas"] == 0


def test_progress_deadline_exceeded_when_pods_never_become_ready(cluster):
    # Given a Deployment with a 1 s progress deadline whose pods never pass their readiness probe
    cluster.store.create(deployment("churn-stable", env={"FAKE_READY_DELAY": "600"}, progress_deadline=1))

    # When the deadline passes
    def timed_out() -> bool:
        conditions = cluster.deployment("churn-stable").get("status", {}).get("conditions") or []
        return any(
            c["type"] == "Progressing" and c["reason"] == "ProgressDeadlineExceeded" for c in conditions
        )

    wait_for("ProgressDeadlineExceeded", timed_out, 10)
    # Then Progressing is False and the product's rollout check fails the rollout
    progressing = next(
        c for c in cluster.deployment("churn-stable")["status"]["conditions"] if c["type"] == "Progressing"
    )
    assert progressing["status"] == "False"
    with pytest.raises(RolloutFailedError, match="progress deadline"):
        cluster.rollout("churn-stable")


def test_scale_to_zero_stops_the_processes_and_back_starts_them(cluster):
    # Given a ready Deployment of 2
    cluster.store.create(deployment("churn-stable", replicas=2))
    cluster.wait_rolled_out("churn-stable")
    pids = cluster.controller.pids()
    assert len(pids) == 2
    # When scaled to 0
    cluster.scale("churn-stable", 0)
    # Then the pods are removed and their processes end
    wait_for("pods removed", lambda: not pods_of(cluster.store, "app=churn"), 10)
    wait_for("processes ended", lambda: not any(_alive(pid) for pid in pids), 5)
    assert cluster.rollout("churn-stable").done
    # When scaled back to 2 / Then two new pods become ready
    cluster.scale("churn-stable", 2)
    cluster.wait_rolled_out("churn-stable")
    assert cluster.deployment("churn-stable")["status"]["readyReplicas"] == 2


def test_deleting_a_pod_terminates_it_and_the_replicaset_replaces_it(cluster):
    # Given a ready Deployment of 1
    cluster.store.create(deployment("churn-stable"))
    cluster.store.create(service("churn", {"app": "churn"}))
    cluster.wait_rolled_out("churn-stable")
    (pod,) = pods_of(cluster.store, "app=churn")
    name = pod["metadata"]["name"]
    # When it is deleted (grace period 30 s, as in the manifests)
    result = cluster.store.delete("pods", "models", name)
    # Then it is terminating, out of the Service's endpoints at once, and gone soon after SIGTERM
    assert not result.deleted and result.object["metadata"]["deletionTimestamp"]
    assert name not in [e[0] for e in cluster.services.endpoints("models", "churn")]
    wait_for(
        "pod removed",
        lambda: name not in [p["metadata"]["name"] for p in pods_of(cluster.store, "app=churn")],
        10,
    )
    cluster.wait_rolled_out("churn-stable")
    assert [p["metadata"]["name"] for p in pods_of(cluster.store, "app=churn")] != [name]


def test_a_deleted_pod_gets_one_sigterm_so_a_draining_server_is_not_told_to_skip_its_drain(
    cluster, monkeypatch
):
    # Given a ready pod, and every signal the kubelet sends recorded on its way to the process
    sent: list[tuple[int, int]] = []
    real_killpg = kubelet_module.os.killpg

    def recording_killpg(pgid: int, sig: int) -> None:
        sent.append((pgid, sig))
        real_killpg(pgid, sig)

    monkeypatch.setattr(kubelet_module.os, "killpg", recording_killpg)
    cluster.store.create(deployment("churn-stable"))
    cluster.wait_rolled_out("churn-stable")
    (pid,) = cluster.controller.pids()
    (pod,) = pods_of(cluster.store, "app=churn")
    # When it is deleted (grace period 30 s)
    cluster.store.delete("pods", "models", pod["metadata"]["name"])
    wait_for("process ended", lambda: not _alive(pid), 10)
    # Then its process got exactly one SIGTERM, as from a real kubelet: `serve` reads a second
    # one as "skip the drain" and would close while a Service could still route to it
    assert [sig for pgid, sig in sent if pgid == pid] == [signal.SIGTERM]


def test_stop_leaves_no_pod_process_behind(tmp_path):
    # Given a running controller with 3 pods
    local = LocalCluster(tmp_path).__enter__()
    try:
        local.store.create(deployment("churn-stable", replicas=3))
        local.wait_rolled_out("churn-stable")
        pids = local.controller.pids()
        assert len(pids) == 3 and all(_alive(pid) for pid in pids)
    finally:
        # When it stops
        started = time.monotonic()
        local.__exit__(None, None, None)
    # Then within the bound, and every pod process is gone
    assert time.monotonic() - started < 6
    assert not any(_alive(pid) for pid in pids)
    assert local.controller.pids() == []


def test_recreate_strategy_replaces_all_pods(cluster):
    # Given a ready Recreate Deployment of 2
    cluster.store.create(deployment("churn-stable", replicas=2, strategy="Recreate"))
    cluster.wait_rolled_out("churn-stable")
    # When the image changes / Then all pods are replaced by the new template
    cluster.set_image("churn-stable", IMAGE_V2)
    wait_for("observed", lambda: cluster.deployment("churn-stable")["status"]["observedGeneration"] == 2, 5)
    cluster.wait_rolled_out("churn-stable")
    images = {p["spec"]["containers"][0]["image"] for p in pods_of(cluster.store, "app=churn")}
    assert images == {IMAGE_V2} and IMAGE != IMAGE_V2


def test_a_failing_liveness_probe_restarts_the_container(cluster):
    # Given a pod that turns unhealthy 1 s after starting
    cluster.store.create(deployment("churn-stable", env={"FAKE_UNHEALTHY_AFTER": "1"}))

    # When its liveness probe fails failureThreshold times
    def restarted() -> dict[str, Any] | None:
        for pod in pods_of(cluster.store, "app=churn"):
            if _container_status(pod).get("restartCount", 0) >= 1:
                return pod
        return None

    pod = wait_for("a liveness restart", restarted, 10)
    # Then the kubelet killed and restarted it; the fake exits cleanly on SIGTERM
    last = _container_status(pod)["lastState"]["terminated"]
    assert last["reason"] == "Completed" and last["exitCode"] == 0
