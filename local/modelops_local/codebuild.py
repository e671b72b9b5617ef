"""Local CodeBuild: run a StartBuild request's buildspec.yml phases with bash, without Docker.

`LocalCodeBuild.start` / `batch_get` are what `MotoPatches.route_codebuild(start=, batch_get=)` hands
StartBuild and BatchGetBuilds to. A build runs on its own thread through CodeBuild's phases

    SUBMITTED QUEUED PROVISIONING DOWNLOAD_SOURCE INSTALL PRE_BUILD BUILD POST_BUILD
    UPLOAD_ARTIFACTS FINALIZING COMPLETED

- DOWNLOAD_SOURCE: the project's S3 source zip (`<bucket>/<key>`, or sourceLocationOverride),
  unzipped safely (no absolute names, `..`, links or zip bombs); its buildspec (the project's
  `buildspec` name, buildspec.yml by default, or an inline one) is read: version 0.2, env.shell bash.
- INSTALL, PRE_BUILD, BUILD, POST_BUILD: **the buildspec's own commands**, run by bash in the
  source folder, in order, each phase stopping at its first failing command ("Error while
  executing command: <command>. Reason: exit status <n>", with the output's last lines), with
  the shell's variables, options and folder carried from phase to phase (buildspec 0.2 runs
  them in one shell instance). The environment: the project's variables under the request's
  overrides (over the buildspec's env.variables), CODEBUILD_SRC_DIR, CODEBUILD_BUILD_ID,
  CODEBUILD_BUILD_ARN, CODEBUILD_BUILD_NUMBER, CODEBUILD_BUILD_SUCCEEDING, AWS_REGION and
  AWS_DEFAULT_REGION, and a PATH whose first folder holds the `docker` and `aws` shims
  (build_shims.py: exactly the subcommands the buildspec uses; `docker build` interprets the
  source's Dockerfile through dockerfile.py into a real OCI image). A change to buildspec.yml or
  to the Dockerfile therefore shows up here; a command or instruction the shims cannot carry
  out fails the build naming it.
- FINALIZING: the buildspec's env.exported-variables, read from the last phase's shell, become
  `exportedEnvironmentVariables`.

Phase transitions follow CodeBuild's: a failed PROVISIONING, DOWNLOAD_SOURCE, INSTALL or PRE_BUILD
goes straight to FINALIZING; a failed BUILD still runs POST_BUILD (with CODEBUILD_BUILD_SUCCEEDING=0)
and UPLOAD_ARTIFACTS; the failed phase has phaseStatus FAILED and a context message.

moto and ECR digests: moto 5.2.5's PutImage, given no `imageDigest`, reports sha256 of the
concatenated *layer* digests, not of the manifest. ECR's PutImage takes `imageDigest` (the digest of
the manifest) and moto stores it as given, so the push passes the real digest through the public
API: no moto patch (tests/unit/local/test_codebuild_ecr_digest.py guards moto's behaviour).

Image references: `resolve_image(layout_dir, "<repository-uri>@sha256:...")` (or `:<tag>`) is the
manifest digest in the shared layout; `unpack_reference` applies its layers into a root folder.

Not emulated: runtime-versions, phases' `finally` blocks and `on-failure: CONTINUE`, env's
parameter-store / secrets-manager / git-credential-helper, non-PLAINTEXT environment variables,
artifacts other than NO_ARTIFACTS, StopBuild, CloudWatch Logs (the log is the file
`<work_dir>/<build-id>.log`; `logs` has CodeBuild's shape with placeholders).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
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

from modelops_local import build_shims, oci
from modelops_local.build_shims import error_of as _error
from modelops_local.moto_patches import RouteError

log = logging.getLogger(__name__)

# One phase's shell at most (the build's own timeout also bounds it); a shim's answer at most
# (docker build compiles the forest: seconds; pip of a model's requirements: under a minute).
PHASE_TIMEOUT_SECONDS = 1800.0
SHIM_TIMEOUT_SECONDS = 900.0
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
IDEMPOTENCY_WINDOW_SECONDS = 300.0  # "The token ... is valid for 5 minutes" (StartBuild)
MAX_SOURCE_BYTES = 256 * 1024 * 1024
MAX_SOURCE_ENTRIES = 10_000
MAX_MODEL_BYTES = 512 * 1024 * 1024  # modelops.steps.evaluation.MAX_ARTIFACT_BYTES
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
    spec: dict[str, Any] = field(default_factory=dict)  # the buildspec
    env_base: dict[str, str] = field(default_factory=dict)  # the shell's environment
    shims: build_shims.ShimServer | None = None
    process: subprocess.Popen[str] | None = None  # the running phase's shell
    cleanup: list[Path] = field(default_factory=list)

    @property
    def state(self) -> Path:
        """The shell's state after the last phase (sourced by the next)."""
        return self.dir / "shell-state.sh"


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
            running = [b.process for b in builds if b.process is not None]
        for process in running:  # a phase's shell and what it started
            _kill_group(process)
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
            names = (build.spec.get("env") or {}).get("exported-variables") or []
            exported = [{"name": n, "value": build.vars[n]} for n in names if n in build.vars]
            if exported:
                doc["exportedEnvironmentVariables"] = exported
            status = doc["buildStatus"]
        self._log(build, f"Build {build.id} {status}")
        if build.shims is not None:
            build.shims.close()
        for folder in (build.dir, *build.cleanup):  # the staging layout, stages and downloads
            shutil.rmtree(folder, ignore_errors=True)  # pushed blobs are in layout_dir

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
        env_section = spec.get("env") or {}
        if str(env_section.get("shell", "bash")) != "bash":
            raise _PhaseFailed("YAML_FILE_ERROR", f"{buildspec_name}: env.shell must be bash locally")
        unsupported = [k for k in env_section if k not in ("shell", "variables", "exported-variables")]
        if unsupported:
            raise _PhaseFailed(
                "YAML_FILE_ERROR", f"{buildspec_name}: env.{unsupported[0]} is not supported locally"
            )
        build.spec = spec
        build.env_base = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": str(build.dir),
            "LANG": "C.UTF-8",
            **{str(k): str(v) for k, v in (env_section.get("variables") or {}).items()},
            **build.env,
            "CODEBUILD_SRC_DIR": str(source_dir),
            "CODEBUILD_BUILD_ID": build.id,
            "CODEBUILD_BUILD_ARN": str(build.doc["arn"]),
            "CODEBUILD_BUILD_NUMBER": str(build.doc["buildNumber"]),
            "CODEBUILD_INITIATOR": "modelops-local",
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
        }
        build.vars["CODEBUILD_SRC_DIR"] = str(source_dir)
        self._log(build, f"CODEBUILD_SRC_DIR={source_dir} (from {where})")

    def _install(self, build: _Build) -> None:
        self._commands(build, "install")

    def _pre_build(self, build: _Build) -> None:
        self._commands(build, "pre_build")

    def _build(self, build: _Build) -> None:
        self._commands(build, "build")

    def _post_build(self, build: _Build) -> None:
        self._commands(build, "post_build")

    def _upload_artifacts(self, build: _Build) -> None:
        self._log(build, "Artifacts: NO_ARTIFACTS; nothing to upload")

    def _finalize(self, build: _Build) -> None:
        names = [str(n) for n in (build.spec.get("env") or {}).get("exported-variables") or []]
        if build.state.is_file() and names:
            build.vars.update(_read_variables(build.state, names))
        self._log(build, "Exporting variables: " + ", ".join(n for n in names if n in build.vars))

    # --- the buildspec's commands ----------------------------------------------------------------
    def _commands(self, build: _Build, phase: str) -> None:
        """Run the phase's commands in bash, in order, stopping at the first that fails, with the
        shell's variables, options and folder carried over from the phase before (buildspec 0.2
        runs every command in the same shell instance)."""
        spec = ((build.spec.get("phases") or {}).get(phase)) or {}
        commands = [str(c) for c in spec.get("commands") or []]
        if not commands:
            self._log(build, f"No commands in phase {phase}")
            return
        if build.shims is None:
            build.shims = self._start_shims(build)
        status = build.dir / "status"
        status.unlink(missing_ok=True)
        save = _SAVE_STATE.format(state=shlex.quote(str(build.state)), status=shlex.quote(str(status)))
        script = [
            f"source {shlex.quote(str(build.state))}" if build.state.is_file() else "",
            f"trap {shlex.quote(save)} EXIT",
        ]
        for i, command in enumerate(commands):
            script += [
                f"__modelops_cmd={i}",
                f"printf '%s\\n' {shlex.quote('Running command ' + command)}",
                command,
                '__modelops_rc=$?; [ "$__modelops_rc" -eq 0 ] || exit "$__modelops_rc"',
            ]
        env = {
            **build.env_base,
            "CODEBUILD_BUILD_SUCCEEDING": "1" if build.succeeding else "0",
        }
        remaining = max(1.0, build.deadline - self.clock())
        process = subprocess.Popen(
            ["bash", "--noprofile", "--norc", "-c", "\n".join(script)],
            cwd=build.env_base["CODEBUILD_SRC_DIR"] if not build.state.is_file() else None,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group: a timeout or shutdown stops the shims' children too
        )
        with self._lock:  # shutdown() either sees this process or this phase sees the shutdown
            build.process = process
            closed = self._closed.is_set()
        if closed:
            _kill_group(process)
        try:
            out, _ = process.communicate(timeout=min(remaining, PHASE_TIMEOUT_SECONDS))
        except subprocess.TimeoutExpired:
            _kill_group(process)
            process.communicate()
            raise _PhaseFailed(
                "BUILD_TIMED_OUT",
                f"Build has timed out in {phase} (the build's timeoutInMinutes)",
                "TIMED_OUT",
            ) from None
        finally:
            with self._lock:
                build.process = None
        output = out.splitlines()
        for line in output:
            self._log(build, line)
        if process.returncode != 0 and self._closed.is_set():
            raise _PhaseFailed(
                "BUILD_STOPPED", f"Build stopped in {phase}: the local CodeBuild shut down", "STOPPED"
            )
        if process.returncode != 0:
            failed = int(status.read_text().split()[0]) if status.is_file() else len(commands) - 1
            said = " | ".join(line for line in output[-6:] if not line.startswith("Running command "))
            raise _PhaseFailed(
                "COMMAND_EXECUTION_ERROR",
                f"Error while executing command: {' '.join(commands[failed].split())}. "
                f"Reason: exit status {process.returncode}" + (f" ({said})" if said else ""),
            )

    def _start_shims(self, build: _Build) -> build_shims.ShimServer:
        """The build's docker/aws shims on PATH and the server that carries their commands out."""
        short = Path(tempfile.mkdtemp(prefix="cb-"))  # a Unix socket path must stay short
        build.cleanup.append(short)
        socket_path = short / "s"
        registry = build_shims.Registry(
            s3=self.s3,
            ecr=self.ecr,
            layout_dir=self.layout_dir,
            staging=build.dir / "image",
            work=build.dir / "docker",
            account_id=self._account(build),
            push_lock=self._push_lock,
            max_download_bytes=self.max_model_bytes,
            log=lambda line: self._log(build, line),
        )
        server = build_shims.ShimServer(socket_path, registry)
        build_shims.install_shims(build.dir / "shims", socket_path, sys.executable, SHIM_TIMEOUT_SECONDS)
        build.env_base["PATH"] = f"{build.dir / 'shims'}:{build.env_base['PATH']}"
        return server

    def _account(self, build: _Build) -> str:
        return _region_account(str(build.project.get("arn", "")).split(":"), self.region, self.account_id)[1]

    # --- helpers -------------------------------------------------------------------------------
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


