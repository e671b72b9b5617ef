"""The resource types the stand-in serves, with the names the API uses for them."""

from __future__ import annotations

from dataclasses import dataclass


class UnknownResourceError(KeyError):
    """No served resource has this kind or plural name."""


@dataclass(frozen=True)
class ResourceType:
    kind: str  # "Deployment"
    plural: str  # "deployments"
    singular: str  # "deployment"
    group: str  # "apps" ("" for the core group)
    version: str  # "v1"
    namespaced: bool
    subresources: frozenset[str]
    short_names: tuple[str, ...] = ()
    delete_returns_object: bool = False  # DELETE answers with the object instead of a Status
    name_rule: str = "subdomain"  # "subdomain" | "label" | "dns1035"
    tracks_generation: bool = False  # metadata.generation bumps on spec changes

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        """ "deployments.apps" / "pods": how messages name the resource."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    @property
    def base_path(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"


NAMESPACES = ResourceType(
    "Namespace",
    "namespaces",
    "namespace",
    "",
    "v1",
    namespaced=False,
    subresources=frozenset({"status"}),
    short_names=("ns",),
    delete_returns_object=True,
    name_rule="label",
)
PODS = ResourceType(
    "Pod",
    "pods",
    "pod",
    "",
    "v1",
    namespaced=True,
    subresources=frozenset({"status"}),
    short_names=("po",),
    delete_returns_object=True,
)
SERVICES = ResourceType(
    "Service",
    "services",
    "service",
    "",
    "v1",
    namespaced=True,
    subresources=frozenset({"status", "proxy"}),
    short_names=("svc",),
    delete_returns_object=True,
    name_rule="dns1035",
)
DEPLOYMENTS = ResourceType(
    "Deployment",
    "deployments",
    "deployment",
    "apps",
    "v1",
    namespaced=True,
    subresources=frozenset({"status", "scale"}),
    short_names=("deploy",),
    tracks_generation=True,
)
REPLICASETS = ResourceType(
    "ReplicaSet",
    "replicasets",
    "replicaset",
    "apps",
    "v1",
    namespaced=True,
    subresources=frozenset({"status", "scale"}),
    short_names=("rs",),
    tracks_generation=True,
)

# The weighted traffic routers' objects: a Gateway API HTTPRoute (a custom resource: no schema in
# kubernetes-validate, so validation.py applies the CRD's own rules) and an Ingress (alb).
HTTPROUTES = ResourceType(
    "HTTPRoute",
    "httproutes",
    "httproute",
    "gateway.networking.k8s.io",
    "v1",
    namespaced=True,
    subresources=frozenset({"status"}),
    tracks_generation=True,  # a custom resource with a status subresource bumps it on spec changes
)
INGRESSES = ResourceType(
    "Ingress",
    "ingresses",
    "ingress",
    "networking.k8s.io",
    "v1",
    namespaced=True,
    subresources=frozenset({"status"}),
    short_names=("ing",),
    tracks_generation=True,
)

RESOURCE_TYPES: tuple[ResourceType, ...] = (
    NAMESPACES,
    PODS,
    SERVICES,
    DEPLOYMENTS,
    REPLICASETS,
    HTTPROUTES,
    INGRESSES,
)

_BY_NAME: dict[str, ResourceType] = {}
for _rt in RESOURCE_TYPES:
    for _name in (_rt.kind, _rt.plural, _rt.singular, _rt.group_resource, *_rt.short_names):
        _BY_NAME[_name.lower()] = _rt


def resource_type(name: str | ResourceType) -> ResourceType:
    """The served type called `name` (kind, plural, singular, `plural.group` or short name; any case)."""
    if isinstance(name, ResourceType):
        return name
    try:
        return _BY_NAME[name.lower()]
    except KeyError:
        served = ", ".join(rt.group_resource for rt in RESOURCE_TYPES)
        raise UnknownResourceError(f"unknown resource {name!r}; served: {served}") from None


def by_path(group: str, version: str, plural: str) -> ResourceType | None:
    """The type served at /api[s]/{group}/{version}/{plural}, or None."""
    for rt in RESOURCE_TYPES:
        if rt.group == group and rt.version == version and rt.plural == plural:
            return rt
    return None


def by_api_version_kind(api_version: str, kind: str) -> ResourceType | None:
    for rt in RESOURCE_TYPES:
        if rt.api_version == api_version and rt.kind == kind:
            return rt
    return None
