"""Label/field selectors, URL routing, discovery and fault matching: pure logic of the stand-in."""

from __future__ import annotations

import pytest

from modelops_local.kube import BadRequestError, FaultInjector, MethodNotAllowedError, NotFoundError
from modelops_local.kube.resources import DEPLOYMENTS, NAMESPACES, PODS, SERVICES, resource_type
from modelops_local.kube.routes import discovery_document, parse_path, split_proxy_name
from modelops_local.kube.selectors import parse_field_selector, parse_label_selector, selector_from_spec

LABELS = {"app": "churn", "variant": "canary", "tier": "web", "revision": "7"}


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        ("", True),
        ("app=churn", True),
        ("app==churn", True),
        ("app=other", False),
        ("app!=other", True),
        ("missing!=x", True),
        ("variant in (canary,stable)", True),
        ("variant in (stable)", False),
        ("variant notin (stable)", True),
        ("missing notin (a)", True),
        ("tier", True),
        ("!tier", False),
        ("!missing", True),
        ("app=churn,variant!=stable,tier in (web, api),!gpu,revision", True),
        ("app=churn,variant=stable", False),
        ("revision>5", True),
        ("revision<5", False),
    ],
)
def test_label_selector_matches_like_the_api_server(selector, matches):
    assert parse_label_selector(selector).matches(LABELS) is matches


@pytest.mark.parametrize(
    "selector", ["app in ()", "app=churn,,x=y", "a b", "-bad=x", "app=has space", "revision>x"]
)
def test_unparseable_label_selector_is_a_bad_request(selector):
    with pytest.raises(BadRequestError, match="unable to parse requirement"):
        parse_label_selector(selector)


def test_label_selector_spec_becomes_a_selector_and_renders_sorted():
    # Given a Deployment's selector with matchLabels and matchExpressions
    spec = {
        "matchLabels": {"app": "churn"},
        "matchExpressions": [
            {"key": "variant", "operator": "In", "values": ["canary", "stable"]},
            {"key": "gpu", "operator": "DoesNotExist"},
        ],
    }
    selector = selector_from_spec(spec)
    # Then it matches the same objects and renders like LabelSelectorAsSelector().String()
    assert selector.matches(LABELS)
    assert not selector.matches({**LABELS, "gpu": "yes"})
    assert str(selector) == "app=churn,!gpu,variant in (canary,stable)"


def test_label_selector_spec_with_a_bad_operator_is_rejected():
    with pytest.raises(ValueError, match="operator"):
        selector_from_spec({"matchExpressions": [{"key": "a", "operator": "Maybe"}]})


def test_field_selectors_support_metadata_fields_and_pod_fields():
    pod = {
        "metadata": {"name": "p1", "namespace": "models"},
        "spec": {"nodeName": "local"},
        "status": {"phase": "Running"},
    }
    assert parse_field_selector("metadata.name=p1,status.phase!=Pending", "pods").matches(pod)
    assert not parse_field_selector("spec.nodeName==other", "pods").matches(pod)
    with pytest.raises(BadRequestError, match="field label not supported: status.phase"):
        parse_field_selector("status.phase=Running", "deployments")


def test_resource_types_are_found_by_kind_plural_or_short_name():
    assert resource_type("Deployment") is DEPLOYMENTS
    assert resource_type("deployments.apps") is DEPLOYMENTS
    assert resource_type("svc") is SERVICES
    assert DEPLOYMENTS.group_resource == "deployments.apps"
    assert PODS.group_resource == "pods"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/apis/apps/v1/namespaces/models/deployments", (DEPLOYMENTS, "models", None, None)),
        ("/apis/apps/v1/namespaces/models/deployments/churn", (DEPLOYMENTS, "models", "churn", None)),
        (
            "/apis/apps/v1/namespaces/models/deployments/churn/status",
            (DEPLOYMENTS, "models", "churn", "status"),
        ),
        (
            "/apis/apps/v1/namespaces/models/deployments/churn/scale",
            (DEPLOYMENTS, "models", "churn", "scale"),
        ),
        ("/apis/apps/v1/deployments", (DEPLOYMENTS, None, None, None)),
        ("/api/v1/namespaces", (NAMESPACES, None, None, None)),
        ("/api/v1/namespaces/models", (NAMESPACES, None, "models", None)),
        ("/api/v1/namespaces/models/status", (NAMESPACES, None, "models", "status")),
        ("/api/v1/namespaces/models/pods", (PODS, "models", None, None)),
    ],
)
def test_paths_route_like_the_api_server(path, expected):
    route = parse_path(path)
    assert (route.rt, route.namespace, route.name, route.subresource) == expected


