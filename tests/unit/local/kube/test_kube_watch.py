"""In-process watch: replay after a resourceVersion, selector transitions, expiry, bounded waits."""

from __future__ import annotations

import threading
import time

import pytest

from modelops_local.kube import MERGE_PATCH, ExpiredError, KubeStore


def _names(events):
    return [(kind, obj["metadata"]["name"]) for kind, obj in events]


def test_watch_without_version_lists_then_streams_changes(store, deployment):
    # Given one Deployment
    store.create(deployment("churn-stable"))
    # When watching from now while another is created
    events = store.watch("deployments", "models", timeout=10)
    threading.Timer(0.1, lambda: store.create(deployment("churn-canary"))).start()
    seen = []
    for kind, obj in events:
        seen.append((kind, obj["metadata"]["name"]))
        if obj["metadata"]["name"] == "churn-canary":
            break
    # Then the existing object comes first as ADDED, then the new one
    assert seen == [("ADDED", "churn-stable"), ("ADDED", "churn-canary")]


def test_watch_ends_at_its_timeout(store):
    started = time.monotonic()
    assert list(store.watch("deployments", "models", timeout=0.2)) == []
    assert 0.2 <= time.monotonic() - started < 3


def test_watch_from_a_resource_version_replays_what_happened_since(store, deployment):
    created = store.create(deployment())
    since = created["metadata"]["resourceVersion"]
    store.patch("deployments", "models", "churn-stable", {"spec": {"replicas": 3}}, MERGE_PATCH)
    store.delete("deployments", "models", "churn-stable")
    events = list(store.watch("deployments", "models", since_rv=since, timeout=0.1))
    assert [kind for kind, _ in events] == ["MODIFIED", "DELETED"]
    assert events[0][1]["spec"]["replicas"] == 3


def test_selector_watch_sees_objects_enter_and_leave_the_selection(store, deployment):
    created = store.create(deployment())
    since = created["metadata"]["resourceVersion"]
    store.patch(
        "deployments", "models", "churn-stable", {"metadata": {"labels": {"track": "yes"}}}, MERGE_PATCH
    )
    store.patch("deployments", "models", "churn-stable", {"spec": {"replicas": 4}}, MERGE_PATCH)
    store.patch(
        "deployments", "models", "churn-stable", {"metadata": {"labels": {"track": None}}}, MERGE_PATCH
    )
    events = list(
        store.watch("deployments", "models", since_rv=since, label_selector="track=yes", timeout=0.1)
    )
    assert [kind for kind, _ in events] == ["ADDED", "MODIFIED", "DELETED"]


def test_watch_from_a_version_older_than_the_history_is_expired(deployment):
    store = KubeStore(history_size=3, namespaces=("models",))
    created = store.create(deployment())
    for replicas in range(3, 8):
        store.patch("deployments", "models", "churn-stable", {"spec": {"replicas": replicas}}, MERGE_PATCH)
    with pytest.raises(ExpiredError) as caught:
        store.watch("deployments", "models", since_rv=created["metadata"]["resourceVersion"])
    assert caught.value.code == 410 and caught.value.message.startswith("too old resource version:")


def test_watch_ends_when_stopped(store):
    stop = threading.Event()
    events = store.watch("deployments", "models", timeout=30, stop=stop)
    threading.Timer(0.1, stop.set).start()
    started = time.monotonic()
    assert list(events) == []
    assert time.monotonic() - started < 2
