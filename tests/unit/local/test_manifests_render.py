"""The serving image's Kubernetes manifests, rendered and checked against the real OpenAPI schema."""

from __future__ import annotations

import json

import kubernetes_validate
import pytest
from modelops.config import load_config_file, parse_config
from modelops.deployments import find_container, image_patch
from modelops.traffic import alb_canary_share, http_route_canary_share

from modelops_local.kube import KubeStore
from modelops_local.manifests import DEFAULT_TEMPLATE_DIR, ManifestError, render_manifests

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/stack-serving@sha256:" + "ab" * 32
ROOT_CONFIG = DEFAULT_TEMPLATE_DIR.parents[1] / "models" / "churn.yaml"


def _render(**overrides):
    args = {"model": "churn", "namespace": "models", "image": IMAGE, "version": "3", "stable_replicas": 3}
    return render_manifests(**{**args, **overrides})


def _by_kind_name(objects):
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def test_every_object_is_valid_against_the_kubernetes_schema():
    # When the manifests are rendered
    objects = _render()

    # Then each one passes strict OpenAPI validation (unknown fields are errors)
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, "1.33", strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message}")
    kinds = [o["kind"] for o in objects]
    assert kinds[0] == "Namespace"
    assert {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"} <= set(kinds)


def test_no_placeholder_survives_rendering():
    assert "${" not in repr(_render())


def test_stable_and_canary_deployments_share_one_service():
    objects = _by_kind_name(_render())
    stable = objects[("Deployment", "churn-stable")]
    canary = objects[("Deployment", "churn-canary")]
    service = objects[("Service", "churn")]
    canary_service = objects[("Service", "churn-canary")]

    # The stable runs the initial replicas, the canary starts at 0, both pinned to the image
    assert stable["spec"]["replicas"] == 3 and canary["spec"]["replicas"] == 0
    for deployment, variant in ((stable, "stable"), (canary, "canary")):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"] == {"app": "churn", "variant": variant}
        assert {"app": "churn", "variant": variant}.items() <= labels.items()
        # The main Service selects both variants; the canary Service only the canary
        assert service["spec"]["selector"].items() <= labels.items()
        assert (canary_service["spec"]["selector"].items() <= labels.items()) == (variant == "canary")
        _, container = find_container(deployment, "model")
        assert container["image"] == IMAGE
        assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]


def test_pods_are_locked_down_and_probed():
    deployment = _by_kind_name(_render())[("Deployment", "churn-stable")]
    pod = deployment["spec"]["template"]["spec"]
    _, container = find_container(deployment, "model")
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert {"mountPath": "/tmp", "name": "tmp"} in container["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in pod["volumes"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ping"
    assert container["livenessProbe"]["httpGet"]["path"] == "/ping"
    assert set(container["resources"]) == {"requests", "limits"}


def test_pods_learn_model_variant_and_version_for_their_metrics():
    deployment = _by_kind_name(_render())[("Deployment", "churn-canary")]
    _, container = find_container(deployment, "model")
    env = {e["name"]: e for e in container["env"]}
    assert env["MODELOPS_MODEL"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['app']"
    assert env["MODELOPS_VARIANT"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['variant']"
    assert env["MODELOPS_VERSION"]["value"] == "3"


def test_the_rollout_patch_applies_to_the_rendered_deployment():
    # Given the rendered canary and the workflow's image patch for a new version
    deployment = _by_kind_name(_render())[("Deployment", "churn-canary")]
    new_image = IMAGE.replace("ab" * 32, "cd" * 32)

    # When the rollout builds its JSON Patch
    ops = image_patch(deployment, container="model", image=new_image, replicas=1, version="4")

    # Then it guards the container name and keeps MODELOPS_VERSION in step (env has a plain value)
    assert ops[0] == {"op": "test", "path": "/spec/template/spec/containers/0/name", "value": "model"}
    assert {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": new_image} in ops
    assert any(op["path"].endswith("/value") and op.get("value") == "4" for op in ops)


def test_hpa_scales_the_stable_deployment_from_its_initial_size():
    objects = _by_kind_name(_render(stable_replicas=2))
    hpa = objects[("HorizontalPodAutoscaler", "churn-stable")]
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "churn-stable",
    }
    assert hpa["spec"]["minReplicas"] == 2 <= hpa["spec"]["maxReplicas"]
    pdb = objects[("PodDisruptionBudget", "churn-stable")]
    assert pdb["spec"]["selector"]["matchLabels"] == {"app": "churn", "variant": "stable"}


def test_names_match_the_example_model_config():
    # The example config's kubernetes section names exactly what the manifests create
    config = load_config_file(DEFAULT_TEMPLATE_DIR.parents[1] / "models" / "churn.yaml")
    k = config.kubernetes
    objects = _by_kind_name(_render(model=config.name, namespace=k.namespace))
    assert ("Deployment", k.stable_deployment) in objects
    assert ("Deployment", k.canary_deployment) in objects
    assert ("Service", k.service) in objects
    assert ("Service", k.canary_service) in objects
    assert all(o["metadata"].get("namespace", k.namespace) == k.namespace for o in objects.values())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"model": "Churn"}, "model 'Churn' must be a DNS label"),
        ({"namespace": "my_ns"}, "namespace 'my_ns' must be a DNS label"),
        ({"image": 'repo"\n  evil: true'}, "is not an image reference"),
        ({"version": "v 1"}, "version 'v 1' must be"),
        ({"stable_replicas": -1}, "stable_replicas -1 must be an integer from 0 to 100"),
    ],
)
def test_values_that_could_break_the_yaml_are_refused(overrides, message):
    with pytest.raises(ManifestError, match=message):
        _render(**overrides)


