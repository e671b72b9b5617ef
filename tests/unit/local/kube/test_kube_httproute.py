"""HTTPRoute objects in the Kubernetes stand-in, as the Gateway API CRD (gateway.networking.k8s.io/v1)
and the API server document them: stored with resourceVersion and generation, JSON-patched with
`test` ops (a failed test is the 422 the API server answers, a stale resourceVersion a 409),
defaulted and validated by the CRD's rules; and the mesh routing the Service proxies apply."""

from __future__ import annotations

import copy
import itertools
from collections import Counter

import pytest

from modelops_local.kube import ConflictError, InvalidError, KubeStore
from modelops_local.kube.services import SmoothWeightedRoundRobin, route_rule
from tests.integration.fake_kube import http_route

JSON_PATCH = "application/json-patch+json"


@pytest.fixture
def store() -> KubeStore:
    kube = KubeStore()
    kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "models"}})
    return kube


def route_body() -> dict:
    body = http_route("churn", "churn-stable", "churn-canary")
    del body["metadata"]["generation"]
    return body


def weight_ops(index: int, name: str, weight: int) -> list[dict]:
    path = f"/spec/rules/0/backendRefs/{index}"
    return [
        {"op": "test", "path": f"{path}/name", "value": name},
        {"op": "add", "path": f"{path}/weight", "value": weight},
    ]


def test_an_httproute_is_stored_defaulted_and_versioned(store):
    created = store.create(route_body())
    assert created["apiVersion"] == "gateway.networking.k8s.io/v1" and created["metadata"]["generation"] == 1
    rule = created["spec"]["rules"][0]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]  # the CRD's default
    assert rule["backendRefs"][0] == {
        "name": "churn-stable",
        "port": 8080,
        "weight": 100,
        "group": "",
        "kind": "Service",
    }
    assert store.get("httproutes", "models", "churn") == created


def test_a_guarded_json_patch_sets_a_weight_bumps_generation_and_a_repeat_changes_nothing(store):
    created = store.create(route_body())
    patched = store.patch("httproutes", "models", "churn", weight_ops(1, "churn-canary", 10), JSON_PATCH)
    assert patched["spec"]["rules"][0]["backendRefs"][1]["weight"] == 10
    assert patched["metadata"]["generation"] == 2
    assert int(patched["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    again = store.patch("httproutes", "models", "churn", weight_ops(1, "churn-canary", 10), JSON_PATCH)
    assert again == patched  # nothing changed: same resourceVersion, same generation


def test_a_failed_test_op_is_the_api_servers_422_and_changes_nothing(store):
    store.create(route_body())
    before = store.get("httproutes", "models", "churn")
    with pytest.raises(InvalidError) as caught:
        store.patch("httproutes", "models", "churn", weight_ops(1, "churn-stable", 10), JSON_PATCH)
    assert caught.value.code == 422
    assert "the server rejected our request due to an error in our request" in str(caught.value)
    assert store.get("httproutes", "models", "churn") == before


def test_a_patch_carrying_a_stale_resource_version_is_a_409(store):
    created = store.create(route_body())
    store.patch("httproutes", "models", "churn", weight_ops(1, "churn-canary", 5), JSON_PATCH)
    stale = [
        {
            "op": "replace",
            "path": "/metadata/resourceVersion",
            "value": created["metadata"]["resourceVersion"],
        }
    ]
    with pytest.raises(ConflictError) as caught:
        store.patch("httproutes", "models", "churn", stale + weight_ops(1, "churn-canary", 50), JSON_PATCH)
    assert caught.value.code == 409
    assert store.get("httproutes", "models", "churn")["spec"]["rules"][0]["backendRefs"][1]["weight"] == 5


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (
            lambda r: r["spec"]["rules"][0]["backendRefs"][1].update(weight=1_000_001),
            "spec.rules[0].backendRefs[1].weight",
            "between 0 and 1000000",
        ),
        (
            lambda r: r["spec"]["rules"][0]["backendRefs"][1].update(weight=-1),
            "spec.rules[0].backendRefs[1].weight",
            "between 0 and 1000000",
        ),
        (
            lambda r: r["spec"]["rules"][0]["backendRefs"][1].update(weight="10"),
            "spec.rules[0].backendRefs[1].weight",
            "must be of type integer",
        ),
        (
            lambda r: r["spec"]["rules"][0]["backendRefs"][0].pop("port"),
            "spec.rules[0].backendRefs[0]",
            "Must have port for Service reference",
        ),
        (
            lambda r: r["spec"]["rules"][0]["backendRefs"][0].update(name=""),
            "spec.rules[0].backendRefs[0].name",
            "1 to 253 characters",
        ),
        (
            lambda r: r["spec"]["rules"][0]["backendRefs"].extend(
                [{"name": f"b{i}", "port": 80} for i in range(15)]
            ),
            "spec.rules[0].backendRefs",
            "must have at most 16 items",
        ),
        (lambda r: r["spec"]["parentRefs"][0].pop("name"), "spec.parentRefs[0].name", "Required value"),
    ],
)
def test_the_crds_rules_refuse_a_bad_route_naming_the_field(store, change, field, message):
    body = route_body()
    change(body)
    with pytest.raises(InvalidError) as caught:
        store.create(body)
    assert field in str(caught.value.to_status()) and message in str(caught.value.to_status())


def test_smooth_weighted_round_robin_is_exact_and_restarts_on_new_weights():
    picker = SmoothWeightedRoundRobin()
    picks = [picker.pick("r", [("stable", 90), ("canary", 10)]) for _ in range(100)]
    assert Counter(picks) == {"stable": 90, "canary": 10}
    # spread out, not bunched: no two canary picks in a row
    assert all(not (a == b == "canary") for a, b in itertools.pairwise(picks))
    assert [picker.pick("r", [("a", 3), ("b", 1)]) for _ in range(4)] == ["a", "a", "b", "a"]
    assert Counter(picker.pick("r", [("stable", 75), ("canary", 25)]) for _ in range(40)) == {
        "stable": 30,
        "canary": 10,
    }
    assert picker.pick("r", [("stable", 0), ("canary", 0)]) is None


def test_the_most_specific_path_match_picks_the_rule():
    route = http_route("churn", "churn-stable", "churn-canary")
    route["spec"]["rules"] = [
        {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/admin"}}]},
        {"matches": [{"path": {"type": "Exact", "value": "/admin/ping"}}]},
        {"matches": [{"headers": [{"name": "x", "value": "1"}]}]},
    ]
    assert route_rule(route, "/invocations") == 0
    assert route_rule(route, "/admin/x") == 1 and route_rule(route, "/administrator") == 0
    assert route_rule(route, "/admin/ping") == 2
    only_prefix = copy.deepcopy(route)
    only_prefix["spec"]["rules"] = [{"matches": [{"path": {"type": "PathPrefix", "value": "/v1"}}]}]
    assert route_rule(only_prefix, "/invocations") is None
