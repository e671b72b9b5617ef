"""Render the serving image's Kubernetes manifests (serving_image/k8s/*.yaml) for one model.

The templates use plain `string.Template` placeholders, so the same files work with `envsubst` on a
real cluster: ${MODEL}, ${NAMESPACE}, ${IMAGE}, ${VERSION}, ${STABLE_REPLICAS}, the derived
${MIN_REPLICAS} and ${MAX_REPLICAS} (the HPA's floor, at least 1, and ceiling, 3x the stable size,
at least 3), and ${CONTROL_PLANE_CIDR}, where the API server's service proxy connects to pods from
(the canary's NetworkPolicy admits it; locally the API server is on loopback). A weighted traffic
router adds its folder's files (ROUTER_DIRS: the stable Service, the route or Ingress and the Role
that may get and patch it by name). Zero stable replicas is the bootstrap state before the first version: the workflow's
first promotion scales the stable up. Values are checked before substitution, so nothing a caller
passes can change the YAML's structure.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from string import Template
from typing import Any

import yaml

DEFAULT_TEMPLATE_DIR = Path(__file__).resolve().parents[2] / "serving_image" / "k8s"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
# registry/repository[:tag][@sha256:digest]: no spaces, quotes or YAML syntax characters
_IMAGE = re.compile(r"^[a-z0-9][a-z0-9._\-/:]*[a-z0-9](:[\w][\w.-]{0,127})?(@sha256:[0-9a-f]{64})?$")
#: Where the local Kubernetes stand-in's API server (and so its service proxy) connects from.
LOCAL_CONTROL_PLANE_CIDR = "127.0.0.0/8"
#: canary.router -> the folder of serving_image/k8s whose files that router adds.
ROUTER_DIRS = {"replicas": None, "gateway_api": "gateway-api", "alb": "alb"}


class ManifestError(ValueError):
    """A value cannot be rendered into the manifests, or a template is broken."""


def render_manifests(
    model: str,
    namespace: str,
    image: str,
    version: str,
    stable_replicas: int,
    *,
    control_plane_cidr: str = LOCAL_CONTROL_PLANE_CIDR,
    template_dir: Path = DEFAULT_TEMPLATE_DIR,
    router: str = "replicas",
) -> list[dict[str, Any]]:
    """Every object of the templates (and the router's, for a weighted `router`), in file-name
    order (Namespace first), with the placeholders filled."""
    values = template_values(
        model, namespace, image, version, stable_replicas, control_plane_cidr=control_plane_cidr
    )
    if router not in ROUTER_DIRS:
        raise ManifestError(f"unknown router {router!r}; expected one of {sorted(ROUTER_DIRS)}")
    files = list(template_dir.glob("*.yaml"))
    folder = ROUTER_DIRS[router]
    if folder is not None:
        files += list((template_dir / folder).glob("*.yaml"))
    files.sort(key=lambda path: path.name)
    if not files:
        raise ManifestError(f"no *.yaml templates in {template_dir}")
    objects: list[dict[str, Any]] = []
    for path in files:
        try:
            text = Template(path.read_text(encoding="utf-8")).substitute(values)
        except KeyError as exc:
            raise ManifestError(f"{path.name}: unknown placeholder ${{{exc.args[0]}}}") from None
        except ValueError as exc:
            raise ManifestError(f"{path.name}: malformed placeholder: {exc}") from None
        try:
            documents = list(yaml.safe_load_all(text))
        except yaml.YAMLError as exc:
            raise ManifestError(f"{path.name} is not valid YAML after substitution: {exc}") from None
        for doc in documents:
            if doc is None:
                continue
            if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
                raise ManifestError(f"{path.name}: every document must be a Kubernetes object")
            objects.append(doc)
    return objects


def template_values(
    model: str,
    namespace: str,
    image: str,
    version: str,
    stable_replicas: int,
    *,
    control_plane_cidr: str = LOCAL_CONTROL_PLANE_CIDR,
) -> dict[str, str]:
    """The placeholder values; ManifestError names the argument that is not acceptable."""
    # "<model>-canary" must itself be a DNS label of at most 63 characters
    if not _DNS_LABEL.fullmatch(model) or len(model) > 56:
        raise ManifestError(f"model {model!r} must be a DNS label of at most 56 characters (a-z, 0-9, '-')")
    if not _DNS_LABEL.fullmatch(namespace):
        raise ManifestError(f"namespace {namespace!r} must be a DNS label (a-z, 0-9, '-', at most 63)")
    if not _IMAGE.fullmatch(image) or len(image) > 512:
        raise ManifestError(f"image {image!r} is not an image reference (registry/repo[:tag][@sha256:...])")
    if not _VERSION.fullmatch(version):
        raise ManifestError(
            f"version {version!r} must be 1-63 characters of letters, digits, '.', '_' or '-'"
        )
    if (
        isinstance(stable_replicas, bool)
        or not isinstance(stable_replicas, int)
        or not 0 <= stable_replicas <= 100
    ):
        raise ManifestError(f"stable_replicas {stable_replicas!r} must be an integer from 0 to 100")
    try:
        if not isinstance(control_plane_cidr, str):
            raise TypeError(control_plane_cidr)
        cidr = str(ipaddress.ip_network(control_plane_cidr, strict=True))
    except (TypeError, ValueError):
        raise ManifestError(
            f"control_plane_cidr {control_plane_cidr!r} must be a network in CIDR notation (10.0.0.0/16)"
        ) from None
    return {
        "MODEL": model,
        "NAMESPACE": namespace,
        "IMAGE": image,
        "VERSION": version,
        "STABLE_REPLICAS": str(stable_replicas),
        "MIN_REPLICAS": str(max(1, stable_replicas)),  # an HPA's floor is at least 1
        "MAX_REPLICAS": str(max(3, 3 * stable_replicas)),
        "CONTROL_PLANE_CIDR": cidr,
    }


def main(argv: list[str] | None = None) -> int:
    """`python -m modelops_local.manifests OUT_DIR`: the manifests rendered for an example model (the
    churn config, a digest-pinned image, a /16 control-plane range; with every router's objects),
    one file per object, for scanners that cannot read placeholders (`make template` runs checkov on them)."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/modelops-serving@sha256:" + "0" * 64
    objects: list[dict[str, Any]] = []
    for router in ROUTER_DIRS:  # the base objects once, then each weighted router's own
        for obj in render_manifests(
            "churn", "models", image, "1", 2, control_plane_cidr="10.0.0.0/16", router=router
        ):
            if all(
                (o["kind"], o["metadata"]["name"]) != (obj["kind"], obj["metadata"]["name"]) for o in objects
            ):
                objects.append(obj)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for stale in args.out_dir.glob("*.yaml"):
        stale.unlink()
    for index, obj in enumerate(objects):
        name = f"{index:02d}-{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"
        (args.out_dir / name).write_text(yaml.safe_dump(obj, sort_keys=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