def test_unknown_placeholder_names_the_template(tmp_path):
    # Given a template with a placeholder the renderer does not know
    (tmp_path / "x.yaml").write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: ${CLUSTER}}\n")

    # Then rendering names the file and the placeholder
    with pytest.raises(ManifestError, match=r"x.yaml: unknown placeholder \$\{CLUSTER\}"):
        _render(template_dir=tmp_path)


@pytest.mark.parametrize("router", ["gateway_api", "alb"])
def test_a_weighted_routers_objects_are_valid_and_name_what_its_config_names(router):
    # When the manifests are rendered for a weighted router
    objects = _render(router=router)
    assert "${" not in repr(objects)
    store = KubeStore()
    for obj in objects:
        if obj["kind"] in ("Namespace", "Service", "HTTPRoute", "Ingress"):
            if obj["kind"] != "HTTPRoute":  # a custom resource: the stand-in applies the CRD's rules
                kubernetes_validate.validate(obj, "1.33", strict=True)
            store.create(obj)  # the API server's validation and defaults
    by_name = _by_kind_name(objects)
    # Then the config naming them (as README says) parses, and everything routes to the stable at rest
    config = load_config_file(ROOT_CONFIG).to_document()
    config["canary"].update(router=router, steps=[10, 50])
    config["kubernetes"].update(
        stable_service="churn-stable", http_route="churn", ingress="churn", ingress_action="churn-split"
    )
    k = parse_config(config).kubernetes
    assert by_name[("Service", k.stable_service)]["spec"]["selector"] == {"app": "churn", "variant": "stable"}
    if router == "gateway_api":
        route = by_name[("HTTPRoute", k.http_route)]
        assert route["spec"]["parentRefs"] == [
            {"group": "", "kind": "Service", "name": k.service, "port": k.port}
        ]
        assert http_route_canary_share(route, stable=k.stable_service, canary=k.canary_service) == 0.0
    else:
        ingress = by_name[("Ingress", k.ingress)]
        action = json.loads(
            ingress["metadata"]["annotations"][f"alb.ingress.kubernetes.io/actions.{k.ingress_action}"]
        )
        assert action["type"] == "forward"
        assert (
            alb_canary_share(
                ingress, action=k.ingress_action, stable=k.stable_service, canary=k.canary_service
            )
            == 0.0
        )
        backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
        assert backend == {"name": k.ingress_action, "port": {"name": "use-annotation"}}