def test_service_proxy_path_keeps_the_rest_of_the_path_and_decodes_it():
    # Given the official client's encoding of name and path ("svc%3A8080", "v1%2Fpredict")
    route = parse_path("/api/v1/namespaces/models/services/churn%3A8080/proxy/v1%2Fpredict")
    assert (route.rt, route.name, route.subresource, route.proxy_path) == (
        SERVICES,
        "churn:8080",
        "proxy",
        "/v1/predict",
    )
    assert parse_path("/api/v1/namespaces/models/services/churn/proxy").proxy_path == "/"
    assert split_proxy_name("https:churn:8443") == ("https", "churn", "8443")
    assert split_proxy_name("churn") == ("", "churn", None)


@pytest.mark.parametrize(
    "path",
    [
        "/apis/apps/v1/namespaces/models/widgets",
        "/apis/apps/v1/namespaces/models/deployments/churn/logs",
        "/apis/apps/v1/deployments/churn",
        "/api/v1/namespaces/models/pods/p/scale",
        "/nothing",
    ],
)
def test_unknown_paths_are_404(path):
    with pytest.raises(NotFoundError):
        parse_path(path)


def test_verbs_follow_method_and_route_and_others_are_405():
    collection = parse_path("/apis/apps/v1/namespaces/models/deployments")
    item = parse_path("/apis/apps/v1/namespaces/models/deployments/churn")
    scale = parse_path("/apis/apps/v1/namespaces/models/deployments/churn/scale")
    proxy = parse_path("/api/v1/namespaces/models/services/churn/proxy/x")
    assert collection.verb("GET", watch=False) == "list"
    assert item.verb("PATCH", watch=False) == "patch"
    assert scale.rbac_resource == "deployments/scale"
    assert proxy.verb("POST", watch=False) == "create"
    assert proxy.rbac_resource == "services/proxy"
    # DELETE of a collection (deletecollection) included: nothing in modelops deletes collections
    for route, method in ((collection, "PUT"), (collection, "DELETE"), (item, "POST"), (scale, "DELETE")):
        with pytest.raises(MethodNotAllowedError):
            route.verb(method, watch=False)
    # nothing in modelops watches, so the stand-in serves no watch and says so
    with pytest.raises(MethodNotAllowedError, match="watch is not served"):
        collection.verb("GET", watch=True)


def test_discovery_documents_describe_the_served_resources():
    apps = discovery_document("/apis/apps/v1", "127.0.0.1:1")
    names = {r["name"] for r in apps["resources"]}
    assert {"deployments", "deployments/status", "deployments/scale", "replicasets"} <= names
    assert discovery_document("/version", "x")["gitVersion"].startswith("v1.")
    assert discovery_document("/apis", "x")["groups"][0]["name"] == "apps"


def test_faults_hit_only_matching_requests_and_only_n_times():
    # Given a fault for two patches of deployments
    faults = FaultInjector()
    fault = faults.add("patch", "deployments", status=503, times=2)
    # When requests arrive, Then only matching ones take it, twice
    assert faults.take("get", "deployments", "models", "churn") is None
    assert faults.take("patch", "deployments/scale", "models", "churn") is None
    assert faults.take("patch", "deployments", "models", "churn") is fault
    assert faults.take("patch", "deployments", "models", "other") is fault
    assert faults.take("patch", "deployments", "models", "churn") is None
    assert fault.fired == 2 and faults.pending == []