def _now() -> datetime:
    return datetime.now(UTC)


# The EXIT trap of every phase's shell: its status (failed command, exit status), then its state
# (variables but bash's own and read-only ones, options, folder) for the next phase to source.
_SAVE_STATE = (
    '__modelops_rc=$?; echo "$__modelops_cmd $__modelops_rc" > {status}; '
    "{{ for __v in $(compgen -v); do case $__v in "
    "BASH*|EUID|PPID|UID|SHELLOPTS|GROUPS|FUNCNAME|DIRSTACK|PIPESTATUS|RANDOM|SRANDOM|SECONDS|LINENO|"
    "HISTCMD|EPOCH*|COMP*|OPT*|PWD|OLDPWD|SHLVL|IFS|PS[0-9]|_|__modelops_*|__v|CODEBUILD_BUILD_SUCCEEDING|"
    "HOSTNAME|HOSTTYPE|MACHTYPE|OSTYPE) continue;; esac; "
    '[[ ${{!__v@a}} == *r* ]] || declare -p "$__v"; done; set +o; '
    'printf "cd %q\\n" "$PWD"; }} > {state}.tmp && mv {state}.tmp {state}; exit $__modelops_rc'
)


def _kill_group(process: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _read_variables(state: Path, names: Sequence[str]) -> dict[str, str]:
    """The values the shell's saved state gives `names` (those it sets)."""
    script = (
        f"source {shlex.quote(str(state))} >/dev/null 2>&1; "
        + "; ".join(
            f'[ -n "${{{n}+x}}" ] && printf "%s=%s\\0" {n} "${n}"' for n in names if re.fullmatch(r"\w+", n)
        )
        + "; true"
    )
    done = subprocess.run(
        ["bash", "--noprofile", "--norc", "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return dict(item.partition("=")[::2] for item in done.stdout.split("\0") if item)
