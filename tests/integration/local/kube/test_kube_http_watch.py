"""Watch streams through the official client's kubernetes.watch.Watch, all bounded by timeouts."""

from __future__ import annotations

import threading
import time

import pytest
from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from modelops_local.kube import KubeApiServer, KubeStore


def _collect(stream_watch, func, *args, until: int, **kwargs):
    """Events from a watch until `until` arrived (the watch's timeout_seconds bounds the wait)."""
    events = []
    for event in stream_watch.stream(func, *args, **kwargs):
        events.append(event)
        if len(events) >= until:
            stream_watch.stop()
    return events


def test_watch_stream_sees_existing_objects_then_changes(apps, deployment):
    # Given one Deployment and a change made while the watch is open
    apps.create_namespaced_deployment("models", deployment("churn-stable"))
    threading.Timer(
        0.3, lambda: apps.patch_namespaced_deployment("churn-stable", "models", {"spec": {"replicas": 3}})
    ).start()
    # When watching
    events = _collect(watch.Watch(), apps.list_namespaced_deployment, "models", until=2, timeout_seconds=10)
    # Then the existing object came as ADDED and the change as MODIFIED, as typed client objects
    assert [(e["type"], e["object"].metadata.name, e["object"].spec.replicas) for e in events] == [
        ("ADDED", "churn-stable", 2),
        ("MODIFIED", "churn-stable", 3),
    ]


def test_watch_stream_ends_at_timeout_seconds(apps):
    started = time.monotonic()
    assert list(watch.Watch().stream(apps.list_namespaced_deployment, "models", timeout_seconds=1)) == []
    assert 1 <= time.monotonic() - started < 5


def test_watch_resumes_from_a_resource_version(apps, deployment):
    created = apps.create_namespaced_deployment("models", deployment("churn-stable"))
    apps.create_namespaced_deployment("models", deployment("churn-canary"))
    apps.delete_namespaced_deployment("churn-stable", "models")
    events = _collect(
        watch.Watch(),
        apps.list_namespaced_deployment,
        "models",
        until=2,
        resource_version=created.metadata.resource_version,
        timeout_seconds=10,
    )
    assert [(e["type"], e["object"].metadata.name) for e in events] == [
        ("ADDED", "churn-canary"),
        ("DELETED", "churn-stable"),
    ]


def test_watch_with_a_label_selector(apps, deployment):
    apps.create_namespaced_deployment("models", deployment("churn-stable"))
    apps.create_namespaced_deployment("models", deployment("churn-canary"))
    stream = watch.Watch().stream(
        apps.list_namespaced_deployment, "models", label_selector="variant=canary", timeout_seconds=1
    )
    assert [e["object"].metadata.name for e in stream] == ["churn-canary"]


def test_watch_from_an_expired_version_raises_410(make_client, deployment, tmp_path):
    # Given a server that keeps a short history
    from kubernetes import client

    store = KubeStore(history_size=2, namespaces=("models",))
    server = KubeApiServer(store).start()
    try:
        (tmp_path / "ca2.pem").write_bytes(server.ca_pem)
        configuration = client.Configuration(host=server.url, ssl_ca_cert=str(tmp_path / "ca2.pem"))
        apps = client.AppsV1Api(client.ApiClient(configuration))
        first = apps.create_namespaced_deployment("models", deployment())
        for replicas in range(3, 7):
            apps.patch_namespaced_deployment("churn-stable", "models", {"spec": {"replicas": replicas}})
        # When watching from the first version, Then the client raises the API's 410
        with pytest.raises(ApiException) as caught:
            list(
                watch.Watch().stream(
                    apps.list_namespaced_deployment,
                    "models",
                    resource_version=first.metadata.resource_version,
                    timeout_seconds=1,
                )
            )
        assert caught.value.status == 410
        apps.api_client.close()
    finally:
        server.stop()


def test_stopping_the_server_ends_open_watches_promptly(store, deployment):
    # Given a server with a long watch open (it has seen the existing Deployment)
    from kubernetes import client

    store.create(deployment(), namespace="models")
    server = KubeApiServer(store, tls=False).start()
    apps = client.AppsV1Api(client.ApiClient(client.Configuration(host=server.url)))
    received: list[str] = []

    def consume() -> None:
        try:
            for event in watch.Watch().stream(apps.list_namespaced_deployment, "models", timeout_seconds=60):
                received.append(event["type"])
        except Exception:  # the connection closing under the client is expected
            received.append("closed")

    watcher = threading.Thread(target=consume, daemon=True)
    watcher.start()
    deadline = time.monotonic() + 5
    while not received and time.monotonic() < deadline:
        time.sleep(0.05)
    # When the server stops, Then it returns within its bound and the watch ends
    started = time.monotonic()
    server.stop(timeout=5)
    watcher.join(5)
    assert time.monotonic() - started < 5
    assert not watcher.is_alive()
    assert received[0] == "ADDED"
    apps.api_client.close()
