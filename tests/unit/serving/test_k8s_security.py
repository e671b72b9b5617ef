"""Cluster access and pod security of the shipped manifests (serving_image/k8s), rendered by the
project's renderer: the rollout function's RBAC is exactly what the rollout does, in the model's
namespace only; serving pods run non-root on a read-only root filesystem with no privilege
escalation, no capabilities and resource limits; NetworkPolicies admit only the serving port.
Each check returns the violations it finds and is shown to catch one seeded into a copy."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from modelops.config import load_config_file

from modelops_local.manifests import render_manifests

ROOT = Path(__file__).resolve().parents[3]
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/demo-serving@sha256:" + "ab" * 32
CONTROL_PLANE_CIDR = "10.20.0.0/16"
CONFIG = load_config_file(ROOT / "models" / "churn.yaml")
K = CONFIG.kubernetes
ROLLOUT_GROUP = "modelops-rollout"
RETENTION_GROUP = "modelops-image-retention"
#: The group each RoleBinding may bind (by binding name).
BOUND_GROUPS = {
    f"{CONFIG.name}-rollout": ROLLOUT_GROUP,
    # a weighted router's Role (get/patch on its named route or ingress) is the rollout function's too
    f"{CONFIG.name}-rollout-httproute": ROLLOUT_GROUP,
    f"{CONFIG.name}-rollout-ingress": ROLLOUT_GROUP,
    f"{CONFIG.name}-image-retention": RETENTION_GROUP,
}


@pytest.fixture
def objects() -> list[dict[str, Any]]:
    """The manifests rendered for the example model (a fresh list per test: tests seed into it)."""
    return render_manifests(CONFIG.name, K.namespace, IMAGE, "3", 2, control_plane_cidr=CONTROL_PLANE_CIDR)


def _one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def _deployments(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == "Deployment"]


# ------------------------------------------------------------------------------------------ RBAC
#: What the rollout function does in the cluster (modelops.adapters.kube.KubeClient): read and
#: JSON-patch the two Deployments, POST predictions through the canary Service's proxy.
EXPECTED_RULES = [
    {
        "apiGroups": ["apps"],
        "resources": ["deployments"],
        "resourceNames": [K.stable_deployment, K.canary_deployment],
        "verbs": ["get", "list", "watch", "patch"],
    },
    {
        "apiGroups": [""],
        "resources": ["services/proxy"],
        "resourceNames": [K.canary_service, f"{K.canary_service}:{K.port}", f"{K.canary_service}:http"],
        "verbs": ["create"],
    },
]


def rbac_violations(objects: list[dict[str, Any]]) -> list[str]:
    """Cluster-wide RBAC, grants outside the model's namespace, wildcards, rules without
    resourceNames, and bindings of anything but the rollout group."""
    found = []
    for obj in objects:
        kind, meta = obj["kind"], obj["metadata"]
        where = f"{kind}/{meta['name']}"
        if kind in ("ClusterRole", "ClusterRoleBinding"):
            found.append(f"{where}: cluster-wide RBAC")
        if kind not in ("Role", "RoleBinding"):
            continue
        if meta.get("namespace") != K.namespace:
            found.append(f"{where}: outside the model's namespace {K.namespace}")
        for index, rule in enumerate(obj.get("rules") or []):
            for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                if "*" in (rule.get(field) or []):
                    found.append(f"{where}: rules[{index}].{field} has a wildcard")
            if not rule.get("resourceNames"):
                found.append(f"{where}: rules[{index}] is not limited to named objects")
            if {"create", "delete", "deletecollection", "update", "escalate", "bind", "impersonate"} & set(
                rule.get("verbs") or []
            ) and rule.get("resources") != ["services/proxy"]:
                found.append(f"{where}: rules[{index}] grants {sorted(rule['verbs'])} on {rule['resources']}")
        if kind == "RoleBinding":
            if obj["roleRef"]["kind"] != "Role":
                found.append(f"{where}: binds a {obj['roleRef']['kind']}")
            for subject in obj.get("subjects") or []:
                if (subject.get("kind"), subject.get("name")) != ("Group", BOUND_GROUPS.get(meta["name"])):
                    found.append(f"{where}: binds {subject.get('kind')} {subject.get('name')}")
    return found


def test_rbac_is_namespaced_named_and_bound_to_the_rollout_group_only(objects):
    assert rbac_violations(objects) == []
    role = _one(objects, "Role", f"{CONFIG.name}-rollout")
    binding = _one(objects, "RoleBinding", f"{CONFIG.name}-rollout")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": ROLLOUT_GROUP}
    ]


def test_the_image_clean_up_may_only_read_the_models_two_deployments(objects):
    # The clean-up (steps/retention.py) only gets each Deployment to see which images it runs
    role = _one(objects, "Role", f"{CONFIG.name}-image-retention")
    assert role["rules"] == [
        {
            "apiGroups": ["apps"],
            "resources": ["deployments"],
            "resourceNames": [K.stable_deployment, K.canary_deployment],
            "verbs": ["get"],
        }
    ]
    binding = _one(objects, "RoleBinding", f"{CONFIG.name}-image-retention")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": RETENTION_GROUP}
    ]


def test_the_role_grants_exactly_what_the_rollout_does(objects):
    # Then: get/list/watch/patch on the model's two Deployments by name; create (POST) through the
    # canary Service's proxy, by the name segment the API server authorizes (port included)
    assert _one(objects, "Role", f"{CONFIG.name}-rollout")["rules"] == EXPECTED_RULES


#: What each weighted router adds (serving_image/k8s/<router>/41-rbac-*.yaml): get and patch of the
#: model's one route or Ingress, by name.
ROUTER_RULES = {
    "gateway_api": (
        f"{CONFIG.name}-rollout-httproute",
        [
            {
                "apiGroups": ["gateway.networking.k8s.io"],
                "resources": ["httproutes"],
                "resourceNames": [CONFIG.name],
                "verbs": ["get", "patch"],
            }
        ],
    ),
    "alb": (
        f"{CONFIG.name}-rollout-ingress",
        [
            {
                "apiGroups": ["networking.k8s.io"],
                "resources": ["ingresses"],
                "resourceNames": [CONFIG.name],
                "verbs": ["get", "patch"],
            }
        ],
    ),
}


@pytest.mark.parametrize("router", sorted(ROUTER_RULES))
def test_a_weighted_router_adds_only_get_and_patch_on_its_named_route_or_ingress(router):
    objects = render_manifests(
        CONFIG.name, K.namespace, IMAGE, "3", 2, control_plane_cidr=CONTROL_PLANE_CIDR, router=router
    )
    assert rbac_violations(objects) == []
    role_name, rules = ROUTER_RULES[router]
    roles = {o["metadata"]["name"]: o["rules"] for o in objects if o["kind"] == "Role"}
    base = {
        o["metadata"]["name"]: o["rules"]
        for o in render_manifests(
            CONFIG.name, K.namespace, IMAGE, "3", 2, control_plane_cidr=CONTROL_PLANE_CIDR
        )
        if o["kind"] == "Role"
    }
    # Then: the base Roles unchanged, and one more Role holding exactly the router's rule
    assert base[f"{CONFIG.name}-rollout"] == EXPECTED_RULES
    assert roles == {**base, role_name: rules}
    binding = _one(objects, "RoleBinding", role_name)
    assert binding["subjects"] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": ROLLOUT_GROUP}
    ]
    # And the replicas router (the default) adds nothing
    default = render_manifests(CONFIG.name, K.namespace, IMAGE, "3", 2, control_plane_cidr=CONTROL_PLANE_CIDR)
    assert [o["metadata"]["name"] for o in default if o["kind"] == "Role"] == list(base)


def test_the_role_covers_every_kubernetes_call_of_the_rollout_adapter():
    # Given the calls the adapter makes (method name -> the verb and resource RBAC sees)
    source = (ROOT / "layers/modelops/modelops/adapters/kube.py").read_text()
    calls = set(re.findall(r"self\.(apps|core|custom|networking)\.(\w+)", source))
    verbs = {
        "read_namespaced_deployment": ("get", "deployments"),
        "patch_namespaced_deployment": ("patch", "deployments"),
        # the weighted routers' (granted by their own Roles, test above)
        "get_namespaced_custom_object": ("get", "httproutes"),
        "patch_namespaced_custom_object": ("patch", "httproutes"),
        "read_namespaced_ingress": ("get", "ingresses"),
        "patch_namespaced_ingress": ("patch", "ingresses"),
    }
    # (self.core.api_client is the raw client the service proxy POST goes through, checked below)
    methods = {name for _, name in calls} - {"api_client"}
    assert methods <= set(verbs), f"Kubernetes calls the role was not checked for: {methods - set(verbs)}"
    used = {verbs[name] for name in methods}
    # And the service proxy POST (api.call_api(..., "POST")) to the canary Service
    assert '"POST"' in source and "/proxy/" in source
    used.add(("create", "services/proxy"))
    granted = {
        (verb, resource)
        for rule in [*EXPECTED_RULES, *(r for _, rules in ROUTER_RULES.values() for r in rules)]
        for verb in rule["verbs"]
        for resource in rule["resources"]
    }
    assert used <= granted
    # list_pods is not granted: nothing in the functions calls it (a rollout reads Deployment status)
    functions_and_layer = [*ROOT.glob("functions/*/app.py"), *ROOT.glob("layers/modelops/modelops/**/*.py")]
    assert not any("list_pods(" in path.read_text() for path in functions_and_layer)


@pytest.mark.parametrize(
    ("seed", "expected"),
    [
        (
            lambda objs: objs.append(
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRoleBinding",
                    "metadata": {"name": "x"},
                    "roleRef": {"kind": "ClusterRole", "name": "view"},
                    "subjects": [{"kind": "Group", "name": ROLLOUT_GROUP}],
                }
            ),
            "ClusterRoleBinding/x: cluster-wide RBAC",
        ),
        (lambda objs: _role(objs)["rules"][0]["verbs"].append("*"), "rules[0].verbs has a wildcard"),
        (
            lambda objs: _role(objs)["rules"][0].pop("resourceNames"),
            "rules[0] is not limited to named objects",
        ),
        (lambda objs: _role(objs)["rules"][0]["verbs"].append("delete"), "rules[0] grants"),
        (lambda objs: _role(objs)["metadata"].update(namespace="default"), "outside the model's namespace"),
        (
            lambda objs: _one(objs, "RoleBinding", f"{CONFIG.name}-rollout")["subjects"].append(
                {"kind": "ServiceAccount", "name": "default", "namespace": K.namespace}
            ),
            "binds ServiceAccount default",
        ),
    ],
)
def test_the_rbac_check_catches_a_seeded_violation(objects, seed: Callable[[list], Any], expected):
    seed(objects)
    assert expected in "\n".join(rbac_violations(objects))


def _role(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return _one(objects, "Role", f"{CONFIG.name}-rollout")


# ------------------------------------------------------------------------------------------ pods
def pod_violations(deployment: dict[str, Any]) -> list[str]:
    """What makes a serving pod less than locked down (the restricted Pod Security Standard plus
    a read-only root filesystem and resource limits)."""
    name = deployment["metadata"]["name"]
    pod = deployment["spec"]["template"]["spec"]
    pod_context = pod.get("securityContext") or {}
    found = []
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            found.append(f"{name}: {key}")
    if pod.get("automountServiceAccountToken") is not False:
        found.append(f"{name}: mounts a service account token (serving needs no API access)")
    if any("hostPath" in volume for volume in pod.get("volumes") or []):
        found.append(f"{name}: hostPath volume")
    for container in [*pod.get("initContainers", []), *pod["containers"]]:
        where = f"{name}/{container['name']}"
        context = {**pod_context, **(container.get("securityContext") or {})}
        if context.get("runAsNonRoot") is not True:
            found.append(f"{where}: runAsNonRoot is not true")
        if not isinstance(context.get("runAsUser"), int) or context["runAsUser"] < 1000:
            found.append(f"{where}: runAsUser {context.get('runAsUser')!r} is not an unprivileged uid")
        if context.get("readOnlyRootFilesystem") is not True:
            found.append(f"{where}: root filesystem is writable")
        if context.get("allowPrivilegeEscalation") is not False:
            found.append(f"{where}: allowPrivilegeEscalation is not false")
        if context.get("privileged"):
            found.append(f"{where}: privileged")
        capabilities = context.get("capabilities") or {}
        if capabilities.get("drop") != ["ALL"] or capabilities.get("add"):
            found.append(f"{where}: capabilities are not exactly drop ALL")
        if (context.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
            found.append(f"{where}: seccompProfile is not RuntimeDefault")
        resources = container.get("resources") or {}
        for bound in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if resource not in (resources.get(bound) or {}):
                    found.append(f"{where}: no {resource} {bound}")
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts") or []}
        volumes = {v["name"]: v for v in pod.get("volumes") or []}
        if "emptyDir" not in volumes.get(mounts.get("/tmp", ""), {}):
            found.append(f"{where}: no writable emptyDir at /tmp (the root filesystem is read-only)")
    return found


def test_serving_pods_are_locked_down(objects):
    deployments = _deployments(objects)
    assert {d["metadata"]["name"] for d in deployments} == {K.stable_deployment, K.canary_deployment}
    for deployment in deployments:
        assert pod_violations(deployment) == []


def test_the_namespace_enforces_the_restricted_pod_security_standard(objects):
    labels = _one(objects, "Namespace", K.namespace)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_the_pods_uid_is_the_images_user():
    # The image's USER (serving_image/Dockerfile) is the uid the pods run as
    users = re.findall(r"^USER (\d+)$", (ROOT / "serving_image/Dockerfile").read_text(), re.M)
    for deployment in _deployments(render_manifests(CONFIG.name, K.namespace, IMAGE, "3", 2)):
        assert set(users) == {str(deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"])}


def _container_context(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return _one(objects, "Deployment", K.canary_deployment)["spec"]["template"]["spec"]["containers"][0][
        "securityContext"
    ]


def _pod(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return _one(objects, "Deployment", K.canary_deployment)["spec"]["template"]["spec"]


@pytest.mark.parametrize(
    ("seed", "expected"),
    [
        (lambda o: _container_context(o).update(readOnlyRootFilesystem=False), "root filesystem is writable"),
        (lambda o: _container_context(o).update(allowPrivilegeEscalation=True), "allowPrivilegeEscalation"),
        (lambda o: _container_context(o).update(runAsUser=0, runAsNonRoot=False), "runAsNonRoot is not true"),
        (lambda o: _container_context(o)["capabilities"].update(add=["NET_ADMIN"]), "capabilities"),
        (lambda o: _pod(o)["securityContext"].pop("seccompProfile"), "seccompProfile"),
        (lambda o: _pod(o)["containers"][0]["resources"].pop("limits"), "no cpu limits"),
        (lambda o: _pod(o).update(hostNetwork=True), "hostNetwork"),
        (lambda o: _pod(o).pop("automountServiceAccountToken"), "service account token"),
        (lambda o: _pod(o)["volumes"].clear(), "no writable emptyDir at /tmp"),
    ],
)
def test_the_pod_check_catches_a_seeded_violation(objects, seed: Callable[[list], Any], expected):
    seed(objects)
    assert expected in "\n".join(pod_violations(_one(objects, "Deployment", K.canary_deployment)))


# ------------------------------------------------------------------------------------------ network
def _selects(policy: dict[str, Any], labels: dict[str, str]) -> bool:
    selector = policy["spec"]["podSelector"]
    return set(selector) <= {"matchLabels"} and selector.get("matchLabels", {}).items() <= labels.items()


def network_violations(objects: list[dict[str, Any]]) -> list[str]:
    """Serving pods no Ingress+Egress policy selects (so not default-deny), and policies that admit
    other ports, other sources than the namespace, opted-in namespaces and the control plane, or
    any egress."""
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    found = []
    for deployment in _deployments(objects):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        selecting = [p for p in policies if _selects(p, labels)]
        types = {t for p in selecting for t in p["spec"].get("policyTypes", [])}
        if not {"Ingress", "Egress"} <= types:
            found.append(
                f"{deployment['metadata']['name']}: not isolated for {sorted({'Ingress', 'Egress'} - types)}"
            )
    for policy in policies:
        where = f"NetworkPolicy/{policy['metadata']['name']}"
        if policy["metadata"].get("namespace") != K.namespace:
            found.append(f"{where}: outside the model's namespace")
        if policy["spec"].get("egress"):
            found.append(f"{where}: allows egress")
        for rule in policy["spec"].get("ingress") or []:
            if rule.get("ports") != [{"port": K.port, "protocol": "TCP"}]:
                found.append(f"{where}: admits ports {rule.get('ports')}, not only {K.port}/TCP")
            if not rule.get("from"):
                found.append(f"{where}: admits every source")
            for peer in rule.get("from") or []:
                allowed = (
                    peer == {"podSelector": {}},
                    peer == {"namespaceSelector": {"matchLabels": {"modelops.io/model-clients": "true"}}},
                    peer == {"ipBlock": {"cidr": CONTROL_PLANE_CIDR}}
                    and policy["spec"]["podSelector"]["matchLabels"].get("variant") == "canary",
                )
                if not any(allowed):
                    found.append(f"{where}: admits {peer}")
    return found


def test_network_policies_admit_only_the_serving_port_from_expected_sources(objects):
    assert network_violations(objects) == []
    # And the API server's service proxy (the smoke test) reaches the canary pods only
    smoke = _one(objects, "NetworkPolicy", f"{CONFIG.name}-canary-smoke-test")
    assert smoke["spec"]["podSelector"]["matchLabels"] == {"app": CONFIG.name, "variant": "canary"}
    assert smoke["spec"]["ingress"][0]["from"] == [{"ipBlock": {"cidr": CONTROL_PLANE_CIDR}}]


def test_the_policed_port_is_the_one_the_pods_serve_on(objects):
    services = [o for o in objects if o["kind"] == "Service"]
    for deployment in _deployments(objects):
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert [p["containerPort"] for p in container["ports"]] == [K.port]
    assert all(
        p["port"] == K.port and p["targetPort"] == "http" for s in services for p in s["spec"]["ports"]
    )


def _serving_policy(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return _one(objects, "NetworkPolicy", f"{CONFIG.name}-serving")


@pytest.mark.parametrize(
    ("seed", "expected"),
    [
        (lambda o: o.remove(_serving_policy(o)), f"{K.stable_deployment}: not isolated"),
        (lambda o: _serving_policy(o)["spec"].update(policyTypes=["Ingress"]), "not isolated for ['Egress']"),
        (lambda o: _serving_policy(o)["spec"].update(egress=[{}]), "allows egress"),
        (lambda o: _serving_policy(o)["spec"]["ingress"][0].pop("ports"), "admits ports None"),
        (lambda o: _serving_policy(o)["spec"]["ingress"][0].pop("from"), "admits every source"),
        (
            lambda o: _serving_policy(o)["spec"]["ingress"][0]["from"].append({"namespaceSelector": {}}),
            "admits {'namespaceSelector': {}}",
        ),
        (
            lambda o: _serving_policy(o)["spec"]["ingress"][0]["from"].append(
                {"ipBlock": {"cidr": CONTROL_PLANE_CIDR}}
            ),
            "admits {'ipBlock'",  # the control plane may reach the canary only
        ),
    ],
)
def test_the_network_check_catches_a_seeded_violation(objects, seed: Callable[[list], Any], expected):
    seed(objects)
    assert expected in "\n".join(network_violations(objects))


def test_the_control_plane_range_is_validated_and_defaults_to_the_local_loopback():
    from modelops_local.manifests import ManifestError

    with pytest.raises(ManifestError, match="control_plane_cidr '10.0.0.1/16' must be a network"):
        render_manifests(CONFIG.name, K.namespace, IMAGE, "3", 2, control_plane_cidr="10.0.0.1/16")
    local = render_manifests(CONFIG.name, K.namespace, IMAGE, "3", 2)
    smoke = _one(local, "NetworkPolicy", f"{CONFIG.name}-canary-smoke-test")
    assert smoke["spec"]["ingress"][0]["from"] == [{"ipBlock": {"cidr": "127.0.0.0/8"}}]
