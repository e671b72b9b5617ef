"""A Kubernetes test double with behaviour, for the functions' integration tests.

It keeps Deployments as JSON (by name; one asked for in another namespace is not found, as on a
cluster), applies RFC 6902 patches (including `test`), bumps `generation` on spec changes, and
plays the Deployment controller on demand (`settle`): status catches up with the spec, so
`rollout status` logic sees what it would see on a cluster. Faults are explicit.
It stands where modelops.adapters.kube.KubeClient stands; the local runtime's API server replaces
it in the end-to-end tests.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jsonpatch
from modelops.errors import KubeForbiddenError, KubeInvalidError, KubeNotFoundError, KubeUnavailableError


def deployment(
    name: str, variant: str, image: str, replicas: int, namespace: str = "models", app: str = "churn"
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace, "generation": 1, "labels": {"app": app}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": app, "variant": variant}},
            "template": {
                "metadata": {"labels": {"app": app, "variant": variant}},
                "spec": {
                    "containers": [
                        {"name": "model", "image": image, "env": [{"name": "MODELOPS_VERSION", "value": "0"}]}
                    ]
                },
            },
        },
        "status": {
            "observedGeneration": 1,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
        },
    }


def http_route(
    name: str, stable: str, canary: str, *, namespace: str = "models", canary_weight: int = 0
) -> dict[str, Any]:
    """An HTTPRoute (GAMMA: its parent is the model's Service) splitting between two Services."""
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": namespace, "generation": 1},
        "spec": {
            "parentRefs": [{"group": "", "kind": "Service", "name": name, "port": 8080}],
            "rules": [
                {
                    "backendRefs": [
                        {"name": stable, "port": 8080, "weight": 100 - canary_weight},
                        {"name": canary, "port": 8080, "weight": canary_weight},
                    ]
                }
            ],
        },
    }


@dataclass
class PatchFault:
    """A fault on the next `times` patches of one Deployment: `before(ops)` runs before the patch
    is applied (it may raise, as an API server answering 500 or 409 does, or wait, as a server
    holding a request does); `after()` runs once it is applied (it may raise, as a client that gave
    up on its read timeout while the server went on: the patch stays applied). `fired` counts its
    hits."""

    name: str
    before: Callable[[list[dict[str, Any]]], None] | None = None
    after: Callable[[], None] | None = None
    times: int = 1
    fired: int = 0


