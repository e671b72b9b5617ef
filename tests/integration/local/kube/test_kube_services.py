"""Service ports over real pod processes: per-request round robin by ready pods, no failures
while rolling, 503 without endpoints, the API server's service proxy path, port conflicts."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from kube_pods import IMAGE_V2, LocalCluster, deployment, pods_of, post, service, wait_for

from modelops_local.kube import KubeApiServer, KubeStore
from modelops_local.kube.services import ServicePortError, ServiceProxies


@pytest.fixture
def cluster(tmp_path: Path):
    with LocalCluster(tmp_path) as local:
        yield local


def test_one_canary_of_four_ready_pods_gets_about_a_quarter_of_requests(cluster):
    # Given 3 stable and 1 canary pods behind the model Service (both variants selected)
    cluster.store.create(deployment("churn-stable", replicas=3, variant="stable"))
    cluster.store.create(deployment("churn-canary", replicas=1, variant="canary"))
    cluster.store.create(service("churn", {"app": "churn"}))
    cluster.wait_rolled_out("churn-stable")
    cluster.wait_rolled_out("churn-canary")
    wait_for("4 endpoints", lambda: len(cluster.services.endpoints("models", "churn")) == 4, 5)
    url = cluster.services.url("models", "churn")
    host, port = url.removeprefix("http://").split(":")
    # When 400 requests go through one keep-alive connection
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    served = Counter()
    for _ in range(400):
        connection.request("POST", "/invocations", body=b"[1]", headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        assert response.status == 200
        served[json.loads(response.read())["pod"].rsplit("-", 2)[0]] += 1
    connection.close()
    # Then the canary's share is a quarter (binomial 1/4 of 400: sd ~8.7; 6 sd either side)
    assert 48 <= served["churn-canary"] <= 152, served
    assert served["churn-canary"] + served["churn-stable"] == 400


def test_requests_during_a_rolling_update_never_fail(cluster):
    # Given a ready Deployment of 2 behind its Service and a client sending requests continuously
    cluster.store.create(deployment("churn-stable", replicas=2))
    cluster.store.create(service("churn", {"app": "churn"}))
    cluster.wait_rolled_out("churn-stable")
    url = cluster.services.url("models", "churn")
    stop = threading.Event()
    results: list[tuple[int, str]] = []

    def client() -> None:
        while not stop.is_set():
            try:
                status, answer = post(url, timeout=5)
                results.append((status, str(answer.get("version") or answer.get("pod") or answer)))
            except OSError as exc:
                results.append((0, repr(exc)))

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    try:
        # When the image changes and the rollout completes (old pods terminated too)
        time.sleep(0.2)
        cluster.set_image("churn-stable", IMAGE_V2)
        wait_for(
            "observed", lambda: cluster.deployment("churn-stable")["status"]["observedGeneration"] == 2, 5
        )
        cluster.wait_rolled_out("churn-stable", timeout=20)
        wait_for(
            "old pods gone",
            lambda: all(
                p["spec"]["containers"][0]["image"] == IMAGE_V2 for p in pods_of(cluster.store, "app=churn")
            ),
            10,
        )
        time.sleep(0.2)
    finally:
        stop.set()
        thread.join(10)
    # Then every request was answered with 200
    failures = [r for r in results if r[0] != 200]
    assert len(results) > 50 and not failures, (len(results), failures[:5])


def test_no_ready_endpoint_is_a_clear_503(cluster):
    # Given a Service whose only pod never becomes ready
    cluster.store.create(deployment("churn-stable", env={"FAKE_READY_DELAY": "600"}))
    cluster.store.create(service("churn", {"app": "churn"}))
    wait_for("pod running", lambda: pods_of(cluster.store, "app=churn"), 5)
    # When a request arrives / Then 503 naming the Service
    status, answer = post(cluster.services.url("models", "churn"))
    assert status == 503
    assert 'no endpoints available for service "models/churn"' in answer["error"]
    assert cluster.services.endpoints("models", "churn") == []


def test_the_api_server_service_proxy_reaches_a_ready_pod(cluster):
    # Given the API server wired to the Service proxies and a ready canary behind its Service
    server = KubeApiServer(cluster.store, tls=False).start()
    server.service_backend = cluster.services.backend
    try:
        cluster.store.create(deployment("churn-canary", variant="canary"))
        cluster.store.create(service("churn-canary", {"app": "churn", "variant": "canary"}))
        cluster.wait_rolled_out("churn-canary")
        (pod,) = pods_of(cluster.store, "variant=canary")
        # When a smoke test goes through /api/v1/namespaces/models/services/churn-canary:http/proxy/...
        request = urllib.request.Request(
            f"{server.url}/api/v1/namespaces/models/services/churn-canary:http/proxy/invocations",
            data=b"[1]",
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            answer = json.loads(response.read())
        # Then the pod answered
        assert answer["pod"] == pod["metadata"]["name"]
        assert cluster.services.backend("models", "churn-canary", None) == (
            "127.0.0.1",
            cluster.services.endpoints("models", "churn-canary")[0][2],
        )
    finally:
        server.stop()


def test_a_port_that_cannot_be_bound_is_named_in_the_error():
    # Given a port already in use and a Service fixed to it
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    store = KubeStore()
    store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "models"}})
    store.create(service("churn", {"app": "churn"}))
    proxies = ServiceProxies(store, ports={"models/churn": port}).start()
    try:
        # When its URL is asked for / Then the error names the Service and the port
        with pytest.raises(
            ServicePortError, match=rf"127\.0\.0\.1:{port} for Service models/churn port 8080"
        ):
            proxies.url("models", "churn")
    finally:
        proxies.stop()
        taken.close()
