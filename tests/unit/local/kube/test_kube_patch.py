"""JSON Patch and JSON merge patch, as the API server applies them."""

from __future__ import annotations

import pytest

from modelops_local.kube import BadRequestError, InvalidError, UnsupportedMediaTypeError
from modelops_local.kube.patch import (
    JSON_PATCH,
    MERGE_PATCH,
    apply_json_patch,
    apply_merge_patch,
    apply_patch,
)


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
        apply_patch(_doc(), {"op": "replace"}, JSON_PATCH)


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
        _doc(), {"spec": {"template": {"spec": {"containers": [{"name": "model"}]}}}}, MERGE_PATCH
    )
    assert _containers(result) == [{"name": "model"}]


@pytest.mark.parametrize(
    "content_type", ["application/apply-patch+yaml", "application/strategic-merge-patch+json", "text/plain"]
)
def test_other_patch_content_types_are_415_naming_the_accepted_ones(content_type):
    # Strategic merge patch too: nothing in modelops sends one, so the stand-in does not take it
    with pytest.raises(UnsupportedMediaTypeError) as caught:
        apply_patch(_doc(), {}, content_type)
    assert caught.value.code == 415
    assert str(caught.value).endswith(f"{JSON_PATCH}, {MERGE_PATCH}")
