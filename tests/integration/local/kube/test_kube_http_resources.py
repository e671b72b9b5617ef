"""The official kubernetes client (v36) against the stand-in over HTTPS: CRUD, patches, subresources."""

from __future__ import annotations

import json

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from modelops_local.kube import MERGE_PATCH

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/serving@sha256:" + "2" * 64


def _status(exc: ApiException) -> dict:
    return json.loads(exc.body)


def test_create_then_read_a_deployment(apps, deployment):
    # Given a Deployment created through the client
    created = apps.create_namespaced_deployment("models", deployment())
    # When it is read back
    read = apps.read_namespaced_deployment("churn-stable", "models")
    # Then the server fields are set and consistent
    assert read.metadata.uid == created.metadata.uid
    assert read.metadata.generation == 1
    assert read.metadata.resource_version == created.metadata.resource_version
    assert read.metadata.namespace == "models"
    assert [c.name for c in read.spec.template.spec.containers] == ["model", "sidecar"]


def test_json_patch_guarded_by_a_test_op(apps, deployment):
    apps.create_namespaced_deployment("models", deployment())
    # When the client sends a list body (application/json-patch+json) whose test holds
    ops = [
        {"op": "test", "path": "/spec/template/spec/containers/0/name", "value": "model"},
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": IMAGE},
    ]
    patched = apps.patch_namespaced_deployment("churn-stable", "models", ops)
    # Then the image changed and generation bumped
    assert patched.spec.template.spec.containers[0].image == IMAGE
    assert patched.metadata.generation == 2
    # When the test no longer holds, Then the API's 422 comes back and nothing changes
    ops[0]["value"] = "renamed"
    ops[1]["value"] = "repo/other:1"
    with pytest.raises(ApiException) as caught:
        apps.patch_namespaced_deployment("churn-stable", "models", ops)
    assert caught.value.status == 422 and _status(caught.value)["reason"] == "Invalid"
    assert (
        apps.read_namespaced_deployment("churn-stable", "models").spec.template.spec.containers[0].image
        == IMAGE
    )


