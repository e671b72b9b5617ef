"""Authentication, RBAC-style authorization, the service proxy and fault injection, over HTTPS."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from modelops.adapters.kube import KubeClient
from modelops.errors import KubeForbiddenError, KubeNotFoundError, KubeUnavailableError

from modelops_local.kube import MERGE_PATCH, EksTokenValidator, KubeApiServer
from modelops_local.kube.rbac import RoleAuthorizer
from modelops_local.manifests import render_manifests


def _status(exc: ApiException) -> dict:
    return json.loads(exc.body)


# --- authentication ------------------------------------------------------------------------------


def test_a_bad_token_is_401(make_client):
    apps = client.AppsV1Api(make_client("stolen-token"))
    with pytest.raises(ApiException) as caught:
        apps.list_namespaced_deployment("models")
    assert caught.value.status == 401 and _status(caught.value)["reason"] == "Unauthorized"


def test_healthz_needs_no_token_but_discovery_does(server, ca_file):
    import ssl

    context = ssl.create_default_context(cafile=ca_file)
    with urllib.request.urlopen(server.url + "/healthz", context=context, timeout=5) as response:
        assert response.read() == b"ok"
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(server.url + "/version", context=context, timeout=5)
    assert caught.value.code == 401


def test_eks_tokens_authenticate_end_to_end(store, tmp_path, eks_token, deployment):
    # Given a server that accepts EKS tokens for cluster "demo" (local credentials testing/testing)
    server = KubeApiServer(store, authenticate=EksTokenValidator("demo", {"testing": "testing"})).start()
    try:
        (tmp_path / "eks-ca.pem").write_bytes(server.ca_pem)

        def apps_with(token: str) -> client.AppsV1Api:
            configuration = client.Configuration(
                host=server.url,
                ssl_ca_cert=str(tmp_path / "eks-ca.pem"),
                api_key={"authorization": "Bearer " + token},
            )
            return client.AppsV1Api(client.ApiClient(configuration))

        # When a client presents a get-token style token for "demo", Then it is served
        good = apps_with(eks_token("demo"))
        assert good.create_namespaced_deployment("models", deployment()).metadata.name == "churn-stable"
        assert server.requests[-1][3] == "testing"
        # And a token for another cluster is refused
        with pytest.raises(ApiException) as caught:
            apps_with(eks_token("other")).read_namespaced_deployment("churn-stable", "models")
        assert caught.value.status == 401
    finally:
        server.stop()


# --- authorization -------------------------------------------------------------------------------


def _deployer_rbac(user: str, verb: str, resource: str, namespace: str | None, name: str | None) -> bool:
    """admin may do anything; deployer may only read deployments in `models`."""
    if user == "admin":
        return True
    return namespace == "models" and resource == "deployments" and verb in ("get", "list", "watch")


def test_forbidden_requests_get_the_rbac_message(server, make_client, deployment):
    server.authorize = _deployer_rbac
    client.AppsV1Api(make_client()).create_namespaced_deployment("models", deployment())
    apps = client.AppsV1Api(make_client("deployer-token"))
    assert apps.read_namespaced_deployment("churn-stable", "models").metadata.name == "churn-stable"
    with pytest.raises(ApiException) as caught:
        apps.patch_namespaced_deployment(
            "churn-stable", "models", {"spec": {"replicas": 1}}, _content_type=MERGE_PATCH
        )
    status = _status(caught.value)
    assert caught.value.status == 403 and status["reason"] == "Forbidden"
    assert status["message"] == (
        'deployments.apps "churn-stable" is forbidden: User "deployer" cannot patch resource "deployments" '
        'in API group "apps" in the namespace "models"'
    )
    with pytest.raises(ApiException) as caught:
        apps.patch_namespaced_deployment_scale(
            "churn-stable", "models", {"spec": {"replicas": 1}}, _content_type=MERGE_PATCH
        )
    assert 'cannot patch resource "deployments/scale" in API group "apps"' in _status(caught.value)["message"]


def test_the_product_reports_a_missing_rbac_permission(server, make_client, deployment):
    # Given the functions' identity may read but not patch Deployments
    server.authorize = _deployer_rbac
    client.AppsV1Api(make_client()).create_namespaced_deployment("models", deployment())
    kube = KubeClient(make_client("deployer-token"))
    # When the product patches, Then its error names the permission that is missing
    with pytest.raises(KubeForbiddenError, match='cannot patch resource "deployments" in API group "apps"'):
        kube.patch_deployment(
            "models", "churn-stable", [{"op": "replace", "path": "/spec/replicas", "value": 1}]
        )
    assert kube.get_deployment("models", "churn-stable")["spec"]["replicas"] == 2


def test_the_shipped_role_authorizes_by_name_as_the_api_server_does(
    server, core, make_client, deployment, echo_backend
):
    # Given the shipped Role and RoleBinding, with the deployer mapped to their group (admin sets up)
    shipped = RoleAuthorizer(
        render_manifests("churn", "models", "repo/model:1", "1", 2), {"deployer": ["modelops-rollout"]}
    )
    server.authorize = lambda user, verb, resource, namespace, name: (
        user == "admin" or shipped(user, verb, resource, namespace, name)
    )
    for name in ("churn-stable", "other-stable"):
        client.AppsV1Api(make_client()).create_namespaced_deployment("models", deployment(name))
    _service(core, "churn-canary")
    _service(core)
    server.service_backend = lambda namespace, name, port: echo_backend
    apps, proxy = client.AppsV1Api(make_client("deployer-token")), KubeClient(make_client("deployer-token"))

    # Then the deployer may read its model's Deployment by name, and list it only by a name selector
    assert apps.read_namespaced_deployment("churn-stable", "models").metadata.name == "churn-stable"
    listed = apps.list_namespaced_deployment("models", field_selector="metadata.name=churn-stable")
    assert [d.metadata.name for d in listed.items] == ["churn-stable"]
    for forbidden in (
        lambda: apps.read_namespaced_deployment("other-stable", "models"),
        lambda: apps.list_namespaced_deployment("models"),
    ):
        with pytest.raises(ApiException) as caught:
            forbidden()
        assert caught.value.status == 403
    # And it may POST through the canary Service's proxy (the name segment carries the port), not the main one
    assert (
        proxy.service_proxy_post("models", "churn-canary", 8080, "/invocations", {}, "application/json")[0]
        == 200
    )
    with pytest.raises(KubeForbiddenError, match='cannot create resource "services/proxy"'):
        proxy.service_proxy_post("models", "churn", 8080, "/invocations", {}, "application/json")


# --- service proxy -------------------------------------------------------------------------------


def _service(core, name: str = "churn") -> None:
    core.create_namespaced_service(
        "models",
        {
            "metadata": {"name": name},
            "spec": {"selector": {"app": "churn"}, "ports": [{"name": "http", "port": 8080}]},
        },
    )


def test_service_proxy_forwards_to_the_resolved_backend(server, core, echo_backend):
    # Given a Service whose endpoints the resolver knows
    _service(core)
    asked: list[tuple[str, str, str | None]] = []

    def resolver(namespace: str, name: str, port: str | None):
        asked.append((namespace, name, port))
        return echo_backend

    server.service_backend = resolver
    # When a client POSTs through the proxy path
    response = core.connect_post_namespaced_service_proxy_with_path(
        "churn:8080", "models", "v1/predict", _preload_content=False
    )
    # Then the backend got the request on the rest of the path, without the API credentials
    echoed = json.loads(response.data)
    assert response.status == 200 and response.headers["X-Backend"] == "echo"
    assert echoed["method"] == "POST" and echoed["path"] == "/v1/predict" and echoed["authorization"] is None
    assert asked == [("models", "churn", "8080")]


def test_the_products_service_proxy_post_carries_the_body(server, core, make_client, echo_backend):
    _service(core)
    server.service_backend = lambda namespace, name, port: echo_backend
    status, text = KubeClient(make_client()).service_proxy_post(
        "models", "churn", 8080, "/invocations", {"rows": [[1, 2]]}, "application/json"
    )
    echoed = json.loads(text)
    assert status == 200 and echoed["path"] == "/invocations"
    assert json.loads(echoed["body"]) == {"rows": [[1, 2]]} and echoed["content_type"] == "application/json"


def test_service_proxy_without_endpoints_is_503_and_unknown_service_404(server, core):
    _service(core)
    server.service_backend = lambda namespace, name, port: None
    with pytest.raises(ApiException) as caught:
        core.connect_get_namespaced_service_proxy_with_path("churn", "models", "ping")
    assert caught.value.status == 503
    assert _status(caught.value)["message"] == 'no endpoints available for service "churn"'
    with pytest.raises(ApiException) as caught:
        core.connect_get_namespaced_service_proxy_with_path("ghost", "models", "ping")
    assert caught.value.status == 404 and _status(caught.value)["message"] == 'services "ghost" not found'


def test_service_proxy_to_a_dead_backend_is_503(server, core):
    _service(core)
    server.service_backend = lambda namespace, name, port: ("127.0.0.1", 9)  # discard port: nothing listens
    with pytest.raises(ApiException) as caught:
        core.connect_get_namespaced_service_proxy_with_path("churn", "models", "ping")
    assert caught.value.status == 503 and "error trying to reach service" in _status(caught.value)["message"]


# --- faults --------------------------------------------------------------------------------------


def test_faults_fail_the_next_matching_requests_then_clear(server, apps, deployment):
    apps.create_namespaced_deployment("models", deployment())
    fault = server.faults.add("patch", "deployments", status=503, times=2, retry_after=1)
    for _ in range(2):
        with pytest.raises(ApiException) as caught:
            apps.patch_namespaced_deployment(
                "churn-stable", "models", {"spec": {"replicas": 3}}, _content_type=MERGE_PATCH
            )
        assert caught.value.status == 503 and caught.value.headers["Retry-After"] == "1"
    assert apps.read_namespaced_deployment("churn-stable", "models").spec.replicas == 2
    assert (
        apps.patch_namespaced_deployment(
            "churn-stable", "models", {"spec": {"replicas": 3}}, _content_type=MERGE_PATCH
        ).spec.replicas
        == 3
    )
    assert fault.fired == 2


def test_a_delay_fault_slows_a_request_and_a_disconnect_drops_it(server, make_client, deployment):
    kube = KubeClient(make_client())
    client.AppsV1Api(make_client()).create_namespaced_deployment("models", deployment())
    server.faults.add("get", "deployments", status=None, delay=0.3)
    started = time.monotonic()
    assert kube.get_deployment("models", "churn-stable")["metadata"]["name"] == "churn-stable"
    assert time.monotonic() - started >= 0.3
    server.faults.add("get", "deployments", disconnect=True)
    with pytest.raises(KubeUnavailableError):
        kube.get_deployment("models", "churn-stable")
    server.faults.add("get", "deployments", status=500)
    with pytest.raises(KubeUnavailableError, match="500"):
        kube.get_deployment("models", "churn-stable")
    with pytest.raises(KubeNotFoundError):
        kube.get_deployment("models", "ghost")


def test_the_clients_read_timeout_is_20_s_unless_given_and_bounds_a_stalled_request(
    server, make_client, deployment
):
    # Given the product's default client and one built with a 0.5 s read timeout
    assert KubeClient(make_client()).request_timeout == (5, 20)
    kube = KubeClient(make_client(), request_timeout=(5, 0.5))
    client.AppsV1Api(make_client()).create_namespaced_deployment("models", deployment())
    # When the API server holds the next get for 3 s
    server.faults.add("get", "deployments", status=None, delay=3)
    started = time.monotonic()
    # Then the client gives up after its read timeout with the named error, well before the server answers
    with pytest.raises(KubeUnavailableError, match="unreachable"):
        kube.get_deployment("models", "churn-stable")
    assert time.monotonic() - started < 2.5


def test_the_products_image_patch_works_against_the_stand_in(make_client, deployment):
    from modelops.deployments import image_patch, rollout_status

    # Given the stable Deployment
    client.AppsV1Api(make_client()).create_namespaced_deployment("models", deployment())
    kube = KubeClient(make_client())
    current = kube.get_deployment("models", "churn-stable")
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/serving@sha256:" + "3" * 64
    # When the product patches the image the way it does in a rollout
    patched = kube.patch_deployment(
        "models",
        "churn-stable",
        image_patch(current, container="model", image=image, replicas=3, version="7", run_id="r1"),
    )
    # Then the server applied it (guarded by the test op) and the rollout is not yet observed
    assert patched["spec"]["template"]["spec"]["containers"][0]["image"] == image
    assert patched["spec"]["template"]["metadata"]["annotations"]["modelops.io/version"] == "7"
    assert patched["metadata"]["generation"] == 2
    assert not rollout_status(patched, container="model", expected_image=image).done


def test_a_rewrite_fault_serves_a_patch_other_than_sent_and_a_hook_runs_mid_request(server, apps, deployment):
    # Given a fault that adds an op to the next JSON Patch of the Deployment and records the hit
    apps.create_namespaced_deployment("models", deployment())
    hits: list[str] = []
    server.faults.add(
        "patch",
        "deployments",
        name="churn-stable",
        status=None,
        rewrite=lambda ops: [*ops, {"op": "replace", "path": "/spec/replicas", "value": 5}],
        on_match=lambda: hits.append("patch"),
    )
    # When the client patches only the paused flag
    patched = apps.patch_namespaced_deployment(
        "churn-stable", "models", [{"op": "add", "path": "/spec/paused", "value": True}]
    )
    # Then the server applied the rewritten patch, and the hook ran for that request only
    assert patched.spec.paused is True and patched.spec.replicas == 5 and hits == ["patch"]
    again = apps.patch_namespaced_deployment(
        "churn-stable", "models", [{"op": "replace", "path": "/spec/replicas", "value": 1}]
    )
    assert again.spec.replicas == 1 and hits == ["patch"]


# --- the weighted routers' objects ---------------------------------------------------------------


@pytest.mark.parametrize("router", ["gateway_api", "alb"])
def test_the_weighted_routers_reweigh_their_object_through_the_official_client_and_the_shipped_role(
    store, server, make_client, router
):
    from modelops.config import load_config_file
    from modelops.routers import router_for

    from tests.unit.serving.test_k8s_security import ROOT

    # Given the model's manifests for the router applied (route or Ingress at 100/0) and the
    # shipped Roles enforced for the functions' identity
    manifests = render_manifests("churn", "models", "repo/model:1", "1", 2, router=router)
    kind = "HTTPRoute" if router == "gateway_api" else "Ingress"
    for obj in manifests:
        if obj["kind"] in (kind, "Service"):
            store.create(obj)
    shipped = RoleAuthorizer(manifests, {"deployer": ["modelops-rollout"]})
    server.authorize = lambda user, verb, resource, namespace, name: shipped(
        user, verb, resource, namespace, name
    )
    doc = load_config_file(ROOT / "models" / "churn.yaml").to_document()
    doc["canary"].update(router=router, steps=[10, 50])
    doc["kubernetes"].update(
        stable_service="churn-stable", http_route="churn", ingress="churn", ingress_action="churn-split"
    )
    from modelops.config import parse_config

    kube = KubeClient(make_client("deployer-token"))
    route = router_for(parse_config(doc), kube, 2)
    # When the router shifts to 10%, then 50%, then resets
    versions = [int(store.get(kind, "models", "churn")["metadata"]["resourceVersion"])]
    for step in (10, 50):
        route.shift(step)
        assert route.canary_share() == float(step)
        versions.append(int(store.get(kind, "models", "churn")["metadata"]["resourceVersion"]))
    route.shift(50)  # a repeated step patches nothing
    assert int(store.get(kind, "models", "churn")["metadata"]["resourceVersion"]) == versions[-1]
    route.reset()
    # Then the object was written through the API server at each step and is back at 100/0
    assert route.canary_share() == 0.0
    assert versions == sorted(set(versions))
    # And the Role allows that one object only: another is forbidden by name
    other = {**store.get(kind, "models", "churn"), "metadata": {"name": "other", "namespace": "models"}}
    other.pop("status", None)
    store.create(other)
    getter = kube.get_http_route if router == "gateway_api" else kube.get_ingress
    with pytest.raises(
        KubeForbiddenError,
        match=f'cannot get resource "{"httproutes" if router == "gateway_api" else "ingresses"}"',
    ):
        getter("models", "other")


def test_a_missing_httproute_is_named_as_not_found(make_client):
    with pytest.raises(
        KubeNotFoundError, match="httproutes.gateway.networking.k8s.io models/churn: not found"
    ):
        KubeClient(make_client()).get_http_route("models", "churn")
