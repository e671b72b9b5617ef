"""Rollout rules for Deployments, independent of any Kubernetes client.

- Image changes are RFC 6902 JSON Patches whose first op is a `test` on the container's name, so a
  patch can never retarget another container if the pod template was edited meanwhile.
- Images are pinned by digest (`repo@sha256:...`).
- Rollout status is judged the way `kubectl rollout status` judges it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from modelops.errors import KubeInvalidError, RolloutFailedError

DIGEST_RE = re.compile(r"^[^@\s]+@sha256:[0-9a-f]{64}$")
VERSION_ANNOTATION = "modelops.io/version"
RUN_ANNOTATION = "modelops.io/run"


@dataclass(frozen=True)
class RolloutStatus:
    done: bool
    message: str
    replicas: int
    updated: int
    ready: int
    available: int


def require_digest(image: str) -> str:
    """Return `image` if it is pinned by digest; KubeInvalidError otherwise."""
    if not DIGEST_RE.fullmatch(image):
        raise KubeInvalidError(f"image {image!r} is not pinned by digest (expected repo@sha256:<64 hex>)")
    return image


def find_container(deployment: dict[str, Any], name: str) -> tuple[int, dict[str, Any]]:
    """Index and body of the container called `name` in the pod template."""
    containers = deployment.get("spec", {}).get("template", {}).get("spec", {}).get("containers") or []
    for index, container in enumerate(containers):
        if container.get("name") == name:
            return index, container
    meta = deployment.get("metadata", {})
    names = [c.get("name") for c in containers]
    raise KubeInvalidError(
        f"Deployment {meta.get('namespace')}/{meta.get('name')} has no container {name!r} (containers: {names}); "
        "fix kubernetes.container in the model config"
    )


def current_image(deployment: dict[str, Any], container: str) -> str:
    return str(find_container(deployment, container)[1].get("image", ""))


def image_patch(
    deployment: dict[str, Any],
    *,
    container: str,
    image: str,
    replicas: int | None = None,
    version: str | None = None,
    run_id: str | None = None,
) -> list[dict[str, Any]]:
    """JSON Patch that sets `container`'s image (guarded by a `test` op), and optionally replicas."""
    require_digest(image)
    index, _ = find_container(deployment, container)
    base = f"/spec/template/spec/containers/{index}"
    ops: list[dict[str, Any]] = [
        {"op": "test", "path": f"{base}/name", "value": container},
        {"op": "replace", "path": f"{base}/image", "value": image},
    ]
    if replicas is not None:
        ops.append({"op": "replace", "path": "/spec/replicas", "value": replicas})
    annotations = deployment.get("spec", {}).get("template", {}).get("metadata", {}).get("annotations")
    wanted = {k: v for k, v in ((VERSION_ANNOTATION, version), (RUN_ANNOTATION, run_id)) if v is not None}
    if wanted:
        if annotations is None:
            ops.append({"op": "add", "path": "/spec/template/metadata/annotations", "value": wanted})
        else:
            for key, value in wanted.items():
                ops.append(
                    {
                        "op": "add",
                        "path": f"/spec/template/metadata/annotations/{_escape(key)}",
                        "value": value,
                    }
                )
    ops.extend(_env_version_ops(deployment, index, version))
    return ops


def _env_version_ops(deployment: dict[str, Any], index: int, version: str | None) -> list[dict[str, Any]]:
    """Keep the MODELOPS_VERSION env (the metric dimension the pods report) in step with the image."""
    if version is None:
        return []
    container = deployment["spec"]["template"]["spec"]["containers"][index]
    for env_index, env in enumerate(container.get("env") or []):
        if env.get("name") == "MODELOPS_VERSION" and "value" in env:
            path = f"/spec/template/spec/containers/{index}/env/{env_index}"
            return [
                {"op": "test", "path": f"{path}/name", "value": "MODELOPS_VERSION"},
                {"op": "replace", "path": f"{path}/value", "value": version},
            ]
    return []


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def replicas_patch(replicas: int) -> list[dict[str, Any]]:
    return [{"op": "replace", "path": "/spec/replicas", "value": replicas}]


def rollout_status(
    deployment: dict[str, Any], *, container: str, expected_image: str | None
) -> RolloutStatus:
    """Judge a Deployment's rollout like `kubectl rollout status` (RolloutFailedError when it cannot finish).

    Done when the controller has observed the latest generation, every desired replica is
    updated, no old replicas remain, and every updated replica is available. When
    `expected_image` is given, the template must carry it (someone else may have patched it).
    """
    meta = deployment.get("metadata", {})
    spec = deployment.get("spec", {})
    status = deployment.get("status") or {}
    ref = f"deployment {meta.get('namespace')}/{meta.get('name')}"
    if expected_image is not None:
        image = current_image(deployment, container)
        if image != expected_image:
            raise RolloutFailedError(
                f"{ref} runs image {image!r}, expected {expected_image!r}: changed by someone else"
            )
    desired = int(spec.get("replicas", 1))
    updated = int(status.get("updatedReplicas") or 0)
    total = int(status.get("replicas") or 0)
    ready = int(status.get("readyReplicas") or 0)
    available = int(status.get("availableReplicas") or 0)

    def result(done: bool, message: str) -> RolloutStatus:
        return RolloutStatus(done, message, total, updated, ready, available)

    if int(meta.get("generation", 0)) > int(status.get("observedGeneration", 0)):
        return result(False, f"Waiting for {ref} spec update to be observed...")
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            raise RolloutFailedError(
                f"{ref} exceeded its progress deadline: {condition.get('message', '')}".strip()
            )
    if updated < desired:
        return result(
            False,
            f"Waiting for {ref} rollout to finish: {updated} out of {desired} new replicas have been updated...",
        )
    if total > updated:
        return result(
            False,
            f"Waiting for {ref} rollout to finish: {total - updated} old replicas are pending termination...",
        )
    if available < updated:
        return result(
            False,
            f"Waiting for {ref} rollout to finish: {available} of {updated} updated replicas are available...",
        )
    return result(True, f"{ref} successfully rolled out")
