"""The stack's own training image: built once by `modelops bootstrap`, read by ResolveRequest.

The image source is serving_image/ packed as a reproducible zip (CodeBuild's S3 source format):
the same files give the same bytes, so the same sha256 and the same image tag
`source-<sha256[:20]>` in the stack's training repository (IMMUTABLE tags). Bootstrap uploads it to
the project's source key, starts the project's build of the Dockerfile's `runtime` target at that
exact object version, follows it to a deadline and, only after it succeeded, records
`<repository>@<digest>` in the SSM parameter `/modelops/<stack>/training-image`. An image already
built from the same source is recorded without building again; one already recorded changes nothing.
"""

from __future__ import annotations

import hashlib
import io
import json
import stat
import time
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from modelops.errors import BootstrapError, TrainingImageMissingError
from modelops.ports import BuildState, ImageBuilds, ImageRepository, ObjectStore, Parameters
from modelops.script_code import regular_files

SOURCE_KEY = "source/serving_image.zip"  # the CodeBuild project's S3 source (template.yaml)
MAX_SOURCE_BYTES = 50 * 1024 * 1024
TERMINAL = frozenset({"SUCCEEDED", "FAILED", "FAULT", "STOPPED", "TIMED_OUT"})


@dataclass(frozen=True)
class SourceArchive:
    data: bytes
    sha256: str
    files: tuple[str, ...]

    @property
    def tag(self) -> str:
        return f"source-{self.sha256[:20]}"


def pack_image_source(folder: Path) -> SourceArchive:
    """serving_image/'s regular files at the root of a reproducible zip (sorted, fixed times,
    0644/0755 modes); ConfigError when the folder is missing, holds a link, is too big or lacks the
    Dockerfile and buildspec.yml."""
    files = regular_files(
        folder,
        what="image source",
        max_bytes=MAX_SOURCE_BYTES,
        hint="it should hold serving_image/ only (the Dockerfile, buildspec.yml, bin/, model_server/)",
    )
    names = tuple(name for name, _ in files)
    missing = [name for name in ("Dockerfile", "buildspec.yml") if name not in names]
    if missing:
        raise BootstrapError(
            f"image source {folder} has no {' or '.join(missing)}: pass the repository's serving_image "
            "folder (--source serving_image)"
        )
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, path in files:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = ((0o755 if path.stat().st_mode & 0o111 else 0o644) | stat.S_IFREG) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    data = raw.getvalue()
    return SourceArchive(data=data, sha256=hashlib.sha256(data).hexdigest(), files=names)


def recorded_image(parameters: Parameters, name: str) -> str | None:
    """The image bootstrap recorded in parameter `name`; None before the first bootstrap."""
    value = parameters.get(name)
    if not value:
        return None
    try:
        image = json.loads(value).get("image")
    except (ValueError, AttributeError):
        return None
    return str(image) if image else None


def default_training_image(configured: str, recorded: Callable[[], str | None], *, stack: str) -> str:
    """The stack's TrainingImage parameter when set, else the image bootstrap recorded;
    TrainingImageMissingError (saying to run `modelops bootstrap`) when neither exists."""
    if configured:
        return configured
    image = recorded()
    if not image:
        raise TrainingImageMissingError(
            f"stack {stack} has no training image yet: run `modelops --stack {stack} bootstrap` once after "
            "`sam deploy` (it builds the image in CodeBuild and records it), then start the run again; "
            "or set training.image in the model config"
        )
    return image


@dataclass(frozen=True)
class BootstrapResult:
    image: str
    built: bool  # a build ran now
    recorded: bool  # the parameter changed now


