"""The RBAC authorizer against the rules the RBAC documentation gives, with the shipped Role."""

from __future__ import annotations

import pytest

from modelops_local.kube.rbac import RbacError, RoleAuthorizer
from modelops_local.manifests import render_manifests

pytestmark = pytest.mark.unit
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/serving@sha256:" + "a" * 64


@pytest.fixture
def shipped() -> RoleAuthorizer:
    objects = render_manifests("churn", "models", IMAGE, "1", 2)
    return RoleAuthorizer(objects, {"rollout-fn": ["modelops-rollout"]})


@pytest.mark.parametrize(
    ("verb", "resource"),
    [("get", "deployments"), ("patch", "deployments"), ("list", "pods"), ("create", "services/proxy")],
)
def test_the_shipped_role_grants_what_the_rollout_needs_in_the_models_namespace(shipped, verb, resource):
    # Given the rendered manifests and the rollout function's user mapped to the group
    # When it asks for what the rollout does, Then it is allowed in the model's namespace only
    assert shipped("rollout-fn", verb, resource, "models")
    assert not shipped("rollout-fn", verb, resource, "default")


@pytest.mark.parametrize(
    ("verb", "resource"),
    [
        ("delete", "deployments"),
        ("update", "deployments"),
        ("create", "deployments"),
        ("patch", "deployments/scale"),
        ("get", "secrets"),
        ("list", "namespaces"),
        ("delete", "pods"),
    ],
)
def test_anything_else_is_denied(shipped, verb, resource):
    assert not shipped("rollout-fn", verb, resource, "models")


def test_an_unmapped_user_gets_nothing(shipped):
    assert not shipped("someone-else", "get", "deployments", "models")


def test_cluster_role_bindings_grant_everywhere_and_wildcards_match():
    # Given a ClusterRole with wildcards bound to a user cluster-wide
    objects = [
        {
            "kind": "ClusterRole",
            "metadata": {"name": "admin"},
            "rules": [{"verbs": ["*"], "resources": ["*"]}],
        },
        {
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "admin"},
            "roleRef": {"kind": "ClusterRole", "name": "admin"},
            "subjects": [{"kind": "User", "name": "root"}],
        },
    ]
    # When that user asks for anything anywhere, Then it is allowed
    authorize = RoleAuthorizer(objects, {})
    assert authorize("root", "delete", "namespaces", None) and authorize("root", "get", "pods", "x")


def test_a_binding_to_an_undefined_role_is_refused_with_its_name():
    objects = [
        {
            "kind": "RoleBinding",
            "metadata": {"name": "b", "namespace": "models"},
            "roleRef": {"kind": "Role", "name": "missing"},
            "subjects": [{"kind": "Group", "name": "g"}],
        }
    ]
    with pytest.raises(RbacError, match="RoleBinding b: roleRef Role/missing is not defined"):
        RoleAuthorizer(objects, {})
