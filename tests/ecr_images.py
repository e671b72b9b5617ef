"""Images put into a (moto) ECR repository the way a push records them, for tests."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def push_image(ecr: Any, repository: str, n: int, tag: str | None) -> str:
    """Put the `n`th distinct image manifest, tagged `tag` (or untagged); its digest as ECR reports it."""
    layer = "sha256:" + hashlib.sha256(str(n).encode()).hexdigest()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer, "size": n}],
    }
    extra = {"imageTag": tag} if tag else {}
    image = ecr.put_image(repositoryName=repository, imageManifest=json.dumps(manifest), **extra)["image"]
    return str(image["imageId"]["imageDigest"])
