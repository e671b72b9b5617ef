"""JSON Patch, JSON merge patch and strategic merge patch, as the API server applies them."""

from __future__ import annotations

import pytest

from modelops_local.kube import BadRequestError, InvalidError, UnsupportedMediaTypeError
from modelops_local.kube.patch import (
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_MERGE_PATCH,
    apply_json_patch,
    apply_merge_patch,
    apply_patch,
    apply_strategic_merge_patch,
)
from modelops_local.kube.schema import kube_schema


@pytest.fixture(scope="module")
def deployment_schema():
    return kube_schema().root("apps/v1", "Deployment")


def _containers(doc):
    return doc["spec"]["template"]["spec"]["containers"]


def _doc():
    return {
        "metadata": {"name": "x", "labels": {"app": "a", "tier": "web"}, "finalizers": ["a/one", "b/two"]},
        "spec": {
            "replicas": 1,
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "model",
                            "image": "m:1",
                            "args": ["--a", "--b"],
                            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                            "ports": [{"containerPort": 8080, "name": "http"}],
                        },
                        {"name": "sidecar", "image": "s:1"},
                    ],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                }
            },
        },
        "status": {
            "conditions": [{"type": "Available", "status": "True"}, {"type": "Progressing", "status": "True"}]
        },
    }


# --- RFC 6902 ----------------------------------------------------------------------------------------


def test_json_patch_with_passing_test_op_applies_every_operation():
    # Given a deployment and a patch guarded by a test on the container name
    ops = [
        {"op": "test", "path": "/spec/template/spec/containers/0/name", "value": "model"},
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "m:2"},
        {"op": "add", "path": "/metadata/labels/new", "value": "yes"},
    ]
    # When it is applied
    result = apply_json_patch(_doc(), ops)
    # Then the image and label changed and nothing else
    assert _containers(result)[0]["image"] == "m:2"
    assert result["metadata"]["labels"]["new"] == "yes"
    assert _containers(result)[1] == {"name": "sidecar", "image": "s:1"}


def test_json_patch_failed_test_is_the_api_servers_422_and_applies_nothing():
    # Given a patch whose test op guards against a renamed container
    doc = _doc()
    ops = [
        {"op": "replace", "path": "/spec/replicas", "value": 5},
        {"op": "test", "path": "/spec/template/spec/containers/0/name", "value": "other"},
    ]
    # When it is applied, Then it is rejected like the API server rejects it
    with pytest.raises(InvalidError) as caught:
        apply_json_patch(doc, ops)
    assert caught.value.code == 422
    assert (
        caught.value.to_status()["message"]
        == "the server rejected our request due to an error in our request"
    )
    # And the document is untouched
    assert doc["spec"]["replicas"] == 1


def test_json_patch_on_a_missing_path_is_422():
    with pytest.raises(InvalidError):
        apply_json_patch(_doc(), [{"op": "replace", "path": "/spec/nothing/here", "value": 1}])


def test_json_patch_body_must_be_a_list():
    # Given a dict sent with the json-patch content type, Then it is a 400 like the server's decode error
    with pytest.raises(BadRequestError, match="jsonpatch.Patch"):
        apply_patch(_doc(), {"op": "replace"}, JSON_PATCH, None)


# --- RFC 7386 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "patch", "expected"),
    [
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_merge_patch_follows_rfc7386_examples(target, patch, expected):
    assert apply_merge_patch(target, patch) == expected


def test_merge_patch_replaces_lists_whole():
    # Given a merge patch naming one container, Then the list is replaced (no merge keys in RFC 7386)
    result = apply_patch(
        _doc(), {"spec": {"template": {"spec": {"containers": [{"name": "model"}]}}}}, MERGE_PATCH, None
    )
    assert _containers(result) == [{"name": "model"}]


def test_unknown_patch_content_type_is_415():
    with pytest.raises(UnsupportedMediaTypeError) as caught:
        apply_patch(_doc(), {}, "application/apply-patch+yaml", None)
    assert caught.value.code == 415


# --- strategic merge patch ---------------------------------------------------------------------------


def test_smp_merges_containers_by_name_keeping_the_others(deployment_schema):
    # Given a patch naming only the model container
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "model", "image": "m:2"}]}}}}
    # When applied strategically
    result = apply_strategic_merge_patch(_doc(), patch, deployment_schema)
    # Then the model container changed in place, its other fields kept, and the sidecar kept
    containers = _containers(result)
    assert [c["name"] for c in containers] == ["model", "sidecar"]
    assert containers[0]["image"] == "m:2"
    assert containers[0]["args"] == ["--a", "--b"]
    assert containers[1]["image"] == "s:1"


def test_smp_merges_env_by_name_and_ports_by_container_port(deployment_schema):
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "model",
                            "env": [{"name": "B", "value": "20"}],
                            "ports": [{"containerPort": 8080, "protocol": "TCP"}, {"containerPort": 9090}],
                        }
                    ]
                }
            }
        }
    }
    model = _containers(apply_strategic_merge_patch(_doc(), patch, deployment_schema))[0]
    assert model["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "20"}]
    assert {p["containerPort"]: p for p in model["ports"]}[8080] == {
        "containerPort": 8080,
        "name": "http",
        "protocol": "TCP",
    }
    assert 9090 in [p["containerPort"] for p in model["ports"]]


def test_smp_replaces_lists_without_a_merge_strategy(deployment_schema):
    # Given args (an atomic list), When patched, Then the list is replaced
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "model", "args": ["--c"]}]}}}}
    assert _containers(apply_strategic_merge_patch(_doc(), patch, deployment_schema))[0]["args"] == ["--c"]


def test_smp_merges_status_conditions_by_type(deployment_schema):
    patch = {
        "status": {
            "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]
        }
    }
    conditions = apply_strategic_merge_patch(_doc(), patch, deployment_schema)["status"]["conditions"]
    by_type = {c["type"]: c for c in conditions}
    assert by_type["Available"]["status"] == "True"
    assert by_type["Progressing"] == {
        "type": "Progressing",
        "status": "False",
        "reason": "ProgressDeadlineExceeded",
    }


def test_smp_new_list_items_come_before_existing_ones_like_the_api_server(deployment_schema):
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "init-cache", "image": "c:1"}]}}}}
    names = [c["name"] for c in _containers(apply_strategic_merge_patch(_doc(), patch, deployment_schema))]
    assert names == ["init-cache", "model", "sidecar"]


def test_smp_set_element_order_decides_the_order(deployment_schema):
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [
                        {"name": "sidecar"},
                        {"name": "model"},
                        {"name": "extra"},
                    ],
                    "containers": [{"name": "extra", "image": "e:1"}],
                }
            }
        }
    }
    names = [c["name"] for c in _containers(apply_strategic_merge_patch(_doc(), patch, deployment_schema))]
    assert names == ["sidecar", "model", "extra"]


def test_smp_patch_delete_directive_removes_a_list_element_by_merge_key(deployment_schema):
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}}}
    assert [
        c["name"] for c in _containers(apply_strategic_merge_patch(_doc(), patch, deployment_schema))
    ] == ["model"]


def test_smp_patch_replace_directive_replaces_the_whole_list(deployment_schema):
    patch = {
        "spec": {
            "template": {"spec": {"containers": [{"name": "only", "image": "o:1"}, {"$patch": "replace"}]}}
        }
    }
    assert _containers(apply_strategic_merge_patch(_doc(), patch, deployment_schema)) == [
        {"name": "only", "image": "o:1"}
    ]


def test_smp_patch_replace_and_delete_directives_on_maps(deployment_schema):
    # Given a map replaced and a map deleted by directive
    patch = {
        "metadata": {"labels": {"$patch": "replace", "only": "this"}},
        "spec": {"template": {"spec": {"volumes": None}}},
    }
    result = apply_strategic_merge_patch(_doc(), patch, deployment_schema)
    # Then labels are exactly the patch's, and null removed the volumes
    assert result["metadata"]["labels"] == {"only": "this"}
    assert "volumes" not in result["spec"]["template"]["spec"]
    deleted = apply_strategic_merge_patch(
        _doc(), {"metadata": {"labels": {"$patch": "delete"}}}, deployment_schema
    )
    assert deleted["metadata"]["labels"] == {}


def test_smp_null_removes_a_key_and_maps_merge(deployment_schema):
    result = apply_strategic_merge_patch(
        _doc(), {"metadata": {"labels": {"tier": None, "new": "v"}}}, deployment_schema
    )
    assert result["metadata"]["labels"] == {"app": "a", "new": "v"}


def test_smp_primitive_merge_lists_union_and_delete_from_primitive_list(deployment_schema):
    # Given finalizers (a list of strings with the merge strategy)
    added = apply_strategic_merge_patch(_doc(), {"metadata": {"finalizers": ["c/three"]}}, deployment_schema)
    assert sorted(added["metadata"]["finalizers"]) == ["a/one", "b/two", "c/three"]
    removed = apply_strategic_merge_patch(
        _doc(), {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a/one"]}}, deployment_schema
    )
    assert removed["metadata"]["finalizers"] == ["b/two"]


def test_smp_retain_keys_clears_fields_not_listed(deployment_schema):
    # Given a strategy patched from RollingUpdate to Recreate with $retainKeys (as kubectl apply sends it)
    doc = {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}
    assert apply_strategic_merge_patch(doc, patch, deployment_schema)["spec"]["strategy"] == {
        "type": "Recreate"
    }


def test_smp_list_element_without_its_merge_key_is_a_bad_request(deployment_schema):
    with pytest.raises(BadRequestError, match="merge key: name"):
        apply_strategic_merge_patch(
            _doc(), {"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}, deployment_schema
        )


def test_smp_without_schema_merges_maps_and_replaces_lists():
    result = apply_patch(
        _doc(),
        {"metadata": {"labels": {"x": "y"}}, "spec": {"template": {"spec": {"containers": []}}}},
        STRATEGIC_MERGE_PATCH,
        None,
    )
    assert result["metadata"]["labels"]["x"] == "y"
    assert _containers(result) == []
