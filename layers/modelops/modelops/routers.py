"""Traffic routers: how a canary step's share of traffic is set, one interface per backend.

`router_for(config, kube, stable_replicas)` picks the model's `canary.router`:

replicas     the canary's share of ready pods behind the model's one Service (nothing to install);
             a step's percent is approximated by the canary Deployment's replica count against the
             stable's, and `Shift.reached` says which share that is (10% beside 3 stable pods: 1 of
             4 pods, 25%)
gateway_api  a Gateway API HTTPRoute whose rule has the stable and the canary Service as
             backendRefs; weights set by JSON Patch guarded by `test` ops (modelops.traffic)
alb          the AWS Load Balancer Controller's weighted target groups: an Ingress's
             `alb.ingress.kubernetes.io/actions.<name>` forward action

Each `shift` is idempotent (a repeated step patches nothing), and `reset` puts all traffic back on
the stable (rollback, and promotion once the stable carries the new version).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from modelops.config import ModelConfig
from modelops.deployments import replicas_patch
from modelops.errors import KubeConflictError, KubeInvalidError
from modelops.ports import Kube
from modelops.traffic import (
    alb_canary_share,
    alb_weight_patch,
    http_route_canary_share,
    http_route_weight_patch,
    pod_share,
    replicas_for_share,
)

_PATCH_ATTEMPTS = 3


@dataclass(frozen=True)
class Shift:
    """What one step set: the percent asked for and the canary's share actually reached."""

    router: str
    weight: int | None  # the step's percent of traffic; None: one step sized by replicas/percent
    reached: float  # the canary's percent of traffic now (pods' share for the replicas router)
    canary_pods: int | None = None
    stable_pods: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        asked = f"{self.weight}%" if self.weight is not None else "canary"
        if self.canary_pods is not None and self.stable_pods is not None:
            total = self.canary_pods + self.stable_pods
            return f"{asked} -> {self.canary_pods} of {total} pods = {self.reached:.0f}%"
        return f"{asked} -> weight {self.reached:.0f}%"


class TrafficRouter(Protocol):
    kind: str

    def canary_pods(self, step: int | None) -> int:
        """The canary Deployment's replicas for a step (DeployCanary sets the first step's)."""
        ...

    def shift(self, step: int | None) -> Shift:
        """Give the canary `step` percent of the traffic (None: the one-step canary as sized)."""
        ...

    def reset(self) -> None:
        """All traffic to the stable Service (weights 100/0); nothing for the replicas router,
        whose canary leaves the traffic when it is scaled to 0."""
        ...

    def canary_share(self) -> float:
        """The canary's percent of the traffic as the router is set now (weighted routers)."""
        ...


class ReplicasRouter:
    """Traffic splits by ready pods: a step is a canary replica count (module docstring)."""

    kind = "replicas"

    def __init__(self, config: ModelConfig, kube: Kube, stable_replicas: int) -> None:
        self.config = config
        self.kube = kube
        self.stable_replicas = stable_replicas

    def canary_pods(self, step: int | None) -> int:
        if step is None:
            return self.config.canary.canary_replicas(max(1, self.stable_replicas))
        return replicas_for_share(step, self.stable_replicas)

    def shift(self, step: int | None) -> Shift:
        k = self.config.kubernetes
        pods = self.canary_pods(step)
        canary = self.kube.get_deployment(k.namespace, k.canary_deployment)
        if int((canary.get("spec") or {}).get("replicas") or 0) != pods:
            self.kube.patch_deployment(k.namespace, k.canary_deployment, replicas_patch(pods))
        return Shift(
            self.kind,
            step,
            pod_share(pods, self.stable_replicas),
            canary_pods=pods,
            stable_pods=self.stable_replicas,
        )

    def reset(self) -> None:
        return None

    def canary_share(self) -> float:
        return 0.0  # the replicas router's canary is out of the traffic once at 0 pods


