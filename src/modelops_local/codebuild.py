"""Local CodeBuild: run serving_image/buildspec.yml's steps for a StartBuild request, without Docker.

`LocalCodeBuild.start` / `batch_get` are what `MotoPatches.route_codebuild(start=, batch_get=)` hands
StartBuild and BatchGetBuilds to. A build runs on its own thread through CodeBuild's phases

    SUBMITTED QUEUED PROVISIONING DOWNLOAD_SOURCE INSTALL PRE_BUILD BUILD POST_BUILD
    UPLOAD_ARTIFACTS FINALIZING COMPLETED

and does what the buildspec does, with the pure-Python OCI builder in place of `docker build`:

- DOWNLOAD_SOURCE: the project's S3 source zip (`<bucket>/<key>`, or sourceLocationOverride),
  unzipped safely (no absolute names, `..`, links or zip bombs); buildspec.yml must be in it.
- PRE_BUILD: MODEL_ARTIFACT_S3_URI, IMAGE_REPOSITORY_URI and IMAGE_TAG are required (the
  buildspec's own messages; no model for IMAGE_TARGET=runtime, the training image), IMAGE_REPOSITORY_URI must be an ECR URI of this account ("docker
  login"), model.tar.gz is downloaded and must list metadata.json, and is extracted safely.
- BUILD: the Dockerfile's model-stage step `python -m model_server.native build <model>` (the source
  zip's own code compiles the forest to C when a compiler is there; it never fails for want of
  one), then `oci.build_image` of `oci.serving_image_spec(<source>, <model>)` into a per-build staging
  layout (the "docker daemon"), then the push: blobs into the shared layout (`layout_dir`, the
  registry's storage) and `ecr.put_image` with the manifest and its real digest. The repository must
  exist; an IMMUTABLE repository refuses an existing tag with another digest
  (ImageTagAlreadyExistsException, as ECR words it); re-pushing the same digest is a no-op.
- POST_BUILD: runs after a failed BUILD too (it then fails: "build failed; no image to report");
  otherwise ECR's digest for the tag must equal the image's, and IMAGE_DIGEST / IMAGE_URI are
  exported (`exportedEnvironmentVariables`).

Phase transitions follow CodeBuild's: a failed PROVISIONING, DOWNLOAD_SOURCE, INSTALL or PRE_BUILD
goes straight to FINALIZING; a failed BUILD still runs POST_BUILD and UPLOAD_ARTIFACTS; the failed
phase has phaseStatus FAILED and a context message naming the problem and the fix.

moto and ECR digests: moto 5.2.5's PutImage, given no `imageDigest`, reports sha256 of the
concatenated *layer* digests, not of the manifest. ECR's PutImage takes `imageDigest` (the digest of
the manifest) and moto stores it as given, so the push passes the real digest through the public
API: no moto patch (tests/unit/local/test_codebuild_ecr_digest.py guards moto's behaviour).

Image references: `resolve_image(layout_dir, "<repository-uri>@sha256:...")` (or `:<tag>`) is the
manifest digest in the shared layout; `unpack_reference` applies its layers into a root folder.

Not emulated: other buildspecs (the steps are this project's buildspec's, whatever the zip holds),
non-PLAINTEXT environment variables, artifacts other than NO_ARTIFACTS, StopBuild, CloudWatch Logs
(the log is the file `<work_dir>/<build-id>.log`; `logs` has CodeBuild's shape with placeholders).
"""

from __future__ import annotations

import contextlib
import copy
import fnmatch
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import threading
import time
import traceback
import uuid
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import yaml

from modelops_local import oci
from modelops_local.moto_patches import RouteError

log = logging.getLogger(__name__)

