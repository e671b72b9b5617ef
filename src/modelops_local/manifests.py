"""Render the serving image's Kubernetes manifests (serving_image/k8s/*.yaml) for one model.

The templates use plain `string.Template` placeholders, so the same files work with `envsubst` on a
real cluster: ${MODEL}, ${NAMESPACE}, ${IMAGE}, ${VERSION}, ${STABLE_REPLICAS}, and the derived
${MIN_REPLICAS} and ${MAX_REPLICAS} (the HPA's floor, at least 1, and ceiling, 3x the stable size,
at least 3). Zero stable replicas is the bootstrap state before the first version: the workflow's
first promotion scales the stable up. Values are checked before substitution, so nothing a caller
passes can change the YAML's structure.
"""

from __future__ import annotations

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


class ManifestError(ValueError):
    """A value cannot be rendered into the manifests, or a template is broken."""


def render_manifests(
    model: str,
    namespace: str,
    image: str,
    version: str,
    stable_replicas: int,
    *,
    template_dir: Path = DEFAULT_TEMPLATE_DIR,
) -> list[dict[str, Any]]:
    """Every object of the templates, in file order (Namespace first), with the placeholders filled."""
    values = template_values(model, namespace, image, version, stable_replicas)
    files = sorted(template_dir.glob("*.yaml"))
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
    model: str, namespace: str, image: str, version: str, stable_replicas: int
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
    return {
        "MODEL": model,
        "NAMESPACE": namespace,
        "IMAGE": image,
        "VERSION": version,
        "STABLE_REPLICAS": str(stable_replicas),
        "MIN_REPLICAS": str(max(1, stable_replicas)),  # an HPA's floor is at least 1
        "MAX_REPLICAS": str(max(3, 3 * stable_replicas)),
    }
