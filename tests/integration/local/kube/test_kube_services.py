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


def _route(weights: tuple[int, int]) -> dict:
    """churn's HTTPRoute in the mesh pattern (its parent the model's Service), as the gateway_api
    router's manifest ships it."""
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "churn", "namespace": "models"},
        "spec": {
            "parentRefs": [{"group": "", "kind": "Service", "name": "churn", "port": 8080}],
            "rules": [
                {
                    "backendRefs": [
                        {"name": "churn-stable", "port": 8080, "weight": weights[0]},
                        {"name": "churn-canary", "port": 8080, "weight": weights[1]},
                    ]
                }
            ],
        },
    }


def _variants(url: str, n: int) -> Counter:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    served: Counter = Counter()
    for _ in range(n):
        connection.request("POST", "/invocations", body=b"[1]", headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        answer = json.loads(response.read())
        served[answer["pod"].rsplit("-", 2)[0] if response.status == 200 else response.status] += 1
    connection.close()
    return served


def test_a_service_fronted_by_an_httproute_splits_exactly_by_its_weights(cluster):
    # Given 3 stable and 1 canary pods, the model Service selecting both, a Service per variant and
    # an HTTPRoute (parent: the model Service) weighing them 90/10
    cluster.store.create(deployment("churn-stable", replicas=3, variant="stable"))
    cluster.store.create(deployment("churn-canary", replicas=1, variant="canary"))
    for name, selector in (
        ("churn", {"app": "churn"}),
        ("churn-stable", {"app": "churn", "variant": "stable"}),
        ("churn-canary", {"app": "churn", "variant": "canary"}),
    ):
        cluster.store.create(service(name, selector))
    cluster.store.create(_route((90, 10)))
    cluster.wait_rolled_out("churn-stable")
    cluster.wait_rolled_out("churn-canary")
    wait_for("4 endpoints", lambda: len(cluster.services.endpoints("models", "churn")) == 4, 5)
    url = cluster.services.url("models", "churn")
    # When 200 requests go to the model Service, Then the canary answers exactly 10% (not its 25% of pods)
    assert _variants(url, 200) == {"churn-stable": 180, "churn-canary": 20}
    # And reweighing the route (a guarded JSON Patch, as the router sends it) takes effect at once
    path = "/spec/rules/0/backendRefs/1"
    cluster.store.patch(
        "httproutes",
        "models",
        "churn",
        [
            {"op": "test", "path": f"{path}/name", "value": "churn-canary"},
            {"op": "add", "path": f"{path}/weight", "value": 50},
            {"op": "test", "path": "/spec/rules/0/backendRefs/0/name", "value": "churn-stable"},
            {"op": "add", "path": "/spec/rules/0/backendRefs/0/weight", "value": 50},
        ],
        "application/json-patch+json",
    )
    assert _variants(url, 100) == {"churn-stable": 50, "churn-canary": 50}
    # And the Service's own Services are not meshed: the canary Service reaches only the canary
    assert _variants(cluster.services.url("models", "churn-canary"), 10) == {"churn-canary": 10}


def test_a_route_with_every_weight_zero_is_a_500_and_a_weighted_backend_without_pods_a_503(cluster):
    cluster.store.create(deployment("churn-stable", replicas=1, variant="stable"))
    for name, selector in (
        ("churn", {"app": "churn"}),
        ("churn-stable", {"app": "churn", "variant": "stable"}),
    ):
        cluster.store.create(service(name, selector))
    cluster.store.create(service("churn-canary", {"app": "churn", "variant": "canary"}))
    cluster.store.create(_route((0, 0)))
    cluster.wait_rolled_out("churn-stable")
    url = cluster.services.url("models", "churn")
    status, answer = post(url)
    assert status == 500 and "every backendRef of rule 0 has weight 0" in answer["error"]
    cluster.store.patch(
        "httproutes",
        "models",
        "churn",
        {"spec": {"rules": [_route((0, 1))["spec"]["rules"][0]]}},
        "application/merge-patch+json",
    )
    status, answer = post(url)
    assert status == 503 and 'no endpoints available for service "models/churn-canary"' in answer["error"]
