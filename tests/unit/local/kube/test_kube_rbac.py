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
    ("verb", "resource", "name"),
    [
        ("get", "deployments", "churn-stable"),
        ("patch", "deployments", "churn-canary"),
        ("list", "deployments", "churn-stable"),  # with a metadata.name field selector
        ("watch", "deployments", "churn-canary"),
        ("create", "services/proxy", "churn-canary:8080"),  # the smoke test's POST, port as written
        ("create", "services/proxy", "churn-canary:http"),
    ],
)
def test_the_shipped_role_grants_what_the_rollout_needs_in_the_models_namespace(
    shipped, verb, resource, name
):
    # Given the rendered manifests and the rollout function's user mapped to the group
    # When it asks for what the rollout does, Then it is allowed in the model's namespace only
    assert shipped("rollout-fn", verb, resource, "models", name)
    assert not shipped("rollout-fn", verb, resource, "default", name)


@pytest.mark.parametrize(
    ("verb", "resource", "name"),
    [
        ("delete", "deployments", "churn-stable"),
        ("update", "deployments", "churn-stable"),
        ("create", "deployments", None),
        ("get", "deployments", "other-model-stable"),  # another model's Deployment
        ("list", "deployments", None),  # a list without a metadata.name field selector
        ("patch", "deployments/scale", "churn-stable"),
        ("create", "services/proxy", "churn:8080"),  # the Service both variants serve
        ("get", "services/proxy", "churn-canary:8080"),
        ("list", "pods", None),
        ("get", "secrets", "anything"),
        ("list", "namespaces", None),
        ("delete", "pods", "churn-stable-abcde"),
    ],
)
def test_anything_else_is_denied(shipped, verb, resource, name):
    assert not shipped("rollout-fn", verb, resource, "models", name)


def test_models_sharing_a_namespace_keep_their_own_grants():
    # Given two models' manifests in one namespace (each has its own Role and RoleBinding)
    objects = render_manifests("churn", "models", IMAGE, "1", 2) + render_manifests(
        "fraud", "models", IMAGE, "1", 2
    )
    authorize = RoleAuthorizer(objects, {"rollout-fn": ["modelops-rollout"]})
    # Then the rollout may patch both models' Deployments
    assert authorize("rollout-fn", "patch", "deployments", "models", "churn-canary")
    assert authorize("rollout-fn", "patch", "deployments", "models", "fraud-canary")


def test_resource_names_restrict_a_rule_to_the_named_objects():
    # Given a Role whose rule names one ConfigMap, bound to a user
    objects = [
        {
            "kind": "Role",
            "metadata": {"name": "r", "namespace": "ns"},
            "rules": [{"verbs": ["get"], "resources": ["configmaps"], "resourceNames": ["mine"]}],
        },
        {
            "kind": "RoleBinding",
            "metadata": {"name": "r", "namespace": "ns"},
            "roleRef": {"kind": "Role", "name": "r"},
            "subjects": [{"kind": "User", "name": "u"}],
        },
    ]
    authorize = RoleAuthorizer(objects, {})
    # Then only that name is allowed, and a request without a name never matches the rule
    assert authorize("u", "get", "configmaps", "ns", "mine")
    assert not authorize("u", "get", "configmaps", "ns", "theirs")
    assert not authorize("u", "get", "configmaps", "ns", None)


def test_an_unmapped_user_gets_nothing(shipped):
    assert not shipped("someone-else", "get", "deployments", "models", "churn-stable")


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
