"""Store semantics a client relies on: resourceVersion, generation, conflicts, subresources, deletion."""

from __future__ import annotations

import pytest

from modelops_local.kube import (
    JSON_PATCH,
    MERGE_PATCH,
    AlreadyExistsError,
    BadRequestError,
    ConflictError,
    InvalidError,
    KubeStore,
    MethodNotAllowedError,
    NotFoundError,
)


def test_create_sets_server_fields_and_defaults(store, deployment):
    # Given a new Deployment
    created = store.create(deployment())
    meta = created["metadata"]
    # Then the server filled in identity, versioning and defaults
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z")
    assert meta["generation"] == 1
    assert int(meta["resourceVersion"]) == int(store.resource_version)
    assert created["status"] == {}
    assert created["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
    }
    assert created["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert store.get("deployments", "models", "churn-stable") == created


def test_create_ignores_client_status_and_server_fields(store, deployment):
    body = deployment()
    body["status"] = {"readyReplicas": 9}
    body["metadata"]["uid"] = "mine"
    created = store.create(body)
    assert created["status"] == {} and created["metadata"]["uid"] != "mine"


def test_create_twice_is_already_exists(store, deployment):
    store.create(deployment())
    with pytest.raises(AlreadyExistsError) as caught:
        store.create(deployment())
    assert caught.value.code == 409
    assert caught.value.message == 'deployments.apps "churn-stable" already exists'


def test_get_missing_is_not_found_with_the_api_message(store):
    with pytest.raises(NotFoundError) as caught:
        store.get("deployments", "models", "nope")
    assert caught.value.to_status()["message"] == 'deployments.apps "nope" not found'
    assert caught.value.to_status()["details"] == {"name": "nope", "group": "apps", "kind": "deployments"}


def test_create_in_a_missing_namespace_is_not_found(store, deployment):
    with pytest.raises(NotFoundError, match='namespaces "ghost" not found'):
        store.create(deployment(namespace="ghost"))


def test_create_with_a_resource_version_is_a_bad_request(store, deployment):
    body = deployment()
    body["metadata"]["resourceVersion"] = "5"
    with pytest.raises(BadRequestError, match="resourceVersion should not be set"):
        store.create(body)


def test_generate_name(store, deployment):
    body = deployment()
    del body["metadata"]["name"]
    body["metadata"]["generateName"] = "churn-"
    created = store.create(body)
    assert (
        created["metadata"]["name"].startswith("churn-")
        and len(created["metadata"]["name"]) == len("churn-") + 5
    )


def test_generation_bumps_only_on_spec_changes(store, deployment):
    # Given a Deployment at generation 1
    store.create(deployment())
    # When labels and status change
    labelled = store.patch(
        "deployments", "models", "churn-stable", {"metadata": {"labels": {"x": "y"}}}, MERGE_PATCH
    )
    status = store.patch(
        "deployments", "models", "churn-stable", {"status": {"replicas": 2}}, MERGE_PATCH, "status"
    )
    # Then generation stays; a spec change bumps it once
    assert labelled["metadata"]["generation"] == 1 and status["metadata"]["generation"] == 1
    scaled = store.patch(
        "deployments",
        "models",
        "churn-stable",
        [{"op": "replace", "path": "/spec/replicas", "value": 4}],
        JSON_PATCH,
    )
    assert scaled["metadata"]["generation"] == 2


def test_resource_version_increases_and_a_no_op_write_changes_nothing(store, deployment):
    created = store.create(deployment())
    same = store.update(created)
    assert same["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    changed = store.patch(
        "deployments", "models", "churn-stable", {"metadata": {"labels": {"x": "y"}}}, MERGE_PATCH
    )
    assert int(changed["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])


def test_stale_resource_version_is_a_conflict_with_the_api_message(store, deployment):
    # Given a client holding an old copy
    old = store.create(deployment())
    store.patch("deployments", "models", "churn-stable", {"spec": {"replicas": 3}}, MERGE_PATCH)
    # When it writes the old copy back
    old["spec"]["replicas"] = 5
    with pytest.raises(ConflictError) as caught:
        store.update(old)
    # Then it gets the API server's 409
    assert caught.value.code == 409
    assert caught.value.message == (
        'Operation cannot be fulfilled on deployments.apps "churn-stable": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )
    # And a patch carrying the stale version conflicts too, while one without it applies
    stale = {"metadata": {"resourceVersion": old["metadata"]["resourceVersion"]}, "spec": {"replicas": 6}}
    with pytest.raises(ConflictError):
        store.patch("deployments", "models", "churn-stable", stale, MERGE_PATCH)
    del old["metadata"]["resourceVersion"]
    assert store.update(old)["spec"]["replicas"] == 5


def test_writes_to_the_main_resource_ignore_status_and_status_writes_change_only_status(store, deployment):
    created = store.create(deployment())
    # When the main resource is written with a status
    created["status"] = {"replicas": 7}
    created["metadata"]["labels"]["extra"] = "1"
    main = store.update(created)
    # Then status is unchanged but labels changed
    assert main["status"] == {} and main["metadata"]["labels"]["extra"] == "1"
    # When /status is written with spec and label changes
    main["status"] = {"replicas": 2, "observedGeneration": 1}
    main["spec"]["replicas"] = 9
    main["metadata"]["labels"]["other"] = "2"
    status = store.update(main, "status")
    # Then only status changed
    assert status["status"] == {"replicas": 2, "observedGeneration": 1}
    assert status["spec"]["replicas"] == 2 and "other" not in status["metadata"]["labels"]


def test_scale_subresource_reads_and_writes_replicas(store, deployment):
    store.create(deployment())
    scale = store.get("deployments", "models", "churn-stable", subresource="scale")
    assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"] == {"replicas": 2}
    assert scale["status"] == {"replicas": 0, "selector": "app=churn,variant=stable"}
    # When scaled through the subresource
    scale["spec"]["replicas"] = 5
    assert store.update(scale, "scale", kind="deployments", namespace="models")["spec"]["replicas"] == 5
    patched = store.patch(
        "deployments", "models", "churn-stable", {"spec": {"replicas": 1}}, MERGE_PATCH, "scale"
    )
    # Then the Deployment's replicas and generation follow
    assert patched["spec"]["replicas"] == 1
    assert store.get("deployments", "models", "churn-stable")["metadata"]["generation"] == 3
    # And a stale Scale conflicts, a negative one is invalid
    with pytest.raises(ConflictError):
        store.update(scale, "scale", kind="deployments", namespace="models")
    with pytest.raises(InvalidError, match='Scale.autoscaling "churn-stable" is invalid: spec.replicas'):
        store.patch("deployments", "models", "churn-stable", {"spec": {"replicas": -1}}, MERGE_PATCH, "scale")


def test_list_filters_by_namespace_and_selectors_and_pages(store, deployment):
    store.create(deployment("churn-stable"))
    store.create(deployment("churn-canary"))
    store.create(deployment("churn-stable", namespace="default"))
    assert [d["metadata"]["name"] for d in store.list("deployments", "models", "variant in (canary)")] == [
        "churn-canary"
    ]
    assert len(store.list("deployments", None)) == 3
    assert [
        d["metadata"]["name"]
        for d in store.list("deployments", "models", field_selector="metadata.name!=churn-canary")
    ] == ["churn-stable"]
    # When listed one at a time, Then the continue token walks the rest
    first = store.list_object("deployments", None, limit=1)
    assert first["metadata"]["remainingItemCount"] == 2 and "kind" not in first["items"][0]
    second = store.list_object("deployments", None, limit=5, continue_token=first["metadata"]["continue"])
    assert len(second["items"]) == 2 and "continue" not in second["metadata"]


def test_service_gets_a_cluster_ip_and_keeps_it(store):
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "churn", "namespace": "models"},
        "spec": {"selector": {"app": "churn"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    created = store.create(service)
    assert created["spec"]["clusterIP"].startswith("10.96.") and created["spec"]["type"] == "ClusterIP"
    del created["spec"]["clusterIP"]
    assert store.update(created)["spec"]["clusterIP"] == created["spec"]["clusterIPs"][0]


def _pod(name, node=None):
    meta = {"name": name, "namespace": "models", "labels": {"app": "churn"}}
    spec = {"containers": [{"name": "model", "image": "m:1"}], "terminationGracePeriodSeconds": 5}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def test_pods_on_a_node_are_deleted_gracefully(store):
    store.create(_pod("bound", node="local"))
    store.create(_pod("unbound"))
    # When both are deleted, Then the unbound pod goes at once and the bound one waits for its kubelet
    assert store.delete("pods", "models", "unbound").deleted
    pending = store.delete("pods", "models", "bound")
    assert not pending.deleted and pending.object["metadata"]["deletionGracePeriodSeconds"] == 5
    # When the kubelet confirms with grace 0, Then it is gone
    assert store.delete("pods", "models", "bound", grace_period_seconds=0).deleted
    assert store.list("pods", "models") == []


def test_deleting_a_namespace_is_refused_by_the_stand_in(store, deployment):
    # nothing in modelops deletes a namespace, so the stand-in does not cascade one away
    store.create(deployment())
    with pytest.raises(MethodNotAllowedError, match="deleting a namespace is not supported"):
        store.delete("namespaces", None, "models")
    assert store.get("deployments", "models", "churn-stable")["metadata"]["name"] == "churn-stable"


def test_delete_preconditions(store, deployment):
    store.create(deployment())
    with pytest.raises(ConflictError, match="Precondition failed: UID in precondition: other"):
        store.delete("deployments", "models", "churn-stable", preconditions={"uid": "other"})


def test_dry_run_changes_nothing(store, deployment):
    created = store.create(deployment(), dry_run=True)
    assert created["metadata"]["name"] == "churn-stable"
    assert store.list("deployments", "models") == []


def test_subscribers_see_every_change_in_order_and_can_unsubscribe(store, deployment):
    seen: list[tuple[str, str]] = []
    unsubscribe = store.subscribe(lambda kind, obj: seen.append((kind, obj["metadata"]["resourceVersion"])))
    store.create(deployment())
    store.patch("deployments", "models", "churn-stable", {"spec": {"replicas": 3}}, MERGE_PATCH)
    store.delete("deployments", "models", "churn-stable")
    unsubscribe()
    store.create(deployment())
    assert [kind for kind, _ in seen] == ["ADDED", "MODIFIED", "DELETED"]
    assert [int(rv) for _, rv in seen] == sorted(int(rv) for _, rv in seen)


def test_a_subscriber_may_write_to_the_store(store, deployment):
    # Given a subscriber that labels every new Deployment (like a controller would)
    def label(kind, obj):
        if kind == "ADDED" and obj["kind"] == "Deployment":
            store.patch(
                "deployments",
                "models",
                obj["metadata"]["name"],
                {"metadata": {"labels": {"seen": "yes"}}},
                MERGE_PATCH,
            )

    store.subscribe(label)
    store.create(deployment())
    assert store.get("deployments", "models", "churn-stable")["metadata"]["labels"]["seen"] == "yes"


def test_in_process_objects_are_copies(store, deployment):
    created = store.create(deployment())
    created["spec"]["replicas"] = 100
    assert store.get("deployments", "models", "churn-stable")["spec"]["replicas"] == 2


def test_store_without_schema_still_applies_semantic_rules(deployment):
    plain = KubeStore(validate_schema=False, namespaces=("models",))
    body = deployment()
    del body["spec"]["template"]["spec"]["containers"][0]["image"]
    with pytest.raises(InvalidError, match=r"containers\[0\].image"):
        plain.create(body)


def test_concurrent_read_modify_write_with_conflict_retries_loses_no_update(store, deployment):
    import threading

    # Given four writers each incrementing a counter 25 times with read-modify-write
    store.create(deployment())

    def writer() -> None:
        for _ in range(25):
            for _attempt in range(200):
                current = store.get("deployments", "models", "churn-stable")
                count = int(current["metadata"].get("annotations", {}).get("count", "0"))
                current["metadata"].setdefault("annotations", {})["count"] = str(count + 1)
                try:
                    store.update(current)
                    break
                except ConflictError:
                    continue

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    # Then every increment landed exactly once
    assert store.get("deployments", "models", "churn-stable")["metadata"]["annotations"]["count"] == "100"
