"""Deployments and the service proxy through the official kubernetes client, with errors mapped
to named errors that say what to do (which RBAC permission, which Deployment).

Responses are read raw (`_preload_content=False`) and returned as plain dicts: the domain rules in
modelops.deployments work on JSON-shaped objects, the same as `kubectl get -o json`.
"""

from __future__ import annotations

import json
from typing import Any

from modelops.errors import (
    KubeConflictError,
    KubeForbiddenError,
    KubeInvalidError,
    KubeNotFoundError,
    KubeUnavailableError,
)

REQUEST_TIMEOUT = (5.0, 20.0)  # connect, read seconds (the rollout function may set the read timeout)


HTTP_ROUTE = ("gateway.networking.k8s.io", "v1", "httproutes")


class KubeClient:
    """The `Kube` port over the official client: get and JSON-patch a Deployment, POST through the
    service proxy, and get and JSON-patch the weighted routers' HTTPRoute (a custom resource) or
    Ingress. `api_client` is a
    kubernetes.client.ApiClient; `request_timeout` is (connect, read) seconds per request."""

    def __init__(
        self,
        api_client: Any,
        *,
        on_unauthorized: Any = None,
        request_timeout: tuple[float, float] = REQUEST_TIMEOUT,
    ) -> None:
        from kubernetes import client as k8s

        self.apps = k8s.AppsV1Api(api_client)
        self.core = k8s.CoreV1Api(api_client)
        self.custom = k8s.CustomObjectsApi(api_client)
        self.networking = k8s.NetworkingV1Api(api_client)
        self.on_unauthorized = on_unauthorized
        self.request_timeout = request_timeout

    def get_deployment(self, namespace: str, name: str) -> dict[str, Any]:
        return self._call(
            "get",
            f"deployments.apps {namespace}/{name}",
            self.apps.read_namespaced_deployment,
            name,
            namespace,
        )

    def patch_deployment(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> dict[str, Any]:
        """Apply an RFC 6902 JSON Patch (the client sends a list body as application/json-patch+json)."""
        return self._call(
            "patch",
            f"deployments.apps {namespace}/{name}",
            self.apps.patch_namespaced_deployment,
            name,
            namespace,
            ops,
        )

    def get_http_route(self, namespace: str, name: str) -> dict[str, Any]:
        group, version, plural = HTTP_ROUTE
        return self._call(
            "get",
            f"httproutes.{group} {namespace}/{name}",
            self.custom.get_namespaced_custom_object,
            group,
            version,
            namespace,
            plural,
            name,
        )

    def patch_http_route(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> dict[str, Any]:
        """RFC 6902 JSON Patch (the custom-objects API would send merge-patch+json by default)."""
        group, version, plural = HTTP_ROUTE
        return self._call(
            "patch",
            f"httproutes.{group} {namespace}/{name}",
            self.custom.patch_namespaced_custom_object,
            group,
            version,
            namespace,
            plural,
            name,
            ops,
            _content_type="application/json-patch+json",
        )

    def get_ingress(self, namespace: str, name: str) -> dict[str, Any]:
        return self._call(
            "get",
            f"ingresses.networking.k8s.io {namespace}/{name}",
            self.networking.read_namespaced_ingress,
            name,
            namespace,
        )

    def patch_ingress(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> dict[str, Any]:
        return self._call(
            "patch",
            f"ingresses.networking.k8s.io {namespace}/{name}",
            self.networking.patch_namespaced_ingress,
            name,
            namespace,
            ops,
        )

    def service_proxy_post(
        self, namespace: str, service: str, port: int, path: str, body: Any, content_type: str
    ) -> tuple[int, str]:
        """POST through the API server's service proxy; returns (status, body). Non-2xx is returned,
        not raised, when the backend answered (the caller judges predictions).

        `body` is a JSON-serialisable object for `application/json` (the client encodes it) or a
        str for other content types (sent as is)."""
        from kubernetes.client.exceptions import ApiException

        api = self.core.api_client
        url = f"/api/v1/namespaces/{namespace}/services/{service}:{port}/proxy/{path.lstrip('/')}"
        try:
            # With _preload_content=False the client returns the raw urllib3 response.
            response = api.call_api(
                url,
                "POST",
                header_params={"Content-Type": content_type, "Accept": "application/json"},
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=self.request_timeout,
            )
            return int(response.status), response.data.decode("utf-8", "replace")
        except ApiException as exc:
            if exc.status in (401, 403):
                self._raise(exc, "create", f"services/proxy {namespace}/{service}")
            return int(exc.status or 0), (exc.body or b"").decode("utf-8", "replace") if isinstance(
                exc.body, bytes
            ) else str(exc.body or "")
        except Exception as exc:  # urllib3 timeouts, connection refused
            raise KubeUnavailableError(
                f"service proxy {namespace}/{service}: {type(exc).__name__}: {exc}"
            ) from None

    # ------------------------------------------------------------------------------------------
    def _call(self, verb: str, what: str, method: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        try:
            response = method(*args, _preload_content=False, _request_timeout=self.request_timeout, **kwargs)
            return dict(json.loads(response.data))
        except ApiException as exc:
            self._raise(exc, verb, what)
        except Exception as exc:  # urllib3 errors: timeouts, refused connections, TLS failures
            raise KubeUnavailableError(
                f"{verb} {what}: API server unreachable: {type(exc).__name__}: {exc}"
            ) from None
        raise AssertionError("unreachable")

    def _raise(self, exc: Any, verb: str, what: str) -> None:
        status = int(exc.status or 0)
        message = _status_message(exc)
        if status == 401:
            if self.on_unauthorized is not None:
                self.on_unauthorized()
            raise KubeUnavailableError(
                f"{verb} {what}: 401 Unauthorized (token rejected; will retry with a fresh token)"
            )
        if status == 403:
            raise KubeForbiddenError(
                f"{verb} {what}: 403 Forbidden: {message}. Grant the functions' role this permission "
                "(see README: EKS access entry / RBAC)"
            )
        if status == 404:
            raise KubeNotFoundError(
                f"{verb} {what}: not found ({message}); apply the model's manifests first"
            )
        if status == 409:
            raise KubeConflictError(f"{verb} {what}: 409 Conflict: {message}")
        if status in (400, 422):
            raise KubeInvalidError(f"{verb} {what}: {status} rejected: {message}")
        raise KubeUnavailableError(f"{verb} {what}: API server answered {status}: {message}")


def _status_message(exc: Any) -> str:
    body = exc.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    try:
        return str(json.loads(body).get("message") or exc.reason)
    except (TypeError, ValueError, AttributeError):
        return str(exc.reason or body or "")
