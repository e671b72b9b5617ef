"""The image build (`ImageBuilds`, CodeBuild) and the serving image repository (`ImageRepository`
and, for the retention clean-up, `ImageCatalog`: ECR)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from modelops.adapters.aws import error_code
from modelops.ports import DELETE_BATCH, BuildState, DeleteFailure, StoredImage


class CodeBuildImages:
    def __init__(self, client: Any, *, project: str) -> None:
        self.client = client
        self.project = project

    def start(
        self, *, idempotency_token: str, variables: dict[str, str], source_version: str | None = None
    ) -> str:
        response = self.client.start_build(
            projectName=self.project,
            idempotencyToken=idempotency_token,
            environmentVariablesOverride=[
                {"name": name, "value": value, "type": "PLAINTEXT"} for name, value in variables.items()
            ],
            **({"sourceVersion": source_version} if source_version else {}),
        )
        return str(response["build"]["id"])

    def state(self, build_id: str) -> BuildState | None:
        builds = self.client.batch_get_builds(ids=[build_id]).get("builds", [])
        if not builds:
            return None
        build = builds[0]
        failures = tuple(
            f"{p.get('phaseType')}: {' '.join(c.get('message', '') for c in p.get('contexts', []))}".strip()
            for p in build.get("phases", [])
            if p.get("phaseStatus") not in (None, "SUCCEEDED")
        )
        return BuildState(
            status=build.get("buildStatus", ""),
            phase=build.get("currentPhase"),
            failures=failures,
            logs=_log_location(build.get("logs") or {}),
            phases=tuple(str(p.get("phaseType")) for p in build.get("phases", []) if p.get("phaseType")),
        )


def _log_location(logs: dict[str, Any]) -> str:
    """`<console link> (CloudWatch Logs group G, stream S)`, whichever parts CodeBuild reported."""
    group, stream = logs.get("groupName"), logs.get("streamName")
    where = f"CloudWatch Logs group {group}, stream {stream}" if group and stream else ""
    link = str(logs.get("deepLink") or "")
    return f"{link} ({where})" if link and where else link or where


class EcrRepository:
    def __init__(self, client: Any, *, name: str, uri: str) -> None:
        self.client = client
        self.name = name
        self._uri = uri

    @property
    def uri(self) -> str:
        return self._uri

    def digest(self, tag: str) -> str | None:
        try:
            images = self.client.describe_images(repositoryName=self.name, imageIds=[{"imageTag": tag}])
        except Exception as exc:
            if error_code(exc) == "ImageNotFoundException":
                return None
            raise
        details = images.get("imageDetails") or []
        return str(details[0]["imageDigest"]) if details else None

    def images(self) -> list[StoredImage]:
        found: list[StoredImage] = []
        request: dict[str, Any] = {"repositoryName": self.name, "maxResults": 1000}
        while True:
            response = self.client.describe_images(**request)
            for detail in response.get("imageDetails", []):
                # No push time reported: count it as just pushed (inside the grace period: kept).
                pushed = detail.get("imagePushedAt")
                found.append(
                    StoredImage(
                        digest=str(detail["imageDigest"]),
                        tags=tuple(sorted(detail.get("imageTags") or ())),
                        pushed_at=pushed if isinstance(pushed, datetime) else datetime.now(UTC),
                    )
                )
            token = response.get("nextToken")
            if not token:
                return found
            request["nextToken"] = token

    def delete(self, digests: list[str]) -> list[DeleteFailure]:
        if not digests:
            return []
        if len(digests) > DELETE_BATCH:
            raise ValueError(f"BatchDeleteImage takes at most {DELETE_BATCH} images, got {len(digests)}")
        response = self.client.batch_delete_image(
            repositoryName=self.name, imageIds=[{"imageDigest": d} for d in digests]
        )
        return [
            DeleteFailure(
                digest=str((f.get("imageId") or {}).get("imageDigest", "")),
                code=str(f.get("failureCode", "")),
                reason=str(f.get("failureReason", "")),
            )
            for f in response.get("failures", [])
        ]
