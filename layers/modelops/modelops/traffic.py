"""Traffic weights as JSON Patches, independent of any Kubernetes client.

- Gateway API: an HTTPRoute rule whose backendRefs name the stable and the canary Service; each
  weight is set by a `replace`/`add` guarded by a `test` op on that backendRef's name, so a patch
  can never reweigh another backend if the route was edited meanwhile.
- AWS Load Balancer Controller: the Ingress annotation `alb.ingress.kubernetes.io/actions.<name>`
  holds a forward action as JSON (`{"type": "forward", "forwardConfig": {"targetGroups":
  [{"serviceName", "servicePort", "weight"}, ...]}}`); the patch tests the annotation's whole
  current value and replaces it with the same action reweighed.

Weights are percents (stable 100 - p, canary p): both APIs weigh backends proportionally, so
percents that add up to 100 are exactly the traffic shares. Nothing here touches a selector.
"""

from __future__ import annotations

import json
from typing import Any

from modelops.errors import KubeInvalidError

ALB_ACTION_PREFIX = "alb.ingress.kubernetes.io/actions."
#: A backendRef without a weight weighs 1 (Gateway API's default).
DEFAULT_WEIGHT = 1


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _check_percent(percent: int) -> None:
    if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
        raise KubeInvalidError(f"canary weight {percent!r} must be a percent from 0 to 100")


# --- Gateway API HTTPRoute ---------------------------------------------------------------------
def _is_service_ref(ref: dict[str, Any], name: str) -> bool:
    return (
        ref.get("name") == name
        and ref.get("kind", "Service") == "Service"
        and ref.get("group", "") in ("", "core")
    )


def route_backends(route: dict[str, Any], stable: str, canary: str) -> list[tuple[int, int, int]]:
    """(rule index, stable backendRef index, canary backendRef index) of every rule whose
    backendRefs name both Services; KubeInvalidError naming the route when none does."""
    found = []
    for r, rule in enumerate((route.get("spec") or {}).get("rules") or []):
        refs = rule.get("backendRefs") or []
        s = [i for i, ref in enumerate(refs) if _is_service_ref(ref, stable)]
        c = [i for i, ref in enumerate(refs) if _is_service_ref(ref, canary)]
        if s and c:
            found.append((r, s[0], c[0]))
    if not found:
        meta = route.get("metadata") or {}
        raise KubeInvalidError(
            f"HTTPRoute {meta.get('namespace')}/{meta.get('name')} has no rule whose backendRefs name "
            f"both Services {stable!r} and {canary!r}; fix the route or kubernetes.stable_service / "
            "canary_service in the model config"
        )
    return found


def http_route_weight_patch(
    route: dict[str, Any], *, stable: str, canary: str, canary_percent: int
) -> list[dict[str, Any]]:
    """JSON Patch setting stable 100-p and canary p on every rule naming both Services, each
    weight guarded by a `test` on its backendRef's name; [] when the weights are already so."""
    _check_percent(canary_percent)
    rules = route["spec"]["rules"]
    ops: list[dict[str, Any]] = []
    for r, s, c in route_backends(route, stable, canary):
        refs = rules[r]["backendRefs"]
        for index, name, weight in ((s, stable, 100 - canary_percent), (c, canary, canary_percent)):
            if refs[index].get("weight", DEFAULT_WEIGHT) == weight:
                continue
            path = f"/spec/rules/{r}/backendRefs/{index}"
            ops.append({"op": "test", "path": f"{path}/name", "value": name})
            ops.append({"op": "add", "path": f"{path}/weight", "value": weight})
    return ops


def http_route_canary_share(route: dict[str, Any], *, stable: str, canary: str) -> float:
    """The canary's percent of the first rule naming both Services (as its weights split it)."""
    r, s, c = route_backends(route, stable, canary)[0]
    refs = route["spec"]["rules"][r]["backendRefs"]
    return _share(refs[s].get("weight", DEFAULT_WEIGHT), refs[c].get("weight", DEFAULT_WEIGHT))


def _share(stable_weight: Any, canary_weight: Any) -> float:
    total = float(stable_weight) + float(canary_weight)
    return 0.0 if total <= 0 else 100.0 * float(canary_weight) / total


# --- AWS Load Balancer Controller Ingress ----------------------------------------------------------
def _alb_action(ingress: dict[str, Any], action: str) -> tuple[str, str, dict[str, Any]]:
    """(annotation key, its raw value, the parsed action) of `actions.<action>`."""
    meta = ingress.get("metadata") or {}
    where = f"Ingress {meta.get('namespace')}/{meta.get('name')}"
    key = ALB_ACTION_PREFIX + action
    raw = (meta.get("annotations") or {}).get(key)
    if raw is None:
        raise KubeInvalidError(
            f"{where} has no annotation {key}; add the forward action (README: Traffic routers and steps)"
        )
    try:
        parsed = json.loads(raw)
    except ValueError:
        raise KubeInvalidError(f"{where}: annotation {key} is not JSON") from None
    if not isinstance(parsed, dict) or parsed.get("type") != "forward":
        raise KubeInvalidError(f"{where}: annotation {key} is not a forward action")
    return key, raw, parsed


def _target_groups(parsed: dict[str, Any], key: str, stable: str, canary: str) -> tuple[int, int]:
    groups = (parsed.get("forwardConfig") or {}).get("targetGroups") or []
    names = [g.get("serviceName") for g in groups if isinstance(g, dict)]
    if stable not in names or canary not in names:
        raise KubeInvalidError(
            f"annotation {key} forwards to {names}, not to both Services {stable!r} and {canary!r}"
        )
    return names.index(stable), names.index(canary)


def alb_weight_patch(
    ingress: dict[str, Any], *, action: str, stable: str, canary: str, canary_percent: int
) -> list[dict[str, Any]]:
    """JSON Patch reweighing the forward action's stable and canary target groups (100-p, p),
    guarded by a `test` of the annotation's current value; [] when the weights are already so."""
    _check_percent(canary_percent)
    key, raw, parsed = _alb_action(ingress, action)
    s, c = _target_groups(parsed, key, stable, canary)
    groups = parsed["forwardConfig"]["targetGroups"]
    if groups[s].get("weight") == 100 - canary_percent and groups[c].get("weight") == canary_percent:
        return []
    groups[s]["weight"], groups[c]["weight"] = 100 - canary_percent, canary_percent
    path = f"/metadata/annotations/{_escape(key)}"
    return [
        {"op": "test", "path": path, "value": raw},
        {"op": "replace", "path": path, "value": json.dumps(parsed, separators=(",", ":"))},
    ]


def alb_canary_share(ingress: dict[str, Any], *, action: str, stable: str, canary: str) -> float:
    key, _, parsed = _alb_action(ingress, action)
    s, c = _target_groups(parsed, key, stable, canary)
    groups = parsed["forwardConfig"]["targetGroups"]
    return _share(groups[s].get("weight", 0), groups[c].get("weight", 0))


# --- the replicas router ------------------------------------------------------------------------
def replicas_for_share(percent: int, stable_replicas: int) -> int:
    """Canary pods whose share of stable + canary ready pods comes nearest `percent` (at least 1,
    at most 100): 10% of traffic beside 3 stable pods is 1 pod (25%), 50% is 3 pods."""
    stable = max(1, stable_replicas)
    return min(100, max(1, round(percent * stable / (100 - percent))))


def pod_share(canary_pods: int, stable_pods: int) -> float:
    total = canary_pods + stable_pods
    return 0.0 if total <= 0 else 100.0 * canary_pods / total
