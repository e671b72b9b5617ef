"""RBAC for the Kubernetes stand-in: Roles and RoleBindings as the RBAC authorizer evaluates them.

`RoleAuthorizer(objects, groups)` takes the Role/RoleBinding (and ClusterRole/ClusterRoleBinding)
documents of the shipped manifests (serving_image/k8s/40-rbac.yaml) and a map from user name to
its groups (what an EKS access entry does for an IAM role). Called as
`authorize(user, verb, resource, namespace, name)`, it allows a request when a binding that names
the user (kind User) or one of its groups (kind Group) refers to a role with a rule whose `verbs`
and `resources` match (`*` matches anything; `resources` may name a subresource, `services/proxy`)
and, when the rule lists `resourceNames`, whose names include the request's `name` (a request
without one, such as a create or an unfiltered list, never matches such a rule). A Role only grants
inside its namespace; a ClusterRoleBinding grants everywhere. Like the real authorizer, everything
not granted is denied. API groups are not checked: the stand-in serves no two resources with the
same plural.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

ROLE_KINDS = frozenset({"Role", "ClusterRole"})
BINDING_KINDS = frozenset({"RoleBinding", "ClusterRoleBinding"})


class RbacError(ValueError):
    """A Role or RoleBinding document is malformed; the message names it."""


@dataclass(frozen=True)
class _Rule:
    verbs: frozenset[str]
    resources: frozenset[str]
    resource_names: frozenset[str] = frozenset()  # empty: any name

    def allows(self, verb: str, resource: str, name: str | None) -> bool:
        return (
            ("*" in self.verbs or verb in self.verbs)
            and ("*" in self.resources or resource in self.resources)
            and (not self.resource_names or name in self.resource_names)
        )


@dataclass(frozen=True)
class _Grant:
    namespace: str | None  # None: cluster-wide
    rules: tuple[_Rule, ...]


class RoleAuthorizer:
    """`authorize(user, verb, resource, namespace) -> bool` from RBAC documents (module docstring)."""

    def __init__(self, objects: Iterable[Mapping[str, Any]], groups: Mapping[str, Iterable[str]]) -> None:
        docs = list(objects)
        roles: dict[tuple[str, str | None], tuple[_Rule, ...]] = {}
        for doc in docs:
            if doc.get("kind") in ROLE_KINDS:
                meta = doc.get("metadata") or {}
                namespace = meta.get("namespace") if doc["kind"] == "Role" else None
                roles[(f"{doc['kind']}/{meta.get('name')}", namespace)] = tuple(
                    _rule(rule, f"{doc['kind']} {meta.get('name')}") for rule in doc.get("rules") or []
                )
        self._grants: dict[tuple[str, str], list[_Grant]] = {}
        for doc in docs:
            if doc.get("kind") not in BINDING_KINDS:
                continue
            meta = doc.get("metadata") or {}
            where = f"{doc['kind']} {meta.get('name')}"
            ref = doc.get("roleRef") or {}
            namespace = meta.get("namespace") if doc["kind"] == "RoleBinding" else None
            role_namespace = namespace if ref.get("kind") == "Role" else None
            key = (f"{ref.get('kind')}/{ref.get('name')}", role_namespace)
            if key not in roles:
                raise RbacError(f"{where}: roleRef {ref.get('kind')}/{ref.get('name')} is not defined")
            grant = _Grant(namespace, roles[key])
            for subject in doc.get("subjects") or []:
                kind, name = subject.get("kind"), subject.get("name")
                if kind not in ("User", "Group") or not name:
                    raise RbacError(f"{where}: subjects need kind User or Group and a name, got {subject}")
                self._grants.setdefault((kind, name), []).append(grant)
        self._groups = {user: tuple(names) for user, names in groups.items()}

    def __call__(
        self, user: str, verb: str, resource: str, namespace: str | None, name: str | None = None
    ) -> bool:
        subjects = [("User", user), *(("Group", group) for group in self._groups.get(user, ()))]
        for subject in subjects:
            for grant in self._grants.get(subject, ()):
                if grant.namespace is not None and grant.namespace != namespace:
                    continue
                if any(rule.allows(verb, resource, name) for rule in grant.rules):
                    return True
        return False


def _rule(raw: Mapping[str, Any], where: str) -> _Rule:
    verbs, resources = raw.get("verbs"), raw.get("resources")
    if not verbs or not resources:
        raise RbacError(f"{where}: every rule needs verbs and resources, got {dict(raw)}")
    return _Rule(
        frozenset(map(str, verbs)),
        frozenset(map(str, resources)),
        frozenset(map(str, raw.get("resourceNames") or ())),
    )
