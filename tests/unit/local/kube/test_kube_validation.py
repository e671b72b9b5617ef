"""422 Invalid with the field named, as the API server answers; unknown fields handled by mode."""

from __future__ import annotations

from typing import Any

import pytest

from modelops_local.kube import BadRequestError, InvalidError


def _fields(error: InvalidError) -> list[str]:
    return [cause["field"] for cause in error.to_status()["details"]["causes"]]


def test_missing_container_image_names_the_field(store, deployment):
    # Given a Deployment whose model container has no image
    body = deployment()
    del body["spec"]["template"]["spec"]["containers"][0]["image"]
    # When it is created, Then the API's 422 names the field
    with pytest.raises(InvalidError) as caught:
        store.create(body)
    status = caught.value.to_status()
    assert status["code"] == 422 and status["reason"] == "Invalid"
    assert (
        status["message"]
        == 'Deployment.apps "churn-stable" is invalid: spec.template.spec.containers[0].image: Required value'
    )
    assert status["details"]["causes"] == [
        {
            "reason": "FieldValueRequired",
            "message": "Required value",
            "field": "spec.template.spec.containers[0].image",
        }
    ]


def test_schema_type_errors_name_the_field(store, deployment):
    body = deployment()
    body["spec"]["replicas"] = "three"
    body["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "8080"
    with pytest.raises(InvalidError) as caught:
        store.create(body)
    assert _fields(caught.value) == [
        "spec.replicas",
        "spec.template.spec.containers[0].ports[0].containerPort",
    ]


def test_schema_required_fields_from_openapi(store, deployment):
    body = deployment()
    del body["spec"]["template"]["spec"]["containers"][1]["name"]
    with pytest.raises(InvalidError) as caught:
        store.create(body)
    assert _fields(caught.value) == ["spec.template.spec.containers[1].name"]


def test_selector_must_match_template_labels(store, deployment):
    body = deployment()
    body["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    with pytest.raises(InvalidError, match="`selector` does not match template `labels`") as caught:
        store.create(body)
    assert _fields(caught.value) == ["spec.template.metadata.labels"]


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda b: b["metadata"].update(name="Churn_Stable"), "metadata.name"),
        (lambda b: b["metadata"]["labels"].update({"bad key!": "x"}), "metadata.labels"),
        (lambda b: b["spec"].update(replicas=-1), "spec.replicas"),
        (lambda b: b["spec"].update(selector={}), "spec.selector"),
        (
            lambda b: b["spec"]["template"]["spec"]["containers"][1].update(name="model"),
            "spec.template.spec.containers[1].name",
        ),
        (
            lambda b: b["spec"]["template"]["spec"].update(restartPolicy="Never"),
            "spec.template.spec.restartPolicy",
        ),
        (
            lambda b: b["spec"]["template"]["spec"]["containers"][0]["ports"][0].update(containerPort=70000),
            "spec.template.spec.containers[0].ports[0].containerPort",
        ),
        (
            lambda b: b["spec"].update(
                strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}
            ),
            "spec.strategy.rollingUpdate.maxUnavailable",
        ),
        (
            lambda b: b["spec"]["template"]["spec"]["containers"][0].update(
                volumeMounts=[{"name": "nope", "mountPath": "/x"}]
            ),
            "spec.template.spec.containers[0].volumeMounts[0].name",
        ),
    ],
)
def test_semantic_rules_name_the_bad_field(store, deployment, mutate, field):
    body = deployment()
    mutate(body)
    with pytest.raises(InvalidError) as caught:
        store.create(body)
    assert field in _fields(caught.value)


def test_selector_is_immutable_on_update(store, deployment):
    # Given a stored Deployment
    created = store.create(deployment())
    # When its selector changes (with matching template labels)
    created["spec"]["selector"]["matchLabels"]["extra"] = "x"
    created["spec"]["template"]["metadata"]["labels"]["extra"] = "x"
    # Then the update is rejected as the API rejects it
    with pytest.raises(InvalidError, match="spec.selector: Invalid value: .*: field is immutable"):
        store.update(created)


def test_service_needs_ports_and_names_when_several(store):
    service: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "churn", "namespace": "models"},
        "spec": {"selector": {"app": "churn"}},
    }
    with pytest.raises(InvalidError) as caught:
        store.create(service)
    assert _fields(caught.value) == ["spec.ports"]
    service["spec"]["ports"] = [{"port": 80}, {"port": 81}]
    with pytest.raises(InvalidError) as caught:
        store.create(service)
    assert _fields(caught.value) == ["spec.ports[0].name", "spec.ports[1].name"]


def test_service_names_must_be_dns1035_labels(store):
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "1churn", "namespace": "models"},
        "spec": {"ports": [{"port": 80}]},
    }
    with pytest.raises(InvalidError, match="DNS-1035"):
        store.create(service)


def test_pod_spec_is_immutable_except_images(store):
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "models"},
        "spec": {"containers": [{"name": "model", "image": "m:1"}]},
    }
    created = store.create(pod)
    created["spec"]["containers"][0]["image"] = "m:2"
    assert store.update(created)["spec"]["containers"][0]["image"] == "m:2"
    changed = store.get("pods", "models", "p")
    changed["spec"]["containers"][0]["args"] = ["--x"]
    with pytest.raises(InvalidError, match="pod updates may not change fields") as caught:
        store.update(changed)
    assert _fields(caught.value) == ["spec"]


def test_unknown_fields_are_dropped_with_a_warning_by_default(store, deployment):
    # Given a body with a misspelt field
    body = deployment()
    body["spec"]["replica"] = 3
    body["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyX"] = "Always"
    warnings: list[str] = []
    # When created with the default field validation (Warn)
    created = store.create(body, warnings=warnings)
    # Then the fields are gone and the warnings name them
    assert "replica" not in created["spec"]
    assert warnings == [
        'unknown field "spec.replica"',
        'unknown field "spec.template.spec.containers[0].imagePullPolicyX"',
    ]


def test_unknown_fields_are_rejected_in_strict_mode(store, deployment):
    body = deployment()
    body["spec"]["replica"] = 3
    with pytest.raises(BadRequestError, match='strict decoding error: unknown field "spec.replica"'):
        store.create(body, field_validation="Strict")


def test_labels_and_annotations_in_maps_are_not_unknown_fields(store, deployment):
    body = deployment()
    body["metadata"]["annotations"] = {"modelops.io/version": "7"}
    warnings: list[str] = []
    created = store.create(body, warnings=warnings)
    assert warnings == [] and created["metadata"]["annotations"] == {"modelops.io/version": "7"}