# The forest's C compile takes seconds (about 2 s for 100 trees of 31 leaves); a bound, not a guess.
NATIVE_BUILD_TIMEOUT_SECONDS = 600.0
PHASES = (
    "SUBMITTED",
    "QUEUED",
    "PROVISIONING",
    "DOWNLOAD_SOURCE",
    "INSTALL",
    "PRE_BUILD",
    "BUILD",
    "POST_BUILD",
    "UPLOAD_ARTIFACTS",
    "FINALIZING",
    "COMPLETED",
)
TERMINAL = frozenset({"SUCCEEDED", "FAILED", "FAULT", "TIMED_OUT", "STOPPED"})
EXPORTED_VARIABLES = ("IMAGE_DIGEST", "IMAGE_URI")
REQUIRED_VARIABLES = {
    "MODEL_ARTIFACT_S3_URI": "MODEL_ARTIFACT_S3_URI is required (s3://.../model.tar.gz)",
    "IMAGE_REPOSITORY_URI": "IMAGE_REPOSITORY_URI is required",
    "IMAGE_TAG": "IMAGE_TAG is required",
}
TARGETS = ("serving", "runtime")  # the buildspec's IMAGE_TARGET: the Dockerfile target it builds
IDEMPOTENCY_WINDOW_SECONDS = 300.0  # "The token ... is valid for 5 minutes" (StartBuild)
MAX_SOURCE_BYTES = 256 * 1024 * 1024
MAX_SOURCE_ENTRIES = 10_000
MAX_MODEL_BYTES = 512 * 1024 * 1024  # modelops.steps.evaluation.MAX_ARTIFACT_BYTES
_ECR_HOST_RE = re.compile(r"^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_ENV_TYPES = ("PLAINTEXT", "PARAMETER_STORE", "SECRETS_MANAGER")
_UNSUPPORTED_OVERRIDES = (
    "buildspecOverride",
    "secondarySourcesOverride",
    "secondaryArtifactsOverride",
    "debugSessionEnabled",
)


class AwsClients(Protocol):
    def client(self, service: str) -> Any: ...


class CodeBuildError(Exception):
    """Base of the local CodeBuild's own errors (API errors are `moto_patches.RouteError`)."""


class BuildNotFoundError(CodeBuildError, KeyError):
    """No build with this id."""


class BuildWaitTimeoutError(CodeBuildError, TimeoutError):
    """wait() ran out of time before the build finished."""


class _PhaseFailed(Exception):
    """Internal: the running phase fails with CodeBuild's context (statusCode, message)."""

    def __init__(self, status_code: str, message: str, phase_status: str = "FAILED") -> None:
        super().__init__(message)
        self.status_code, self.message, self.phase_status = status_code, message, phase_status


@dataclass
class _Build:
    id: str
    key: str  # the build id as a file name part
    request: dict[str, Any]
    project: dict[str, Any]
    env: dict[str, str]
    doc: dict[str, Any]
    source_location: str
    source_version: str | None
    deadline: float
    dir: Path
    log_path: Path
    done: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    vars: dict[str, str] = field(default_factory=dict)  # set by the phases (exported ones among them)
    succeeding: bool = True  # CODEBUILD_BUILD_SUCCEEDING
    outcome: str | None = None  # the final buildStatus once a phase failed (IN_PROGRESS until COMPLETED)
    image: oci.BuiltImage | None = None


class LocalCodeBuild:
    """StartBuild / BatchGetBuilds for CodeBuild projects whose buildspec is serving_image's."""

    def __init__(
        self,
        clients: AwsClients | None = None,
        *,
        layout_dir: Path,
        work_dir: Path,
        s3: Any = None,
        ecr: Any = None,
        codebuild: Any = None,
        on_phase: Callable[[str, str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_source_bytes: int = MAX_SOURCE_BYTES,
        max_model_bytes: int = MAX_MODEL_BYTES,
    ) -> None:
        """`clients.client("s3"|"ecr"|"codebuild")` unless the client is passed explicitly.

        `layout_dir`: the shared OCI layout pushed images land in (the registry's storage).
        `work_dir`: per-build scratch folders and the `<build-id>.log` files.
        `on_phase(build_id, phase)` is called on the build's thread as each phase starts.
        """
        self.s3 = s3 if s3 is not None else _client(clients, "s3")
        self.ecr = ecr if ecr is not None else _client(clients, "ecr")
        self.codebuild = codebuild if codebuild is not None else _client(clients, "codebuild")
        self.layout_dir = Path(layout_dir)
        self.work_dir = Path(work_dir)
        self.on_phase = on_phase
        self.clock = clock
        self.max_source_bytes = max_source_bytes
        self.max_model_bytes = max_model_bytes
        self.region = str(getattr(clients, "region", None) or _region_of(self.codebuild))
        self.account_id = str(getattr(clients, "account_id", None) or "123456789012")
        self._builds: dict[str, _Build] = {}
        self._tokens: dict[str, tuple[str, float, str]] = {}  # token -> (fingerprint, at, build id)
        self._numbers: dict[str, int] = {}
        self._lock = threading.Lock()
        self._push_lock = threading.Lock()
        self._closed = threading.Event()

    # --- API ---------------------------------------------------------------------------------
    def start(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """StartBuild: validate, look the project up, start the build thread; returns the build."""
        request = dict(request)
        project_name = request.get("projectName")
        if not isinstance(project_name, str) or not project_name:
            raise RouteError("InvalidInputException", "projectName is required")
        overrides = _env_overrides(request.get("environmentVariablesOverride"))
        for member in _UNSUPPORTED_OVERRIDES:
            if request.get(member):
                raise RouteError("InvalidInputException", f"{member} is not supported by the local CodeBuild")
        source_type = request.get("sourceTypeOverride")
        if source_type not in (None, "S3"):
            raise RouteError(
                "InvalidInputException", f"sourceTypeOverride {source_type!r}: only S3 sources build locally"
            )
        artifacts_type = (request.get("artifactsOverride") or {}).get("type", "NO_ARTIFACTS")
        if artifacts_type != "NO_ARTIFACTS":
            raise RouteError(
                "InvalidInputException",
                f"artifactsOverride type {artifacts_type!r}: only NO_ARTIFACTS builds locally",
            )
        token = request.get("idempotencyToken")
        fingerprint = _fingerprint(request)
        if isinstance(token, str) and token:
            with self._lock:
                known = self._idempotent(token, fingerprint)
            if known is not None:
                return known
        project = self._project(project_name)
        build = self._new_build(request, project, overrides)
        with self._lock:  # registered and started under the lock: shutdown() sees it or start refuses
            if self._closed.is_set():
                raise RouteError("ServiceUnavailableException", "the local CodeBuild is shut down", 503)
            if isinstance(token, str) and token:  # a concurrent twin may have won the race
                known = self._idempotent(token, fingerprint)
                if known is not None:
                    return known
                self._tokens[token] = (fingerprint, self.clock(), build.id)
            self._builds[build.id] = build
            snapshot = copy.deepcopy(build.doc)
            build.thread = threading.Thread(
                target=self._run, args=(build,), name=f"codebuild-{build.key}", daemon=True
            )
            build.thread.start()
        return snapshot

    def batch_get(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        """BatchGetBuilds: the known builds in the order asked (unknown ids are left out)."""
        with self._lock:
            seen: set[str] = set()
            found = []
            for build_id in ids:
                build = self._builds.get(build_id)
                if build is not None and build_id not in seen:
                    seen.add(build_id)
                    found.append(copy.deepcopy(build.doc))
            return found

    def get(self, build_id: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._build_locked(build_id).doc)

    def log_path(self, build_id: str) -> Path:
        with self._lock:
            return self._build_locked(build_id).log_path

    def wait(self, build_id: str, timeout: float) -> dict[str, Any]:
        """Block until the build is COMPLETED; BuildWaitTimeoutError after `timeout` seconds."""
        with self._lock:
            build = self._build_locked(build_id)
        if not build.done.wait(timeout):
            doc = self.get(build_id)
            raise BuildWaitTimeoutError(
                f"build {build_id} still {doc['buildStatus']} in {doc['currentPhase']} after {timeout}s"
            )
        return self.get(build_id)

    @property
    def closed(self) -> bool:
        """True once shutdown() was called (new builds are refused, running ones stop)."""
        return self._closed.is_set()

    def shutdown(self, timeout: float) -> None:
        """Refuse new builds, stop running ones at their next phase and join them (`timeout` s in total)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._closed.set()
            builds = list(self._builds.values())
        for build in builds:
            if build.thread is not None:
                build.thread.join(max(0.0, deadline - time.monotonic()))
        alive = [b.id for b in builds if b.thread is not None and b.thread.is_alive()]
        if alive:
            log.warning("local CodeBuild: builds still running after %.1fs: %s", timeout, ", ".join(alive))

    # --- start helpers -------------------------------------------------------------------------
    def _idempotent(self, token: str, fingerprint: str) -> dict[str, Any] | None:
        entry = self._tokens.get(token)
        if entry is None:
            return None
        known_fingerprint, at, build_id = entry
        if self.clock() - at > IDEMPOTENCY_WINDOW_SECONDS:
            del self._tokens[token]
            return None
        if known_fingerprint != fingerprint:
            raise RouteError(
                "InvalidInputException",
                f"Idempotency token {token} was used less than 5 minutes ago by a StartBuild request "
                "with different parameters (parameter mismatch); use a new token or the same request",
            )
        return copy.deepcopy(self._builds[build_id].doc)

    def _project(self, name: str) -> dict[str, Any]:
        projects = self.codebuild.batch_get_projects(names=[name]).get("projects") or []
        if not projects:
            raise RouteError(
                "ResourceNotFoundException",
                f"Project cannot be found: arn:aws:codebuild:{self.region}:{self.account_id}:project/{name}",
            )
        return dict(projects[0])

    def _new_build(
        self, request: dict[str, Any], project: dict[str, Any], overrides: list[dict[str, str]]
    ) -> _Build:
        name = str(project["name"])
        source = dict(project.get("source") or {})
        if source.get("type") != "S3" and not request.get("sourceLocationOverride"):
            raise RouteError(
                "InvalidInputException",
                f"project {name} has a {source.get('type')} source: only S3 sources build locally",
            )
        location = str(request.get("sourceLocationOverride") or source.get("location") or "")
        if request.get("sourceLocationOverride"):
            source.update(type="S3", location=location)
        arn_parts = str(project.get("arn", "")).split(":")
        partition = arn_parts[1] if len(arn_parts) > 1 and arn_parts[1] else "aws"
        region, account = _region_account(arn_parts, self.region, self.account_id)
        build_uuid = str(uuid.uuid4())
        build_id = f"{name}:{build_uuid}"
        key = build_id.replace(":", "_")
        with self._lock:
            number = self._numbers[name] = self._numbers.get(name, 0) + 1
        environment = copy.deepcopy(project.get("environment") or {})
        variables = _merge_env(environment.get("environmentVariables") or [], overrides)
        environment["environmentVariables"] = variables
        timeout_minutes = int(
            request.get("timeoutInMinutesOverride") or project.get("timeoutInMinutes") or 60
        )
        queued_minutes = int(
            request.get("queuedTimeoutInMinutesOverride") or project.get("queuedTimeoutInMinutes") or 480
        )
        logs_config = (project.get("logsConfig") or {}).get("cloudWatchLogs") or {}
        group = str(logs_config.get("groupName") or f"/aws/codebuild/{name}")
        now = _now()
        source_version = request.get("sourceVersion") or project.get("sourceVersion")
        doc: dict[str, Any] = {
            "id": build_id,
            "arn": f"arn:{partition}:codebuild:{region}:{account}:build/{build_id}",
            "buildNumber": number,
            "startTime": now,
            "currentPhase": "QUEUED",
            "buildStatus": "IN_PROGRESS",
            "projectName": name,
            "phases": [
                {
                    "phaseType": "SUBMITTED",
                    "phaseStatus": "SUCCEEDED",
                    "startTime": now,
                    "endTime": now,
                    "durationInSeconds": 0,
                },
                {"phaseType": "QUEUED", "startTime": now},
            ],
            "source": source,
            "secondarySources": [],
            "secondarySourceVersions": [],
            "artifacts": {"location": ""},
            "secondaryArtifacts": [],
            "cache": project.get("cache") or {"type": "NO_CACHE"},
            "environment": environment,
            "serviceRole": project.get("serviceRole", ""),
            "logs": {
                "groupName": group,
                "streamName": build_uuid,
                "deepLink": (
                    f"https://console.aws.amazon.com/cloudwatch/home?region={region}#logsV2:log-groups"
                    f"/log-group/{group.replace('/', '$252F')}/log-events/{build_uuid}"
                ),
                "cloudWatchLogsArn": f"arn:{partition}:logs:{region}:{account}:log-group:{group}:log-stream:{build_uuid}",
                "cloudWatchLogs": {"status": "ENABLED", "groupName": group, "streamName": build_uuid},
                "s3Logs": {"status": "DISABLED", "encryptionDisabled": False},
            },
            "timeoutInMinutes": timeout_minutes,
            "queuedTimeoutInMinutes": queued_minutes,
            "buildComplete": False,
            "initiator": "modelops-local",
            "encryptionKey": project.get(
                "encryptionKey", f"arn:{partition}:kms:{region}:{account}:alias/aws/s3"
            ),
        }
        if source_version:
            doc["sourceVersion"] = source_version
        return _Build(
            id=build_id,
            key=key,
            request=request,
            project=project,
            env={v["name"]: v["value"] for v in variables},
            doc=doc,
            source_location=location,
            source_version=str(source_version) if source_version else None,
            deadline=self.clock() + timeout_minutes * 60,
            dir=self.work_dir / key,
            log_path=self.work_dir / f"{build_id}.log",
        )

    # --- worker --------------------------------------------------------------------------------
    def _run(self, build: _Build) -> None:
        try:
            build.dir.mkdir(parents=True, exist_ok=True)
            self._log(build, f"Build {build.id} (#{build.doc['buildNumber']}) started")
            self._end_phase(build, "QUEUED", "SUCCEEDED")
            outcome = "SUCCEEDED"
            for phase, step in (
                ("PROVISIONING", self._provision),
                ("DOWNLOAD_SOURCE", self._download_source),
                ("INSTALL", self._install),
                ("PRE_BUILD", self._pre_build),
            ):
                outcome = self._phase(build, phase, step)
                if outcome != "SUCCEEDED":
                    break  # CodeBuild goes from a failed setup phase or PRE_BUILD to FINALIZING
            if outcome == "SUCCEEDED":
                # a failed BUILD still runs POST_BUILD and UPLOAD_ARTIFACTS; a stop or timeout does not
                for phase, step in (
                    ("BUILD", self._build),
                    ("POST_BUILD", self._post_build),
                    ("UPLOAD_ARTIFACTS", self._upload_artifacts),
                ):
                    if self._phase(build, phase, step) in ("TIMED_OUT", "STOPPED"):
                        break
            self._phase(build, "FINALIZING", self._finalize, final=True)
            self._complete(build)
        except Exception as exc:  # the build must reach COMPLETED whatever happens
            log.exception("local CodeBuild %s: internal error", build.id)
            self._log(build, f"internal error: {type(exc).__name__}: {exc}")
            with self._lock:
                build.outcome = build.outcome or "FAULT"
            self._complete(build)
        finally:
            build.done.set()

    def _phase(
        self, build: _Build, phase: str, step: Callable[[_Build], None], *, final: bool = False
    ) -> str:
        """Run one phase; returns its phaseStatus (anything but SUCCEEDED fails the build)."""
        now = _now()
        with self._lock:
            build.doc["currentPhase"] = phase
            build.doc["phases"].append({"phaseType": phase, "startTime": now})
        self._log(build, f"Entering phase {phase}")
        self._notify_phase(build, phase)
        try:
            if not final:
                self._check_interrupted(build)
            step(build)
        except _PhaseFailed as failed:
            self._log(build, f"Phase context status code: {failed.status_code} Message: {failed.message}")
            self._end_phase(build, phase, failed.phase_status, failed.status_code, failed.message)
            with self._lock:
                build.succeeding = False
                if build.outcome is None:
                    build.outcome = failed.phase_status  # FAILED, TIMED_OUT or STOPPED
            return failed.phase_status
        except Exception as exc:
            self._log(build, "".join(traceback.format_exception(exc)).rstrip())
            message = f"{type(exc).__name__}: {exc} (an error of the local CodeBuild; see {build.log_path})"
            self._end_phase(build, phase, "FAULT", "INTERNAL_ERROR", message)
            with self._lock:
                build.succeeding = False
                if build.outcome is None:
                    build.outcome = "FAULT"
            return "FAULT"
        self._end_phase(build, phase, "SUCCEEDED")
        return "SUCCEEDED"

    def _end_phase(
        self, build: _Build, phase: str, status: str, code: str | None = None, message: str | None = None
    ) -> None:
        now = _now()
        with self._lock:
            entry = next(p for p in reversed(build.doc["phases"]) if p["phaseType"] == phase)
            entry.update(
                phaseStatus=status,
                endTime=now,
                durationInSeconds=max(0, round((now - entry["startTime"]).total_seconds())),
            )
            if message is not None:
                entry["contexts"] = [{"statusCode": code or "", "message": message}]
        self._log(build, f"Phase complete: {phase} State: {status}")

    def _complete(self, build: _Build) -> None:
        now = _now()
        with self._lock:
            doc = build.doc
            doc["buildStatus"] = build.outcome or ("SUCCEEDED" if build.succeeding else "FAILED")
            doc["phases"].append({"phaseType": "COMPLETED", "startTime": now})
            doc["currentPhase"] = "COMPLETED"
            doc["endTime"] = now
            doc["buildComplete"] = True
            exported = [{"name": n, "value": build.vars[n]} for n in EXPORTED_VARIABLES if n in build.vars]
            if exported:
                doc["exportedEnvironmentVariables"] = exported
            status = doc["buildStatus"]
        self._log(build, f"Build {build.id} {status}")
        with contextlib.suppress(OSError):
            shutil.rmtree(build.dir)  # the staging layout and downloads; pushed blobs are in layout_dir

    def _check_interrupted(self, build: _Build) -> None:
        if self._closed.is_set():
            raise _PhaseFailed("BUILD_STOPPED", "Build stopped: the local CodeBuild shut down", "STOPPED")
        if self.clock() > build.deadline:
            raise _PhaseFailed(
                "BUILD_TIMED_OUT",
                f"Build has timed out after {build.doc['timeoutInMinutes']} minutes "
                "(timeoutInMinutes of the project or timeoutInMinutesOverride)",
                "TIMED_OUT",
            )

    # --- phases --------------------------------------------------------------------------------
    def _provision(self, build: _Build) -> None:
        for variable in build.doc["environment"]["environmentVariables"]:
            if variable.get("type", "PLAINTEXT") != "PLAINTEXT":
                raise _PhaseFailed(
                    "CLIENT_ERROR",
                    f"environment variable {variable['name']} is of type {variable['type']}: the local "
                    "CodeBuild resolves only PLAINTEXT variables; pass the value as PLAINTEXT",
                )
        self._log(build, f"Waiting for agent ping; build environment {build.doc['environment'].get('image')}")

    def _fetch(
        self,
        bucket: str,
        key: str,
        dest: Path,
        *,
        limit: int,
        kind: str,
        too_big: Callable[[int], str],
        failed: Callable[[str, str], str],
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """Copy s3://bucket/key to `dest`; _PhaseFailed(kind) with `too_big(size)` past `limit` bytes or
        `failed(code, message)` when S3 refuses."""
        try:
            response = self.s3.get_object(Bucket=bucket, Key=key, **(extra or {}))
            size = int(response.get("ContentLength") or 0)
            if size > limit:
                raise _PhaseFailed(kind, too_big(size))
            with dest.open("wb") as out:
                shutil.copyfileobj(response["Body"], out)
        except _PhaseFailed:
            raise
        except Exception as exc:
            raise _PhaseFailed(kind, failed(*_error(exc))) from None

    def _download_source(self, build: _Build) -> None:
        bucket, key = _source_bucket_key(build.source_location)
        where = f"arn:aws:s3:::{bucket}/{key}" if bucket else build.source_location
        if not bucket or not key:
            raise _PhaseFailed(
                "CLIENT_ERROR",
                f"invalid S3 source location {build.source_location!r} for primary source: "
                "use <bucket>/<key> of the zipped serving_image folder",
            )
        extra = {"VersionId": build.source_version} if build.source_version else {}
        archive = build.dir / "source.zip"
        self._fetch(
            bucket,
            key,
            archive,
            limit=self.max_source_bytes,
            kind="CLIENT_ERROR",
            too_big=lambda size: (
                f"source {where} is {size} bytes; at most {self.max_source_bytes} build locally"
            ),
            failed=lambda code, message: (
                f"{code}: {message} for primary source and source version {where}. Upload the zipped "
                f"serving_image folder there (modelops_local.codebuild.package_source) or fix the project's "
                "source location"
            ),
            extra=extra,
        )
        source_dir = build.dir / "src"
        try:
            safe_unzip(archive, source_dir, max_bytes=self.max_source_bytes)
        except (UnsafeArchiveError, zipfile.BadZipFile) as exc:
            raise _PhaseFailed("CLIENT_ERROR", f"source {where}: {exc}") from None
        buildspec_name = str(build.doc["source"].get("buildspec") or "buildspec.yml")
        if "\n" in buildspec_name:  # an inline buildspec in the project
            text, buildspec_name = buildspec_name, "the project's inline buildspec"
        else:
            buildspec = source_dir / buildspec_name
            if not buildspec.resolve().is_relative_to(source_dir.resolve()) or not buildspec.is_file():
                raise _PhaseFailed(
                    "YAML_FILE_ERROR",
                    f"stat {buildspec_name}: no such file or directory in source {where}: the zip must hold "
                    "serving_image/'s files at its root, buildspec.yml among them",
                )
            text = buildspec.read_bytes().decode("utf-8", errors="replace")
        try:
            spec = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise _PhaseFailed("YAML_FILE_ERROR", f"{buildspec_name} is not valid YAML: {exc}") from None
        if not isinstance(spec, dict) or str(spec.get("version")) not in ("0.1", "0.2"):
            raise _PhaseFailed(
                "YAML_FILE_ERROR", f"{buildspec_name}: version must be 0.1 or 0.2 (got {spec!r:.80})"
            )
        build.vars["CODEBUILD_SRC_DIR"] = str(source_dir)
        self._log(build, f"CODEBUILD_SRC_DIR={source_dir} (from {where})")

    def _install(self, build: _Build) -> None:
        self._log(build, "No install phase in the buildspec; runtime: the host's Python")

    def _pre_build(self, build: _Build) -> None:
        env = build.env
        target = env.get("IMAGE_TARGET") or "serving"
        if target not in TARGETS:
            raise _PhaseFailed(
                "COMMAND_EXECUTION_ERROR",
                f"IMAGE_TARGET must be serving or runtime, not {target}",
            )
        build.vars["IMAGE_TARGET"] = target
        for name, message in REQUIRED_VARIABLES.items():
            if target == "runtime" and name == "MODEL_ARTIFACT_S3_URI":
                continue  # the training image has no model
            if not env.get(name):
                raise _PhaseFailed(
                    "COMMAND_EXECUTION_ERROR",
                    f'Error while executing command: : "${{{name}:?{message}}}". Reason: exit status 1 '
                    f"({message}: pass it in environmentVariablesOverride or the project's environment)",
                )
        repository_uri = env["IMAGE_REPOSITORY_URI"]
        registry, _, repository_name = repository_uri.partition("/")
        match = _ECR_HOST_RE.match(registry)
        if not repository_name or match is None:
            raise _PhaseFailed(
                "COMMAND_EXECUTION_ERROR",
                f"docker login to {registry!r} failed: IMAGE_REPOSITORY_URI {repository_uri!r} must be an ECR "
                "repository URI <account>.dkr.ecr.<region>.amazonaws.com/<name> (the repository's RepositoryUri)",
            )
        account = _region_account(str(build.project.get("arn", "")).split(":"), self.region, self.account_id)[
            1
        ]
        if match.group(1) != account:
            raise _PhaseFailed(
                "COMMAND_EXECUTION_ERROR",
                f"docker login to {registry} failed: the registry belongs to account {match.group(1)}, the "
                f"build runs in {account}; use this account's repository URI",
            )
        build.vars.update(REGISTRY=registry, REPOSITORY_NAME=repository_name)
        self._log(build, f"Login Succeeded ({registry})")
        if target == "runtime":
            return
        uri = env["MODEL_ARTIFACT_S3_URI"]
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        if not uri.startswith("s3://") or not bucket or not key:
            raise _PhaseFailed(
                "COMMAND_EXECUTION_ERROR",
                f"aws s3 cp {uri} model.tar.gz failed: MODEL_ARTIFACT_S3_URI must be s3://<bucket>/<key>",
            )
        archive = build.dir / "model.tar.gz"
        self._fetch(
            bucket,
            key,
            archive,
            limit=self.max_model_bytes,
            kind="COMMAND_EXECUTION_ERROR",
            too_big=lambda size: (
                f"model artifact {uri} is {size} bytes; at most {self.max_model_bytes} build locally"
            ),
            failed=lambda code, message: (
                f"aws s3 cp {uri} model.tar.gz failed: {code}: {message}. Check that MODEL_ARTIFACT_S3_URI "
                "names the training job's output/model.tar.gz and that it exists"
            ),
        )
        self._log(build, f"downloaded {uri} ({archive.stat().st_size} bytes)")
        model_dir = build.dir / "model"
        try:
            extract_model(archive, model_dir, max_bytes=self.max_model_bytes)
        except (UnsafeArchiveError, tarfile.TarError, EOFError, OSError) as exc:
            raise _PhaseFailed("COMMAND_EXECUTION_ERROR", f"model.tar.gz from {uri}: {exc}") from None
        build.vars["MODEL_DIR"] = str(model_dir)

    def _build(self, build: _Build) -> None:
        env, source_dir = build.env, Path(build.vars["CODEBUILD_SRC_DIR"])
        repository_uri, tag = env["IMAGE_REPOSITORY_URI"], env["IMAGE_TAG"]
        for folder in ("bin", "model_server"):
            if not (source_dir / folder).is_dir():
                raise _PhaseFailed(
                    "COMMAND_EXECUTION_ERROR",
                    f'docker build failed: COPY {folder}: "/{folder}" not found in the source zip; the zip '
                    "must hold serving_image/'s files at its root",
                )
        for program in (source_dir / "bin").iterdir():  # COPY --chmod=0755 bin/train bin/serve
            if program.is_file() and not program.is_symlink():
                program.chmod(0o755)
        if build.vars["IMAGE_TARGET"] == "runtime":  # docker build --target runtime: no model, no labels
            layers, config = oci.serving_image_spec(source_dir, None)
        else:
            labels = {
                "org.opencontainers.image.title": "modelops serving image",
                "io.modelops.model": env.get("MODEL_NAME", ""),
                "io.modelops.version": env.get("MODEL_VERSION", ""),
            }
            model_dir = Path(build.vars["MODEL_DIR"])
            self._native_predictor(build, source_dir, model_dir)
            packages = self._code_requirements(build, source_dir, model_dir)
            layers, config = oci.serving_image_spec(source_dir, model_dir, labels=labels, packages=packages)
        staging = build.dir / "image"
        try:
            image = oci.build_image(staging, repository_uri, tag, layers, config)
        except oci.OciError as exc:
            raise _PhaseFailed(
                "COMMAND_EXECUTION_ERROR", f"docker build --tag {repository_uri}:{tag} failed: {exc}"
            ) from None
        self._log(build, f"built {repository_uri}:{tag} {image.digest} ({len(image.layers)} layers)")
        self._push(build, staging, image)
        build.image = image

    def _native_predictor(self, build: _Build, source_dir: Path, model_dir: Path) -> None:
        """The Dockerfile's `RUN python -m model_server.native build /model` (model stage): the
        source zip's own code compiles the forest into the model folder, or says why not."""
        self._model_server(build, source_dir, "native build /model", ["native", "build", str(model_dir)])

    def _code_requirements(self, build: _Build, source_dir: Path, model_dir: Path) -> Path | None:
        """The serving stage's `RUN python -m model_server.code_requirements install /tmp/model/code
        /opt/program`: the model's code/requirements.txt under the image's pins,
        into the folder that becomes the venv's site-packages layer (None: nothing installed)."""
        venv = build.dir / "venv"  # the image's /opt/venv: what the host's environment lacks lands here
        self._model_server(
            build,
            source_dir,
            "code_requirements install /tmp/model/code /opt/program",
            [
                "code_requirements",
                "install",
                str(model_dir / "code"),
                str(source_dir),
                "--prefix",
                str(venv),
            ],
        )
        packages = venv / oci.site_packages().removeprefix("/opt/venv/")
        return packages if packages.is_dir() and any(packages.iterdir()) else None

    def _model_server(self, build: _Build, source_dir: Path, what: str, args: list[str]) -> None:
        """`RUN python -m model_server.<what>` with the source zip's own code; its output goes to the log."""
        try:
            done = subprocess.run(
                [sys.executable, "-m", f"model_server.{args[0]}", *args[1:]],
                cwd=source_dir,
                env={**os.environ, "PYTHONPATH": str(source_dir)},
                capture_output=True,
                text=True,
                timeout=NATIVE_BUILD_TIMEOUT_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise _PhaseFailed(
                "COMMAND_EXECUTION_ERROR",
                f"docker build failed: RUN python -m model_server.{what} took longer than "
                f"{NATIVE_BUILD_TIMEOUT_SECONDS:.0f}s",
            ) from None
        for line in (done.stdout + done.stderr).splitlines():
            self._log(build, line)
        if done.returncode != 0:
            raise _PhaseFailed(
                "COMMAND_EXECUTION_ERROR",
                f"docker build failed: RUN python -m model_server.{what} exited {done.returncode}: "
                f"{done.stderr.strip()[-500:]}",
            )

    def _push(self, build: _Build, staging: Path, image: oci.BuiltImage) -> None:
        # One push at a time: the tag check and PutImage are atomic in ECR, not in moto.
        with self._push_lock:
            self._push_locked(build, staging, image)

    def _push_locked(self, build: _Build, staging: Path, image: oci.BuiltImage) -> None:
        name = build.vars["REPOSITORY_NAME"]
        where = f"docker push {image.repository}:{image.tag} failed"
        try:
            repository = self.ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
        except Exception as exc:
            code, message = _error(exc)
            raise _PhaseFailed(
                "COMMAND_EXECUTION_ERROR",
                f"{where}: name unknown: {message} ({code}). Create the repository (template.yaml "
                "ServingImageRepository) or fix IMAGE_REPOSITORY_URI",
            ) from None
        existing = self._ecr_digest(name, image.tag)
        if existing == image.digest:
            self._log(build, f"{image.tag}: digest {image.digest} already in {name}; nothing to push")
        else:
            if existing is not None and _tag_immutable(repository, image.tag):
                raise _PhaseFailed(
                    "COMMAND_EXECUTION_ERROR",
                    f"{where}: ImageTagAlreadyExistsException: The image tag '{image.tag}' already exists in "
                    f"the '{name}' repository and cannot be overwritten because the repository is immutable. "
                    f"It points at {existing}, this build made {image.digest}: use a new IMAGE_TAG",
                )
            for digest in (*(layer.digest for layer in image.layers), image.config_digest, image.digest):
                oci.write_blob(self.layout_dir, oci.read_blob(staging, digest))
            try:
                self.ecr.put_image(
                    repositoryName=name,
                    imageTag=image.tag,
                    imageManifest=image.manifest_bytes.decode("utf-8"),
                    imageManifestMediaType=oci.MEDIA_MANIFEST,
                    imageDigest=image.digest,
                )
            except Exception as exc:
                code, message = _error(exc)
                # a concurrent build pushed the same image under this tag first: the push is done
                if code != "ImageAlreadyExistsException" or self._ecr_digest(name, image.tag) != image.digest:
                    raise _PhaseFailed("COMMAND_EXECUTION_ERROR", f"{where}: {code}: {message}") from None
        oci.init_layout(self.layout_dir)
        oci.tag_image(  # the tag in the shared layout, as the registry now holds it
            self.layout_dir,
            oci.Descriptor(oci.MEDIA_MANIFEST, image.digest, image.size),
            image.repository,
            image.tag,
        )
        self._log(build, f"{image.tag}: digest: {image.digest} size: {image.size}")

    def _post_build(self, build: _Build) -> None:
        if not build.succeeding or build.image is None:
            raise _PhaseFailed(
                "COMMAND_EXECUTION_ERROR",
                "build failed; no image to report (POST_BUILD runs after a failed BUILD: see that phase)",
            )
        image = build.image
        try:
            ecr_digest = self._ecr_digest(build.vars["REPOSITORY_NAME"], image.tag)
        except Exception as exc:
            code, message = _error(exc)
            raise _PhaseFailed(
                "COMMAND_EXECUTION_ERROR", f"aws ecr describe-images failed: {code}: {message}"
            ) from None
        if ecr_digest != image.digest:
            raise _PhaseFailed(
                "COMMAND_EXECUTION_ERROR", f"digest mismatch: docker {image.digest}, ECR {ecr_digest}"
            )
        if not _DIGEST_RE.match(image.digest):
            raise _PhaseFailed("COMMAND_EXECUTION_ERROR", f"unexpected digest {image.digest}")
        build.vars.update(IMAGE_DIGEST=image.digest, IMAGE_URI=f"{image.repository}@{image.digest}")
        self._log(build, f"pushed {build.vars['IMAGE_URI']}")

    def _upload_artifacts(self, build: _Build) -> None:
        self._log(build, "Artifacts: NO_ARTIFACTS; nothing to upload")

    def _finalize(self, build: _Build) -> None:
        self._log(
            build, "Exporting variables: " + ", ".join(n for n in EXPORTED_VARIABLES if n in build.vars)
        )

    # --- helpers -------------------------------------------------------------------------------
    def _ecr_digest(self, repository_name: str, tag: str) -> str | None:
        try:
            details = self.ecr.describe_images(repositoryName=repository_name, imageIds=[{"imageTag": tag}])
        except Exception as exc:
            if _error(exc)[0] == "ImageNotFoundException":
                return None
            raise
        images = details.get("imageDetails") or []
        return str(images[0]["imageDigest"]) if images else None

    def _notify_phase(self, build: _Build, phase: str) -> None:
        if self.on_phase is None:
            return
        try:
            self.on_phase(build.id, phase)
        except Exception:  # a broken listener must not wedge the build
            log.exception("local CodeBuild %s: on_phase callback failed", build.id)

    def _log(self, build: _Build, message: str) -> None:
        stamp = datetime.now(UTC).strftime("%Y/%m/%d %H:%M:%S.%f")[:-3]
        with contextlib.suppress(OSError):
            build.log_path.parent.mkdir(parents=True, exist_ok=True)
            with build.log_path.open("a", encoding="utf-8") as handle:
                for line in message.splitlines() or [""]:
                    handle.write(f"[Container] {stamp} {line}\n")

    def _build_locked(self, build_id: str) -> _Build:
        try:
            return self._builds[build_id]
        except KeyError:
            raise BuildNotFoundError(f"build {build_id} not found") from None


# --- image references ----------------------------------------------------------------------------
def parse_reference(reference: str) -> tuple[str, str | None, str | None]:
    """`repo@sha256:...` / `repo:tag` / `sha256:...` -> (repository, tag, digest)."""
    if _DIGEST_RE.match(reference):
        return "", None, reference
    name, at, digest = reference.partition("@")
    if at:
        if not _DIGEST_RE.match(digest):
            raise oci.OciError(f"image reference {reference!r}: digest must be sha256:<64 lowercase hex>")
        return name, None, digest
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1 :], None
    raise oci.OciError(f"image reference {reference!r} names neither a tag nor a digest")


def resolve_image(layout_dir: Path, reference: str) -> str:
    """The manifest digest `reference` names in the shared OCI layout (what pushes write).

    `<repository-uri>@sha256:...`: the manifest blob must exist and be an image manifest; when
    index.json tags that digest, one of its entries must be for `<repository-uri>`.
    `<repository-uri>:<tag>`: index.json's entry for that repository and tag.
    """
    layout_dir = Path(layout_dir)
    repository, tag, digest = parse_reference(reference)
    if digest is None:
        assert tag is not None
        return oci.resolve_tag(layout_dir, tag, repository)
    oci.read_manifest(layout_dir, digest)  # present, digest-verified, a manifest
    entries = [e for e in oci.read_index(layout_dir).get("manifests", []) if e.get("digest") == digest]
    repositories = {(e.get("annotations") or {}).get(oci.REPOSITORY_ANNOTATION) for e in entries}
    if repository and entries and repository not in repositories:
        raise oci.OciError(
            f"image {digest} was pushed to {sorted(r for r in repositories if r)}, not to {repository}"
        )
    return digest


def unpack_reference(layout_dir: Path, reference: str, dest: Path) -> Path:
    """`oci.unpack_image` of the image `reference` names; returns `dest` (the root folder)."""
    return oci.unpack_image(Path(layout_dir), resolve_image(layout_dir, reference), dest)


# --- archives ------------------------------------------------------------------------------------
class UnsafeArchiveError(Exception):
    """An archive entry would land outside its folder, is a link or a device, or the archive is too big."""


def package_source(serving_image_dir: Path) -> bytes:
    """The zip CodeBuild's S3 source expects: serving_image/'s files at the root (no caches);
    deterministic, executable bits kept. The same bytes `modelops bootstrap` uploads."""
    from modelops.training_image import pack_image_source

    return pack_image_source(Path(serving_image_dir)).data


def safe_unzip(archive: Path, dest: Path, *, max_bytes: int = MAX_SOURCE_BYTES) -> None:
    """Extract regular files and folders only; absolute names, `..`, links and oversized zips raise."""
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        if len(infos) > MAX_SOURCE_ENTRIES:
            raise UnsafeArchiveError(f"zip has {len(infos)} entries; at most {MAX_SOURCE_ENTRIES}")
        if sum(i.file_size for i in infos) > max_bytes:
            raise UnsafeArchiveError(f"zip unpacks to more than {max_bytes} bytes")
        written = 0
        for info in infos:
            name = info.filename.replace("\\", "/")
            parts = [p for p in PurePosixPath(name).parts if p not in ("", ".")]
            if name.startswith("/") or (parts and (":" in parts[0] or parts[0] == "/")) or ".." in parts:
                raise UnsafeArchiveError(
                    f"zip entry {info.filename!r} would be written outside the source folder"
                )
            if not parts:
                continue
            mode = info.external_attr >> 16
            if mode and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise UnsafeArchiveError(f"zip entry {info.filename!r} is not a regular file or folder")
            target = root.joinpath(*parts)
            if not target.resolve().is_relative_to(root):
                raise UnsafeArchiveError(f"zip entry {info.filename!r} resolves outside the source folder")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as source, target.open("wb") as out:
                while chunk := source.read(1 << 20):
                    written += len(chunk)
                    if written > max_bytes:
                        raise UnsafeArchiveError(f"zip unpacks to more than {max_bytes} bytes")
                    out.write(chunk)
            target.chmod(0o755 if mode & 0o111 else 0o644)


def extract_model(archive: Path, dest: Path, *, max_bytes: int = MAX_MODEL_BYTES) -> None:
    """The buildspec's metadata.json check, then the Dockerfile's extraction (no absolute names,
    no `..`, no links out of `dest`, no ownership or special modes: tarfile's `data` filter)."""
    with tarfile.open(archive, "r:gz") as tar:
        members = tar.getmembers()
        names = {m.name for m in members if m.isfile()}
        if not names & {"metadata.json", "./metadata.json"}:
            raise UnsafeArchiveError(
                "model.tar.gz has no metadata.json (the model_server's train writes it to model/; "
                "package the model folder's contents at the archive root)"
            )
        total = sum(m.size for m in members if m.isfile())
        if total > max_bytes:
            raise UnsafeArchiveError(f"model.tar.gz unpacks to {total} bytes; at most {max_bytes}")
        dest.mkdir(parents=True, exist_ok=True)
        try:
            tar.extractall(dest, filter="data")
        except tarfile.FilterError as exc:
            raise UnsafeArchiveError(f"model.tar.gz entry refused: {exc}") from None
    if not (dest / "metadata.json").is_file():
        raise UnsafeArchiveError("model.tar.gz: metadata.json is not a regular file after extraction")


# --- small helpers -------------------------------------------------------------------------------
def _client(clients: AwsClients | None, service: str) -> Any:
    if clients is None:
        raise TypeError(f"LocalCodeBuild needs `clients` or an explicit {service} client")
    return clients.client(service)


def _env_overrides(raw: Any) -> list[dict[str, str]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise RouteError("InvalidInputException", "environmentVariablesOverride must be a list")
    result = []
    for i, item in enumerate(raw):
        name = item.get("name") if isinstance(item, dict) else None
        value = item.get("value") if isinstance(item, dict) else None
        kind = (item.get("type") if isinstance(item, dict) else None) or "PLAINTEXT"
        if not isinstance(name, str) or not name or not isinstance(value, str):
            raise RouteError(
                "InvalidInputException",
                f"environmentVariablesOverride[{i}] needs a non-empty name and a value",
            )
        if kind not in _ENV_TYPES:
            raise RouteError(
                "InvalidInputException",
                f"environmentVariablesOverride[{i}].type {kind!r} must be one of {', '.join(_ENV_TYPES)}",
            )
        result.append({"name": name, "value": value, "type": kind})
    return result


def _merge_env(
    project: Sequence[Mapping[str, Any]], overrides: Sequence[dict[str, str]]
) -> list[dict[str, str]]:
    merged: dict[str, dict[str, str]] = {}
    for item in project:
        merged[str(item["name"])] = {
            "name": str(item["name"]),
            "value": str(item.get("value", "")),
            "type": str(item.get("type") or "PLAINTEXT"),
        }
    for item in overrides:
        merged[item["name"]] = dict(item)
    return list(merged.values())


def _fingerprint(request: Mapping[str, Any]) -> str:
    members = {k: v for k, v in request.items() if k != "idempotencyToken"}
    return hashlib.sha256(json.dumps(members, sort_keys=True, default=str).encode()).hexdigest()


def _source_bucket_key(location: str) -> tuple[str, str]:
    location = location.removeprefix("arn:aws:s3:::").removeprefix("s3://")
    bucket, _, key = location.partition("/")
    return bucket, key


def _region_account(arn_parts: Sequence[str], region: str, account: str) -> tuple[str, str]:
    """Region and account of an ARN split at ':' (the defaults where it has none)."""
    return (
        arn_parts[3] if len(arn_parts) > 3 and arn_parts[3] else region,
        arn_parts[4] if len(arn_parts) > 4 and arn_parts[4] else account,
    )


def _region_of(client: Any) -> str:
    return str(getattr(getattr(client, "meta", None), "region_name", None) or "us-east-1")


def _tag_immutable(repository: Mapping[str, Any], tag: str) -> bool:
    mutability = str(repository.get("imageTagMutability") or "MUTABLE")
    filters = [str(f.get("filter", "")) for f in repository.get("imageTagMutabilityExclusionFilters") or []]
    excluded = any(fnmatch.fnmatchcase(tag, f) for f in filters)
    if mutability == "IMMUTABLE":
        return True
    if mutability == "IMMUTABLE_WITH_EXCLUSION":
        return not excluded
    if mutability == "MUTABLE_WITH_EXCLUSION":
        return excluded
    return False


def _error(exc: Exception) -> tuple[str, str]:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error") or {}
        return str(error.get("Code") or type(exc).__name__), str(error.get("Message") or exc)
    return type(exc).__name__, str(exc)


def _now() -> datetime:
    return datetime.now(UTC)