def test_replace_with_a_stale_resource_version_is_a_409(apps, deployment):
    # Given two clients holding the same version
    mine = apps.create_namespaced_deployment("models", deployment())
    apps.patch_namespaced_deployment(
        "churn-stable", "models", {"spec": {"replicas": 3}}, _content_type=MERGE_PATCH
    )
    # When the stale copy is replaced
    mine.spec.replicas = 5
    with pytest.raises(ApiException) as caught:
        apps.replace_namespaced_deployment("churn-stable", "models", mine)
    # Then the API's Conflict comes back
    status = _status(caught.value)
    assert caught.value.status == 409 and status["reason"] == "Conflict"
    assert status["message"] == (
        'Operation cannot be fulfilled on deployments.apps "churn-stable": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )
    # And replacing the fresh copy works
    fresh = apps.read_namespaced_deployment("churn-stable", "models")
    fresh.spec.replicas = 5
    assert apps.replace_namespaced_deployment("churn-stable", "models", fresh).spec.replicas == 5


def test_invalid_object_is_a_422_naming_the_field(apps, deployment):
    body = deployment()
    del body["spec"]["template"]["spec"]["containers"][0]["image"]
    with pytest.raises(ApiException) as caught:
        apps.create_namespaced_deployment("models", body)
    status = _status(caught.value)
    assert caught.value.status == 422
    assert [c["field"] for c in status["details"]["causes"]] == ["spec.template.spec.containers[0].image"]


def test_status_subresource_reads_and_patches_only_status(apps, deployment):
    apps.create_namespaced_deployment("models", deployment())
    # When status is patched (as the Deployment controller does)
    patch = {
        "status": {
            "observedGeneration": 1,
            "replicas": 2,
            "updatedReplicas": 2,
            "readyReplicas": 2,
            "availableReplicas": 2,
        }
    }
    patched = apps.patch_namespaced_deployment_status(
        "churn-stable", "models", patch, _content_type=MERGE_PATCH
    )
    # Then status changed and generation did not
    assert patched.status.ready_replicas == 2 and patched.metadata.generation == 1
    read = apps.read_namespaced_deployment_status("churn-stable", "models")
    assert read.status.available_replicas == 2
    # And a status write carrying a spec change leaves spec alone
    read.spec.replicas = 9
    read.status.ready_replicas = 1
    replaced = apps.replace_namespaced_deployment_status("churn-stable", "models", read)
    assert replaced.spec.replicas == 2 and replaced.status.ready_replicas == 1
    # And a main-resource write cannot change status
    current = apps.read_namespaced_deployment("churn-stable", "models")
    current.status.ready_replicas = 0
    assert apps.replace_namespaced_deployment("churn-stable", "models", current).status.ready_replicas == 1


def test_scale_subresource(apps, deployment):
    apps.create_namespaced_deployment("models", deployment())
    scale = apps.read_namespaced_deployment_scale("churn-stable", "models")
    assert scale.spec.replicas == 2 and scale.status.selector == "app=churn,variant=stable"
    patched = apps.patch_namespaced_deployment_scale(
        "churn-stable", "models", {"spec": {"replicas": 0}}, _content_type=MERGE_PATCH
    )
    assert patched.spec.replicas == 0
    scale = apps.read_namespaced_deployment_scale("churn-stable", "models")
    scale.spec.replicas = 4
    assert apps.replace_namespaced_deployment_scale("churn-stable", "models", scale).spec.replicas == 4
    deployment_now = apps.read_namespaced_deployment("churn-stable", "models")
    assert deployment_now.spec.replicas == 4 and deployment_now.metadata.generation == 3


def test_list_with_label_and_field_selectors(apps, core, deployment):
    apps.create_namespaced_deployment("models", deployment("churn-stable"))
    apps.create_namespaced_deployment("models", deployment("churn-canary"))
    core.create_namespace({"metadata": {"name": "other"}})
    apps.create_namespaced_deployment("other", deployment("churn-canary"))

    def names(items):
        return sorted((d.metadata.namespace, d.metadata.name) for d in items)

    assert names(
        apps.list_namespaced_deployment("models", label_selector="app=churn,variant in (canary)").items
    ) == [("models", "churn-canary")]
    assert names(apps.list_deployment_for_all_namespaces(label_selector="variant!=stable").items) == [
        ("models", "churn-canary"),
        ("other", "churn-canary"),
    ]
    assert names(
        apps.list_namespaced_deployment("models", field_selector="metadata.name=churn-stable").items
    ) == [("models", "churn-stable")]
    listed = apps.list_namespaced_deployment("models")
    assert int(listed.metadata.resource_version) >= max(
        int(d.metadata.resource_version) for d in listed.items
    )
    with pytest.raises(ApiException) as caught:
        apps.list_namespaced_deployment("models", label_selector="app in ()")
    assert caught.value.status == 400


def test_not_found_already_exists_and_delete(apps, deployment):
    with pytest.raises(ApiException) as caught:
        apps.read_namespaced_deployment("ghost", "models")
    assert (
        caught.value.status == 404
        and _status(caught.value)["message"] == 'deployments.apps "ghost" not found'
    )
    apps.create_namespaced_deployment("models", deployment())
    with pytest.raises(ApiException) as caught:
        apps.create_namespaced_deployment("models", deployment())
    assert caught.value.status == 409 and _status(caught.value)["reason"] == "AlreadyExists"
    deleted = apps.delete_namespaced_deployment("churn-stable", "models")
    assert deleted.status == "Success" and deleted.details.name == "churn-stable"
    assert apps.list_namespaced_deployment("models").items == []


def test_other_patch_types_are_415_and_bad_methods_405(make_client, apps, deployment):
    apps.create_namespaced_deployment("models", deployment())
    api_client = make_client()
    path = "/apis/apps/v1/namespaces/models/deployments/churn-stable"
    with pytest.raises(ApiException) as caught:
        api_client.call_api(
            path,
            "PATCH",
            header_params={"Content-Type": "application/apply-patch+yaml"},
            body="{}",
            auth_settings=["BearerToken"],
            _preload_content=False,
        )
    assert caught.value.status == 415
    # the client's default for a dict body: strategic merge patch, which nothing in modelops sends
    with pytest.raises(ApiException) as caught:
        apps.patch_namespaced_deployment("churn-stable", "models", {"spec": {"replicas": 3}})
    assert caught.value.status == 415 and _status(caught.value)["reason"] == "UnsupportedMediaType"
    with pytest.raises(ApiException) as caught:
        api_client.call_api(path, "POST", body={}, auth_settings=["BearerToken"], _preload_content=False)
    assert caught.value.status == 405


def test_unknown_fields_are_dropped_with_a_warning_header(make_client, apps, deployment):
    body = deployment()
    body["spec"]["replica"] = 3
    response = apps.create_namespaced_deployment("models", body, _preload_content=False)
    assert response.status == 201
    assert response.headers["Warning"] == '299 - "unknown field \\"spec.replica\\""'
    with pytest.raises(ApiException) as caught:
        apps.create_namespaced_deployment(
            "models", {**deployment("churn-canary"), "bogus": 1}, field_validation="Strict"
        )
    assert caught.value.status == 400


def test_namespaces_services_and_pods_through_core_v1(core):
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="team-a")))
    assert core.read_namespace("team-a").status.phase == "Active"
    service = core.create_namespaced_service(
        "team-a",
        {
            "metadata": {"name": "churn"},
            "spec": {"selector": {"app": "churn"}, "ports": [{"port": 80, "targetPort": 8080}]},
        },
    )
    assert service.spec.cluster_ip and service.spec.ports[0].target_port == 8080
    pod = core.create_namespaced_pod(
        "team-a",
        {
            "metadata": {"name": "p", "labels": {"app": "churn"}},
            "spec": {"containers": [{"name": "m", "image": "m:1"}]},
        },
    )
    assert pod.status.phase == "Pending"
    core.patch_namespaced_pod_status(
        "p", "team-a", {"status": {"phase": "Running", "podIP": "127.0.0.1"}}, _content_type=MERGE_PATCH
    )
    assert [
        p.metadata.name
        for p in core.list_namespaced_pod("team-a", field_selector="status.phase=Running").items
    ] == ["p"]


def test_pod_deletion_is_graceful_for_bound_pods(core):
    # Given a pod bound to a node (as the local kubelet creates them)
    body = {
        "metadata": {"name": "p"},
        "spec": {"nodeName": "local", "containers": [{"name": "m", "image": "m:1"}]},
    }
    core.create_namespaced_pod("models", body)
    # When it is deleted, Then it waits for the kubelet with a deletionTimestamp (200 + the pod)
    response = core.delete_namespaced_pod("p", "models", _preload_content=False)
    pending = json.loads(response.data)
    assert response.status == 200 and pending["kind"] == "Pod" and pending["metadata"]["deletionTimestamp"]
    assert core.read_namespaced_pod("p", "models").metadata.deletion_grace_period_seconds == 30
    # And the kubelet's grace-0 delete removes it
    core.delete_namespaced_pod("p", "models", grace_period_seconds=0)
    assert core.list_namespaced_pod("models").items == []