def bootstrap_training_image(
    source: SourceArchive,
    *,
    bucket: str,
    parameter: str,
    objects: ObjectStore,
    builds: ImageBuilds,
    repository: ImageRepository,
    parameters: Parameters,
    progress: Callable[[str], None],
    timeout_seconds: float,
    poll_seconds: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> BootstrapResult:
    """Build (if needed) and record the training image of `source`; see the module docstring.
    BootstrapError, with the build's log location, when the build fails or outlives the deadline:
    the parameter is then unchanged."""
    tag = source.tag
    digest = repository.digest(tag)
    if digest is not None:
        image = f"{repository.uri}@{digest}"
        if recorded_image(parameters, parameter) == image:
            progress(f"training image already built from this source ({tag}): {image}; nothing to do")
            return BootstrapResult(image=image, built=False, recorded=False)
        progress(f"training image {repository.uri}:{tag} was already built from this source")
        _record(parameters, parameter, image, source, build_id=None)
        progress(f"recorded {image} in {parameter}")
        return BootstrapResult(image=image, built=False, recorded=True)

    version = objects.put(bucket, SOURCE_KEY, source.data, content_type="application/zip")
    progress(
        f"uploaded the image source ({len(source.files)} files, {len(source.data)} bytes, sha256 "
        f"{source.sha256[:12]}) to s3://{bucket}/{SOURCE_KEY}"
    )
    build_id = builds.start(
        idempotency_token=uuid.uuid4().hex,
        variables={"IMAGE_TARGET": "runtime", "IMAGE_REPOSITORY_URI": repository.uri, "IMAGE_TAG": tag},
        source_version=version,
    )
    progress(f"building {repository.uri}:{tag} (Dockerfile target runtime) in CodeBuild: build {build_id}")
    state = _follow(build_id, builds, progress, timeout_seconds, poll_seconds, clock, sleep)
    if state.status != "SUCCEEDED":
        detail = "; ".join(state.failures) or "no phase reported a reason"
        raise BootstrapError(
            f"the training image build {build_id} ended {state.status}: {detail}. Build log: "
            f"{state.logs or 'the CodeBuild console'}. Nothing was recorded; fix the cause and run "
            "`modelops bootstrap` again"
        )
    digest = repository.digest(tag)
    if digest is None:
        raise BootstrapError(
            f"the training image build {build_id} succeeded but {repository.uri}:{tag} is not in the "
            f"repository. Build log: {state.logs or 'the CodeBuild console'}. Nothing was recorded; run "
            "`modelops bootstrap` again"
        )
    image = f"{repository.uri}@{digest}"
    _record(parameters, parameter, image, source, build_id=build_id)
    progress(f"recorded {image} in {parameter}")
    return BootstrapResult(image=image, built=True, recorded=True)


def _follow(
    build_id: str,
    builds: ImageBuilds,
    progress: Callable[[str], None],
    timeout_seconds: float,
    poll_seconds: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> BuildState:
    """Poll the build until it ends, printing each new phase; BootstrapError at the deadline."""
    deadline = clock() + timeout_seconds
    shown: list[str] = []
    last: BuildState | None = None
    while True:
        state = builds.state(build_id)
        if state is not None:
            last = state
            # every phase entered since the last poll (a fast build passes several in one interval)
            if state.phases:
                entered = list(state.phases)
            else:
                entered = shown + ([state.phase] if state.phase and shown[-1:] != [state.phase] else [])
            for phase in entered[len(shown) :]:
                progress(f"  {phase.lower().replace('_', ' ')}")
            shown = max(shown, entered, key=len)
            if state.status in TERMINAL:
                return state
        if clock() >= deadline:
            where = last.logs if last and last.logs else "the CodeBuild console"
            raise BootstrapError(
                f"the training image build {build_id} is still "
                f"{last.phase if last and last.phase else 'starting'} after {timeout_seconds:.0f} s; it goes "
                f"on in CodeBuild (log: {where}). Nothing was recorded: run `modelops bootstrap` again once "
                "it has finished (it records the image then, without building again)"
            )
        sleep(poll_seconds)


def _record(
    parameters: Parameters, name: str, image: str, source: SourceArchive, *, build_id: str | None
) -> None:
    parameters.put(
        name,
        json.dumps(
            {"image": image, "source_sha256": source.sha256, "build_id": build_id},
            sort_keys=True,
        ),
    )