class FakeKube:
    def __init__(self) -> None:
        self.deployments: dict[str, dict[str, Any]] = {}
        # HTTPRoutes and Ingresses by (kind, name); `route_weights` records each HTTPRoute patch's
        # result (canary weight) in order, so a test sees every step's weight.
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.route_weights: list[int] = []
        self.faults: list[tuple[str, str, Exception]] = []  # (verb, name, error) consumed in order
        self.patch_faults: list[PatchFault] = []
        self._fault_lock = threading.Lock()
        self.auto_settle = True
        self.unsettled: set[str] = set()  # Deployments whose rollout the "controller" has not finished
        self.patches: list[tuple[str, list[dict[str, Any]]]] = []
        self.calls: list[tuple[str, str, str]] = []  # (verb, namespace, name) of every Deployment call
        self.predict: Callable[[list[list[float]]], tuple[int, str]] = lambda rows: (
            200,
            json.dumps({"predictions": [0.5 for _ in rows]}),
        )

    def add(self, obj: dict[str, Any]) -> None:
        self.deployments[obj["metadata"]["name"]] = obj

    def fail_next(self, verb: str, name: str, error: Exception) -> None:
        self.faults.append((verb, name, error))

    def on_patch(
        self,
        name: str,
        *,
        before: Callable[[list[dict[str, Any]]], None] | None = None,
        after: Callable[[], None] | None = None,
        times: int = 1,
    ) -> PatchFault:
        """Arm a fault on the next `times` patches of Deployment `name` (see PatchFault)."""
        fault = PatchFault(name, before, after, times)
        with self._fault_lock:
            self.patch_faults.append(fault)
        return fault

    def _patch_fault(self, name: str) -> PatchFault | None:
        with self._fault_lock:
            for fault in self.patch_faults:
                if fault.name == name and fault.fired < fault.times:
                    fault.fired += 1
                    return fault
        return None

    def _fault(self, verb: str, name: str) -> None:
        for index, (v, n, error) in enumerate(self.faults):
            if v == verb and n in (name, "*"):
                del self.faults[index]
                raise error

    def settle(self, name: str) -> None:
        """What the Deployment controller would eventually write."""
        obj = self.deployments[name]
        replicas = obj["spec"]["replicas"]
        obj["status"] = {
            "observedGeneration": obj["metadata"]["generation"],
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
        }

    # --- the KubeClient surface ------------------------------------------------------------------
    def _find(self, verb: str, namespace: str, name: str) -> dict[str, Any]:
        self.calls.append((verb, namespace, name))
        self._fault(verb, name)
        obj = self.deployments.get(name)
        if obj is None or obj["metadata"]["namespace"] != namespace:
            raise KubeNotFoundError(f"{verb} deployments.apps {namespace}/{name}: not found")
        return obj

    def get_deployment(self, namespace: str, name: str) -> dict[str, Any]:
        self._find("get", namespace, name)
        if self.auto_settle and name not in self.unsettled:
            self.settle(name)
        return copy.deepcopy(self.deployments[name])

    def patch_deployment(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> dict[str, Any]:
        current = self._find("patch", namespace, name)
        fault = self._patch_fault(name)
        if fault is not None and fault.before is not None:
            fault.before(ops)
            current = self.deployments[name]  # as it is now: a held patch applies late
        try:
            patched = jsonpatch.apply_patch(copy.deepcopy(current), ops)
        except jsonpatch.JsonPatchTestFailed as exc:
            raise KubeInvalidError(f"patch {name}: 422 rejected: test failed: {exc}") from None
        if patched["spec"] != current["spec"]:
            patched["metadata"]["generation"] += 1
        self.deployments[name] = patched
        self.patches.append((name, ops))
        if fault is not None and fault.after is not None:
            fault.after()
        return copy.deepcopy(patched)

    def add_object(self, kind: str, obj: dict[str, Any]) -> None:
        self.objects[(kind, obj["metadata"]["name"])] = obj

    def _object(self, verb: str, kind: str, namespace: str, name: str) -> dict[str, Any]:
        self._fault(verb, name)
        obj = self.objects.get((kind, name))
        if obj is None or obj["metadata"]["namespace"] != namespace:
            raise KubeNotFoundError(f"{verb} {kind} {namespace}/{name}: not found")
        return obj

    def _patch_object(
        self, kind: str, namespace: str, name: str, ops: list[dict[str, Any]]
    ) -> dict[str, Any]:
        current = self._object("patch", kind, namespace, name)
        try:
            patched = jsonpatch.apply_patch(copy.deepcopy(current), ops)
        except jsonpatch.JsonPatchTestFailed as exc:
            raise KubeInvalidError(f"patch {name}: 422 rejected: test failed: {exc}") from None
        self.objects[(kind, name)] = patched
        self.patches.append((name, ops))
        return copy.deepcopy(patched)

    def get_http_route(self, namespace: str, name: str) -> dict[str, Any]:
        return copy.deepcopy(self._object("get", "httproutes", namespace, name))

    def patch_http_route(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> dict[str, Any]:
        patched = self._patch_object("httproutes", namespace, name, ops)
        self.route_weights.append(int(patched["spec"]["rules"][0]["backendRefs"][1]["weight"]))
        return patched

    def get_ingress(self, namespace: str, name: str) -> dict[str, Any]:
        return copy.deepcopy(self._object("get", "ingresses", namespace, name))

    def patch_ingress(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> dict[str, Any]:
        return self._patch_object("ingresses", namespace, name, ops)

    def service_proxy_post(
        self, namespace: str, service: str, port: int, path: str, body: Any, content_type: str
    ) -> tuple[int, str]:
        self._fault("proxy", service)
        return self.predict(body["instances"])


FORBIDDEN = KubeForbiddenError(
    'patch deployments.apps models/churn-stable: 403 Forbidden: deployments.apps "churn-stable" is forbidden: '
    'User "modelops" cannot patch resource "deployments" in API group "apps" in the namespace "models"'
)
UNAVAILABLE = KubeUnavailableError("get deployments.apps: API server answered 503: service unavailable")
