"""URL paths of the Kubernetes API, parsed the way the API server routes them, and discovery bodies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from modelops_local.kube.errors import MethodNotAllowedError, NotFoundError
from modelops_local.kube.resources import RESOURCE_TYPES, ResourceType, by_path
from modelops_local.kube.schema import SCHEMA_VERSION

HEALTH_PATHS = ("/healthz", "/livez", "/readyz")
_METHOD_VERBS = {
    "GET": "get",
    "HEAD": "get",
    "POST": "create",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
}


@dataclass(frozen=True)
class Route:
    """What a request path names."""

    kind: str  # "health" | "discovery" | "resource"
    rt: ResourceType | None = None
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None
    proxy_path: str = "/"  # for services/{name}/proxy/{path}
    discovery: str = ""  # the path, for discovery documents

    @property
    def rbac_resource(self) -> str:
        """The resource as RBAC names it: "deployments", "deployments/scale", "services/proxy"."""
        assert self.rt is not None
        return f"{self.rt.plural}/{self.subresource}" if self.subresource else self.rt.plural

    def verb(self, method: str, watch: bool) -> str:
        """The API verb for `method` on this route (MethodNotAllowedError if there is none, and for
        a watch: this stand-in serves no watches)."""
        if self.subresource == "proxy":
            return _METHOD_VERBS.get(method) or _not_allowed()
        if watch:
            raise MethodNotAllowedError("watch is not served by the local Kubernetes stand-in")
        if self.name is None:
            verbs = {"GET": "list", "POST": "create"}
            if self.subresource is None and method in verbs:
                return verbs[method]
            return _not_allowed()
        if self.subresource in ("status", "scale"):
            verbs = {"GET": "get", "PUT": "update", "PATCH": "patch"}
        else:
            verbs = {"GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
        return verbs.get(method) or _not_allowed()


def _not_allowed() -> str:
    raise MethodNotAllowedError("the server does not allow this method on the requested resource")


def _not_found() -> NotFoundError:
    return NotFoundError("the server could not find the requested resource", details={})


def parse_path(raw_path: str) -> Route:
    """The route for a request path (percent-decoded first, like the API server); NotFoundError if none."""
    path = unquote(raw_path)
    trimmed = path.rstrip("/") or "/"
    if any(trimmed == p or trimmed.startswith(p + "/") for p in HEALTH_PATHS):
        return Route("health")
    if trimmed in ("/version", "/api", "/apis", "/api/v1") or (
        trimmed.startswith("/apis/") and trimmed.count("/") <= 3
    ):
        return Route("discovery", discovery=trimmed)
    if trimmed.startswith("/api/v1/"):
        group, version, rest = "", "v1", path[len("/api/v1/") :]
    elif trimmed.startswith("/apis/"):
        parts = path.split("/", 4)
        if len(parts) < 5:
            raise _not_found()
        group, version, rest = parts[2], parts[3], parts[4]
    else:
        raise _not_found()
    parts = rest.split("/")
    namespace = None
    if (
        parts[0] == "namespaces"
        and len(parts) >= 3
        and (rt := by_path(group, version, parts[2])) is not None
        and rt.namespaced
    ):
        namespace, parts = parts[1], parts[2:]
    rt = by_path(group, version, parts[0])
    if rt is None or (namespace is None and rt.namespaced and len(parts) > 1):
        raise _not_found()
    name = parts[1] if len(parts) > 1 and parts[1] else None
    subresource = parts[2] if len(parts) > 2 and parts[2] else None
    if subresource is not None and (name is None or subresource not in rt.subresources):
        raise _not_found()
    proxy_path = "/"
    if subresource == "proxy":
        proxy_path = "/" + "/".join(parts[3:])
    elif len([p for p in parts[3:] if p]) > 0:
        raise _not_found()
    return Route("resource", rt, namespace, name, subresource, proxy_path)


def split_proxy_name(name: str) -> tuple[str, str, str | None]:
    """`[scheme:]name[:port]` as (scheme, service name, port or None)."""
    parts = name.split(":")
    if len(parts) == 1:
        return "", parts[0], None
    if len(parts) == 2:
        return "", parts[0], parts[1] or None
    return parts[0], parts[1], parts[2] or None


# --- discovery --------------------------------------------------------------------------------------


def discovery_document(path: str, server_address: str) -> dict[str, Any]:
    """/version, /api, /apis, /apis/{group}, /api/v1 and /apis/{group}/{version}; NotFoundError otherwise."""
    major, minor, _ = SCHEMA_VERSION.split(".")
    if path == "/version":
        return {
            "major": major,
            "minor": minor,
            "gitVersion": f"v{SCHEMA_VERSION}",
            "gitCommit": "modelops-local",
            "gitTreeState": "clean",
            "buildDate": "2026-01-01T00:00:00Z",
            "goVersion": "go1.24.0",
            "compiler": "gc",
            "platform": "linux/amd64",
        }
    if path == "/api":
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
        }
    groups = sorted({rt.group for rt in RESOURCE_TYPES if rt.group})
    if path == "/apis":
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [_group(g) for g in groups]}
    if path == "/api/v1":
        return _resource_list("", "v1")
    parts = path.split("/")
    if len(parts) == 3 and parts[2] in groups:
        return {"kind": "APIGroup", "apiVersion": "v1", **_group(parts[2])}
    if len(parts) == 4 and parts[2] in groups and parts[3] == "v1":
        return _resource_list(parts[2], "v1")
    raise _not_found()


def _group(group: str) -> dict[str, Any]:
    version = {"groupVersion": f"{group}/v1", "version": "v1"}
    return {"name": group, "versions": [version], "preferredVersion": version}


def _resource_list(group: str, version: str) -> dict[str, Any]:
    resources: list[dict[str, Any]] = []
    for rt in RESOURCE_TYPES:
        if rt.group != group or rt.version != version:
            continue
        resources.append(
            {
                "name": rt.plural,
                "singularName": rt.singular,
                "namespaced": rt.namespaced,
                "kind": rt.kind,
                "verbs": ["create", "delete", "get", "list", "patch", "update"],
                "shortNames": list(rt.short_names),
            }
        )
        for sub in sorted(rt.subresources):
            entry: dict[str, Any] = {
                "name": f"{rt.plural}/{sub}",
                "singularName": "",
                "namespaced": rt.namespaced,
            }
            if sub == "scale":
                entry.update(
                    group="autoscaling", version="v1", kind="Scale", verbs=["get", "patch", "update"]
                )
            elif sub == "proxy":
                entry.update(kind="ServiceProxyOptions", verbs=["create", "delete", "get", "patch", "update"])
            else:
                entry.update(kind=rt.kind, verbs=["get", "patch", "update"])
            resources.append(entry)
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }
