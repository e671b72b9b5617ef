"""Traffic routers and canary steps: the config's shapes and its errors, the weight patches
(guarded by `test` ops, idempotent, never touching a selector) and which router a model gets."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonpatch
import pytest
from modelops.config import load_config_file, parse_config
from modelops.errors import ConfigError, KubeInvalidError
from modelops.routers import AlbRouter, GatewayApiRouter, ReplicasRouter, router_for, step_plan
from modelops.traffic import (
    ALB_ACTION_PREFIX,
    alb_canary_share,
    alb_weight_patch,
    http_route_canary_share,
    http_route_weight_patch,
    replicas_for_share,
)

from tests.integration.fake_kube import FakeKube, deployment, http_route

ROOT = Path(__file__).resolve().parents[3]
OLD = "r.example/m@sha256:" + "1" * 64


def doc(canary=None, kubernetes=None):
    document = load_config_file(ROOT / "models" / "churn.yaml").to_document()
    document["canary"] = {**document["canary"], **(canary or {})}
    document["kubernetes"] = {**document["kubernetes"], **(kubernetes or {})}
    return document


GATEWAY_NAMES = {"stable_service": "churn-stable", "http_route": "churn"}
ALB_NAMES = {"stable_service": "churn-stable", "ingress": "churn", "ingress_action": "churn-split"}


# ----------------------------------------------------------------------------------- config
def test_no_router_or_steps_is_todays_one_step_canary():
    config = parse_config(doc())
    assert config.canary.router == "replicas"
    assert config.canary.traffic_steps == [] and step_plan(config) == [None]


def test_steps_and_the_linear_shorthand():
    stepped = parse_config(doc({"steps": [10, 25, 50], "replicas": None}))
    assert stepped.canary.traffic_steps == [10, 25, 50]
    assert stepped.canary.step_bake_seconds == stepped.canary.bake_seconds
    linear = parse_config(doc({"linear": {"percent": 10, "interval_seconds": 45}, "replicas": None}))
    assert linear.canary.traffic_steps == [10, 20, 30, 40, 50, 60, 70, 80, 90]
    assert linear.canary.step_bake_seconds == 45
    assert parse_config(
        doc({"linear": {"percent": 30, "interval_seconds": 5}, "replicas": None})
    ).canary.traffic_steps == [30, 60, 90]


@pytest.mark.parametrize(
    ("canary", "kubernetes", "message"),
    [
        (
            {"steps": [10, 10, 50], "replicas": None},
            {},
            "canary.steps: steps [10, 10, 50] must be strictly increasing (10 follows 10)",
        ),
        (
            {"steps": [50, 25], "replicas": None},
            {},
            "canary.steps: steps [50, 25] must be strictly increasing (25 follows 50)",
        ),
        (
            {"steps": [10, 100], "replicas": None},
            {},
            "canary.steps: steps [100] out of range: each step is a percent of traffic from 1 to 99",
        ),
        ({"steps": [0, 20], "replicas": None}, {}, "canary.steps: steps [0] out of range"),
        ({"steps": [], "replicas": None}, {}, "canary.steps: List should have at least 1 item"),
        (
            {"steps": [10], "linear": {"percent": 10, "interval_seconds": 5}, "replicas": None},
            {},
            "canary: set canary.steps or canary.linear, not both",
        ),
        (
            {"steps": [10, 50]},
            {},
            "with canary.router replicas the steps decide the canary's pods per step; remove canary.replicas",
        ),
        ({"linear": {"percent": 0, "interval_seconds": 5}, "replicas": None}, {}, "canary.linear.percent"),
        (
            {"router": "gateway_api"},
            GATEWAY_NAMES,
            "canary.router gateway_api sets traffic weights: give them as canary.steps",
        ),
        (
            {"router": "gateway_api", "steps": [10]},
            {},
            "canary.router gateway_api needs kubernetes.stable_service, kubernetes.http_route",
        ),
        (
            {"router": "alb", "steps": [10]},
            {"stable_service": "churn-stable"},
            "canary.router alb needs kubernetes.ingress, kubernetes.ingress_action",
        ),
        (
            {"router": "istio", "steps": [10]},
            {},
            "canary.router: Input should be 'replicas', 'gateway_api' or 'alb'",
        ),
        (
            {"router": "gateway_api", "steps": [10]},
            {**GATEWAY_NAMES, "stable_service": "churn-canary"},
            "stable_service and canary_service must differ",
        ),
    ],
)
def test_bad_router_and_step_configs_are_refused_naming_the_field(canary, kubernetes, message):
    with pytest.raises(ConfigError) as caught:
        parse_config(doc(canary, kubernetes))
    assert message in str(caught.value)


def test_weighted_routers_size_the_canary_for_its_largest_step_unless_told():
    config = parse_config(doc({"router": "gateway_api", "steps": [10, 50], "replicas": None}, GATEWAY_NAMES))
    assert config.canary.canary_replicas(4) == 2  # 50% of 4 stable pods' load
    sized = parse_config(doc({"router": "gateway_api", "steps": [10, 50]}, GATEWAY_NAMES))
    assert sized.canary.canary_replicas(4) == 1  # canary.replicas: 1 as configured


# ----------------------------------------------------------------------------- HTTPRoute patches
ROUTE = http_route("churn", "churn-stable", "churn-canary")


def route_with_selector_and_second_rule():
    route = copy.deepcopy(ROUTE)
    route["metadata"]["labels"] = {"app": "churn"}
    route["spec"]["rules"].insert(
        0,
        {
            "matches": [{"path": {"type": "PathPrefix", "value": "/admin"}}],
            "backendRefs": [{"name": "admin", "port": 80}],
        },
    )
    return route


def test_httproute_weights_are_set_under_test_ops_on_the_backend_names():
    route = route_with_selector_and_second_rule()
    ops = http_route_weight_patch(route, stable="churn-stable", canary="churn-canary", canary_percent=25)
    assert ops == [
        {"op": "test", "path": "/spec/rules/1/backendRefs/0/name", "value": "churn-stable"},
        {"op": "add", "path": "/spec/rules/1/backendRefs/0/weight", "value": 75},
        {"op": "test", "path": "/spec/rules/1/backendRefs/1/name", "value": "churn-canary"},
        {"op": "add", "path": "/spec/rules/1/backendRefs/1/weight", "value": 25},
    ]
    patched = jsonpatch.apply_patch(route, ops)
    assert http_route_canary_share(patched, stable="churn-stable", canary="churn-canary") == 25.0
    # Only the two weights changed: no selector, label, parent or other rule
    expected = copy.deepcopy(route)
    expected["spec"]["rules"][1]["backendRefs"][0]["weight"] = 75
    expected["spec"]["rules"][1]["backendRefs"][1]["weight"] = 25
    assert patched == expected
    # Idempotent: at the weights already, nothing to patch; applying the ops again changes nothing
    assert (
        http_route_weight_patch(patched, stable="churn-stable", canary="churn-canary", canary_percent=25)
        == []
    )
    assert jsonpatch.apply_patch(patched, ops) == patched


def test_a_route_edited_meanwhile_fails_the_test_op_instead_of_reweighing_another_backend():
    route = copy.deepcopy(ROUTE)
    ops = http_route_weight_patch(route, stable="churn-stable", canary="churn-canary", canary_percent=10)
    route["spec"]["rules"][0]["backendRefs"].reverse()  # someone reordered the backends
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        jsonpatch.apply_patch(route, ops)


def test_a_weight_without_a_value_counts_as_one_and_a_route_without_both_services_is_named():
    route = copy.deepcopy(ROUTE)
    for ref in route["spec"]["rules"][0]["backendRefs"]:
        del ref["weight"]
    assert http_route_canary_share(route, stable="churn-stable", canary="churn-canary") == 50.0
    with pytest.raises(
        KubeInvalidError,
        match=r"HTTPRoute models/churn has no rule whose backendRefs name both Services 'churn-stable' and 'churn-v2'",
    ):
        http_route_weight_patch(route, stable="churn-stable", canary="churn-v2", canary_percent=10)
    with pytest.raises(KubeInvalidError, match="percent from 0 to 100"):
        http_route_weight_patch(route, stable="churn-stable", canary="churn-canary", canary_percent=101)


# ------------------------------------------------------------------------------------ ALB patches
def ingress(weights=(100, 0), action="churn-split"):
    forward = {
        "type": "forward",
        "forwardConfig": {
            "targetGroups": [
                {"serviceName": "churn-stable", "servicePort": "8080", "weight": weights[0]},
                {"serviceName": "churn-canary", "servicePort": "8080", "weight": weights[1]},
            ],
            "targetGroupStickinessConfig": {"enabled": False},
        },
    }
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": "churn",
            "namespace": "models",
            "annotations": {
                ALB_ACTION_PREFIX + action: json.dumps(forward),
                "alb.ingress.kubernetes.io/scheme": "internal",
            },
        },
        "spec": {
            "rules": [
                {
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": action, "port": {"name": "use-annotation"}}},
                            }
                        ]
                    }
                }
            ]
        },
    }


def test_alb_target_group_weights_are_replaced_under_a_test_of_the_whole_action():
    before = ingress()
    ops = alb_weight_patch(
        before, action="churn-split", stable="churn-stable", canary="churn-canary", canary_percent=10
    )
    key = "/metadata/annotations/alb.ingress.kubernetes.io~1actions.churn-split"
    assert [(op["op"], op["path"]) for op in ops] == [("test", key), ("replace", key)]
    assert ops[0]["value"] == before["metadata"]["annotations"][ALB_ACTION_PREFIX + "churn-split"]
    after = jsonpatch.apply_patch(before, ops)
    action = json.loads(after["metadata"]["annotations"][ALB_ACTION_PREFIX + "churn-split"])
    assert [
        (g["serviceName"], g["servicePort"], g["weight"]) for g in action["forwardConfig"]["targetGroups"]
    ] == [
        ("churn-stable", "8080", 90),
        ("churn-canary", "8080", 10),
    ]
    assert action["forwardConfig"]["targetGroupStickinessConfig"] == {"enabled": False}  # kept
    assert alb_canary_share(after, action="churn-split", stable="churn-stable", canary="churn-canary") == 10.0
    assert (
        after["spec"] == before["spec"]
        and after["metadata"]["annotations"]["alb.ingress.kubernetes.io/scheme"] == "internal"
    )
    assert (
        alb_weight_patch(
            after, action="churn-split", stable="churn-stable", canary="churn-canary", canary_percent=10
        )
        == []
    )
    # Changed meanwhile (another weight): the test op fails, nothing is overwritten
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        jsonpatch.apply_patch(ingress((80, 20)), ops)


def test_alb_action_missing_or_not_naming_both_services_is_refused_clearly():
    with pytest.raises(
        KubeInvalidError,
        match=r"Ingress models/churn has no annotation alb.ingress.kubernetes.io/actions.other",
    ):
        alb_weight_patch(
            ingress(), action="other", stable="churn-stable", canary="churn-canary", canary_percent=10
        )
    with pytest.raises(
        KubeInvalidError,
        match=r"forwards to \['churn-stable', 'churn-canary'\], not to both Services 'churn-stable' and 'x'",
    ):
        alb_weight_patch(
            ingress(), action="churn-split", stable="churn-stable", canary="x", canary_percent=10
        )


# ------------------------------------------------------------------------------------- routers
def test_each_model_gets_the_router_it_names():
    kube = FakeKube()
    assert isinstance(router_for(parse_config(doc()), kube, 3), ReplicasRouter)
    gateway = parse_config(doc({"router": "gateway_api", "steps": [10]}, GATEWAY_NAMES))
    assert isinstance(router_for(gateway, kube, 3), GatewayApiRouter)
    alb = parse_config(doc({"router": "alb", "steps": [10]}, ALB_NAMES))
    assert isinstance(router_for(alb, kube, 3), AlbRouter)


def test_replicas_for_share_is_the_nearest_share_the_pods_allow():
    assert [replicas_for_share(p, 3) for p in (10, 25, 50, 75)] == [1, 1, 3, 9]
    assert [replicas_for_share(p, 9) for p in (10, 50)] == [1, 9]
    assert replicas_for_share(10, 0) == 1  # a first version: at least one pod


def test_the_gateway_router_shifts_resets_and_patches_nothing_when_already_there():
    kube = FakeKube()
    kube.add_object("httproutes", copy.deepcopy(ROUTE))
    config = parse_config(doc({"router": "gateway_api", "steps": [10, 50]}, GATEWAY_NAMES))
    router = router_for(config, kube, 3)
    shift = router.shift(10)
    assert (shift.weight, shift.reached, shift.describe()) == (10, 10.0, "10% -> weight 10%")
    router.shift(10)
    assert kube.route_weights == [10]  # the repeat patched nothing
    router.reset()
    assert kube.route_weights == [10, 0] and router.canary_share() == 0.0


def test_the_replicas_router_sets_canary_pods_and_reports_the_share_reached():
    kube = FakeKube()
    kube.add(deployment("churn-canary", "canary", OLD, 1))
    config = parse_config(doc({"steps": [10, 50], "replicas": None}))
    router = router_for(config, kube, 3)
    assert router.shift(10).describe() == "10% -> 1 of 4 pods = 25%"
    assert kube.patches == []  # already 1 pod
    assert router.shift(50).describe() == "50% -> 3 of 6 pods = 50%"
    assert kube.deployments["churn-canary"]["spec"]["replicas"] == 3


# ------------------------------------------------------------------ rollback and promotion order
class MemoryStore:
    """The rollout record and the lock, as the state table keeps them."""

    def __init__(self, rollout):
        self.rollout = rollout

    def get_rollout(self, model):
        return copy.deepcopy(self.rollout)

    def update_rollout(self, model, run_id, fields):
        self.rollout.update(copy.deepcopy(fields))
        return copy.deepcopy(self.rollout)

    def lock_holder(self, model):
        return ("run-1", 0)


def _gateway_rollout(canary_weight):
    from modelops.run import RunRef
    from modelops.steps.rollout import RolloutService

    kube = FakeKube()
    kube.add(deployment("churn-stable", "stable", OLD, 3))
    kube.add(deployment("churn-canary", "canary", "r.example/m@sha256:" + "2" * 64, 1))
    kube.add_object(
        "httproutes", http_route("churn", "churn-stable", "churn-canary", canary_weight=canary_weight)
    )
    config = parse_config(doc({"router": "gateway_api", "steps": [10, 25, 50]}, GATEWAY_NAMES))
    store = MemoryStore(
        {"run_id": "run-1", "previous_stable": {"image": OLD, "replicas": 3, "version": "1"}, "phase": "bake"}
    )
    service = RolloutService(kube=kube, store=store, metrics=None, callbacks=None)  # type: ignore[arg-type]
    return kube, store, service, RunRef(run_id="run-1", model="churn", config=config)


def test_rollback_puts_the_weights_on_the_stable_before_the_canary_leaves():
    kube, _, service, run = _gateway_rollout(canary_weight=25)
    service.rollback(run)
    names = [name for name, _ in kube.patches]
    assert names == ["churn", "churn-canary"]  # weights 100/0 first, then the canary to 0
    assert kube.route_weights == [0] and kube.deployments["churn-canary"]["spec"]["replicas"] == 0
    assert service.status(run, "rollback", None)["ready"]
    # A weight put back on the canary by someone else keeps the rollback unverified
    kube.objects[("httproutes", "churn")]["spec"]["rules"][0]["backendRefs"][1]["weight"] = 25
    status = service.status(run, "rollback", None)
    assert not status["ready"] and "canary weight 20%" in status["message"]


def test_finish_promotion_resets_the_weights_then_scales_the_canary_out():
    kube, _, service, run = _gateway_rollout(canary_weight=50)
    service.finish_promotion(run)
    assert [name for name, _ in kube.patches] == ["churn", "churn-canary"]
    assert kube.route_weights == [0]


def test_a_step_that_does_not_exist_is_refused_and_a_step_is_recorded_with_its_share():
    kube, store, service, run = _gateway_rollout(canary_weight=0)
    from modelops.errors import RolloutFailedError

    with pytest.raises(RolloutFailedError, match="canary step 3 does not exist: the model has 3 step"):
        service.shift_traffic(run, 3)
    result = service.shift_traffic(run, 1)
    assert (result["weight"], result["next"], result["last"]) == (25, 2, False)
    assert [(s["index"], s["weight"], s["reached"]) for s in store.rollout["traffic_steps"]] == [
        (1, 25, 25.0)
    ]
    # a retried step replaces its own entry, it does not add one
    service.shift_traffic(run, 1)
    assert len(store.rollout["traffic_steps"]) == 1 and kube.route_weights == [25]