class _WeightedRouter:
    """Shared by the routers that patch one object's weights (read, build a guarded JSON Patch,
    apply; on a conflict or a failed test re-read and rebuild, bounded)."""

    kind = ""

    def __init__(self, config: ModelConfig, kube: Kube, stable_replicas: int) -> None:
        self.config = config
        self.kube = kube
        self.stable_replicas = stable_replicas
        k = config.kubernetes
        assert k.stable_service is not None  # ModelConfig._router_names
        self.stable, self.canary = k.stable_service, k.canary_service

    def canary_pods(self, step: int | None) -> int:
        return self.config.canary.canary_replicas(max(1, self.stable_replicas))

    def shift(self, step: int | None) -> Shift:
        weight = step if step is not None else (self.config.canary.traffic_steps or [0])[0]
        self._set(weight)
        return Shift(self.kind, step, float(weight))

    def reset(self) -> None:
        self._set(0)

    def canary_share(self) -> float:
        return self._share(self._get())

    def _set(self, percent: int) -> None:
        last: Exception | None = None
        for _ in range(_PATCH_ATTEMPTS):
            ops = self._ops(self._get(), percent)
            if not ops:
                return
            try:
                self._patch(ops)
                return
            except KubeConflictError as exc:
                last = exc
            except KubeInvalidError as exc:
                text = str(exc).lower()
                if "test" not in text and "rejected our request" not in text:
                    raise  # an invalid object, not a patch that no longer applies
                last = exc  # the object moved under us: re-read and rebuild the patch
        raise KubeConflictError(
            f"{self.kind} weights kept changing; gave up after {_PATCH_ATTEMPTS} tries: {last}"
        )

    # per router
    _get: Callable[[], dict[str, Any]]
    _patch: Callable[[list[dict[str, Any]]], dict[str, Any]]

    def _ops(self, obj: dict[str, Any], percent: int) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _share(self, obj: dict[str, Any]) -> float:
        raise NotImplementedError


class GatewayApiRouter(_WeightedRouter):
    kind = "gateway_api"

    def __init__(self, config: ModelConfig, kube: Kube, stable_replicas: int) -> None:
        super().__init__(config, kube, stable_replicas)
        k = config.kubernetes
        assert k.http_route is not None
        route = k.http_route
        self._get = lambda: kube.get_http_route(k.namespace, route)
        self._patch = lambda ops: kube.patch_http_route(k.namespace, route, ops)

    def _ops(self, obj: dict[str, Any], percent: int) -> list[dict[str, Any]]:
        return http_route_weight_patch(obj, stable=self.stable, canary=self.canary, canary_percent=percent)

    def _share(self, obj: dict[str, Any]) -> float:
        return http_route_canary_share(obj, stable=self.stable, canary=self.canary)


class AlbRouter(_WeightedRouter):
    kind = "alb"

    def __init__(self, config: ModelConfig, kube: Kube, stable_replicas: int) -> None:
        super().__init__(config, kube, stable_replicas)
        k = config.kubernetes
        assert k.ingress is not None and k.ingress_action is not None
        ingress, self.action = k.ingress, k.ingress_action
        self._get = lambda: kube.get_ingress(k.namespace, ingress)
        self._patch = lambda ops: kube.patch_ingress(k.namespace, ingress, ops)

    def _ops(self, obj: dict[str, Any], percent: int) -> list[dict[str, Any]]:
        return alb_weight_patch(
            obj, action=self.action, stable=self.stable, canary=self.canary, canary_percent=percent
        )

    def _share(self, obj: dict[str, Any]) -> float:
        return alb_canary_share(obj, action=self.action, stable=self.stable, canary=self.canary)


_ROUTERS: dict[str, type[ReplicasRouter] | type[GatewayApiRouter] | type[AlbRouter]] = {
    "replicas": ReplicasRouter,
    "gateway_api": GatewayApiRouter,
    "alb": AlbRouter,
}


def router_for(config: ModelConfig, kube: Kube, stable_replicas: int) -> TrafficRouter:
    """The model's `canary.router` over `kube`; `stable_replicas` is the stable Deployment's size
    recorded before the canary started. An unknown kind is refused, naming the known ones."""
    kind = config.canary.router
    if kind not in _ROUTERS:
        raise KubeInvalidError(f"unknown canary.router {kind!r}; expected one of {sorted(_ROUTERS)}")
    return _ROUTERS[kind](config, kube, stable_replicas)


def step_plan(config: ModelConfig) -> list[int | None]:
    """The canary's steps in order: its traffic percents, or [None] for the one step sized by
    replicas/percent (a model without steps)."""
    return list(config.canary.traffic_steps) or [None]
