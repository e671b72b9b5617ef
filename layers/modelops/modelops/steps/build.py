"""StartBuild and CheckBuild: the serving image with the candidate's model, built by CodeBuild and
pinned by its ECR digest."""

from __future__ import annotations

import hashlib

from modelops.deployments import require_digest
from modelops.errors import BuildFailedError
from modelops.ports import ImageBuilds, ImageRepository
from modelops.run import Build
from modelops.triggers import safe_name


def image_tag(model: str, version: str, run_id: str) -> str:
    return safe_name(f"{model}-v{version}-{run_id[-8:]}", 128)


def start_build(
    *,
    model: str,
    version: str,
    run_id: str,
    model_artifact: str,
    builds: ImageBuilds,
    images: ImageRepository,
    baseline_artifact: str | None = None,
) -> Build:
    """Start the build of `model` `version` from its artifact (idempotent per run: CodeBuild's
    idempotency token is derived from the run). `baseline_artifact` is the model.tar.gz holding
    the version's drift baseline (EvaluateModel's `baseline.artifact`); when it is another artifact
    than the model's (the judge job's, for a team image), the build puts its baseline.json into the
    model folder (BASELINE_ARTIFACT_S3_URI), so the pods count against the baseline the monitor reads."""
    tag = image_tag(model, version, run_id)
    variables = {
        "MODEL_ARTIFACT_S3_URI": model_artifact,
        "IMAGE_REPOSITORY_URI": images.uri,
        "IMAGE_TAG": tag,
        "MODEL_NAME": model,
        "MODEL_VERSION": version,
    }
    if baseline_artifact and baseline_artifact != model_artifact:
        variables["BASELINE_ARTIFACT_S3_URI"] = baseline_artifact
    build_id = builds.start(
        idempotency_token=hashlib.sha256(f"{run_id}|build".encode()).hexdigest()[:64],
        variables=variables,
    )
    return Build(build_id=build_id, tag=tag)


def build_status(build: Build, *, builds: ImageBuilds, images: ImageRepository) -> Build:
    """The build, `done` with its image pinned by digest once it succeeded; BuildFailedError for a
    failed, stopped or timed-out build, or one that pushed no image."""
    state = builds.state(build.build_id)
    if state is None:
        raise BuildFailedError(f"build {build.build_id} not found")
    if state.status == "IN_PROGRESS":
        return build.model_copy(update={"done": False, "phase": state.phase})
    if state.status != "SUCCEEDED":
        detail = "; ".join(state.failures)
        raise BuildFailedError(
            f"image build {build.build_id} {state.status}: {detail or 'see the build logs'}"
        )
    digest = images.digest(build.tag)
    if digest is None:
        raise BuildFailedError(f"build {build.build_id} succeeded but pushed no image tagged {build.tag}")
    image = require_digest(f"{images.uri}@{digest}")
    return build.model_copy(update={"done": True, "digest": digest, "image": image})
