"""The outside world as the workflow's steps see it: one small interface per service.

Each port has one AWS adapter in `modelops.adapters` (built from the function's environment by
`modelops.wiring`); tests hand a step a fake or a moto-backed adapter instead. Steps depend on these
protocols only, never on boto3 or the Kubernetes client.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from modelops.canary import AlarmState, VariantMetrics
from modelops.run import RunRef


# --- S3 ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    last_modified: datetime
    etag: str


class ObjectStore(Protocol):
    def size(self, bucket: str, key: str, version_id: str | None = None) -> int | None:
        """The object's size in bytes; None when there is no such object (or version)."""
        ...

    def read(self, bucket: str, key: str, version_id: str | None = None) -> bytes: ...

    def list(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
        """Every object under `prefix`, all pages."""
        ...

    def put(self, bucket: str, key: str, body: bytes, *, content_type: str) -> str | None:
        """Store the object; its version id (None when the bucket is not versioned)."""
        ...


# --- SageMaker: training jobs and the model registry ---------------------------------------------------
@dataclass(frozen=True)
class TrainingJob:
    name: str
    status: str  # InProgress | Completed | Failed | Stopping | Stopped
    secondary_status: str | None
    failure_reason: str | None
    model_artifact: str | None  # s3:// URI of model.tar.gz once completed


class TrainingJobs(Protocol):
    def describe(self, name: str) -> TrainingJob: ...


@dataclass(frozen=True)
class RegisteredVersion:
    version: str
    package_arn: str


class ModelRegistry(Protocol):
    def ensure_group(self, group: str, description: str) -> None:
        """Create the model package group unless it exists."""
        ...

    def find_version(self, group: str, run_id: str) -> RegisteredVersion | None:
        """The version a run already registered (a retried RegisterModel), if any."""
        ...

    def create_version(
        self, group: str, *, description: str, image: str, artifact: str, metadata: dict[str, str]
    ) -> RegisteredVersion: ...

    def set_approval(
        self, package_arn: str, status: str, description: str, metadata: dict[str, str] | None = None
    ) -> None:
        """Set the version's approval status and description; `metadata` keys are added to (or
        replace the same keys of) its customer metadata, the others are kept."""
        ...


# --- CodeBuild and ECR ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class BuildState:
    status: str  # IN_PROGRESS | SUCCEEDED | FAILED | FAULT | STOPPED | TIMED_OUT
    phase: str | None
    # "<phase>: <messages>" for each phase that did not succeed
    failures: tuple[str, ...] = ()
    # where the build's log is: the console link, the CloudWatch Logs group and stream
    logs: str = ""
    # every phase entered so far, in order (SUBMITTED, QUEUED, ..., COMPLETED)
    phases: tuple[str, ...] = ()


class ImageBuilds(Protocol):
    def start(
        self, *, idempotency_token: str, variables: dict[str, str], source_version: str | None = None
    ) -> str:
        """Start the image build with these environment variables (and this version of the
        project's S3 source, default the latest); returns the build id."""
        ...

    def state(self, build_id: str) -> BuildState | None:
        """None when no such build exists."""
        ...


class ImageRepository(Protocol):
    @property
    def uri(self) -> str: ...

    def digest(self, tag: str) -> str | None:
        """The digest of the image tagged `tag`; None when there is none."""
        ...


#: BatchDeleteImage's limit of image ids per call (ECR's ImageIdentifierList, at most 100).
DELETE_BATCH = 100


@dataclass(frozen=True)
class StoredImage:
    """One image of the serving repository as DescribeImages reports it."""

    digest: str
    tags: tuple[str, ...]
    pushed_at: datetime


@dataclass(frozen=True)
class DeleteFailure:
    digest: str
    code: str
    reason: str


class ImageCatalog(Protocol):
    """The serving repository's images, for the retention clean-up (ECR)."""

    @property
    def uri(self) -> str: ...

    def images(self) -> list[StoredImage]:
        """Every image in the repository, all pages."""
        ...

    def delete(self, digests: list[str]) -> list[DeleteFailure]:
        """Delete these images (at most 100, the BatchDeleteImage limit) by digest, every tag with
        them; the ones that could not be deleted."""
        ...


# --- SSM Parameter Store -------------------------------------------------------------------------------
class Parameters(Protocol):
    def get(self, name: str) -> str | None:
        """The parameter's value; None when there is no such parameter."""
        ...

    def put(self, name: str, value: str) -> None:
        """Create or overwrite a String parameter."""
        ...


# --- Step Functions and SNS ---------------------------------------------------------------------------
class Executions(Protocol):
    def start(self, name: str, payload: str) -> str | None:
        """Start an execution named `name`; its ARN, or None when that name already ran."""
        ...


class TaskCallbacks(Protocol):
    def fail(self, token: str, error: str, cause: str) -> bool:
        """SendTaskFailure; False when the task is already over (timed out, token unknown)."""
        ...

    def succeed(self, token: str, output: dict[str, Any]) -> bool:
        """SendTaskSuccess with `output` as the task's result; False when the task is already over."""
        ...


class Identity(Protocol):
    def caller(self) -> str:
        """The ARN of whoever runs this (STS GetCallerIdentity)."""
        ...


class Notifier(Protocol):
    def publish(self, subject: str, message: str) -> None: ...


# --- EKS and CloudWatch ------------------------------------------------------------------------------
class Kube(Protocol):
    """The Kubernetes calls the rollout makes; errors are modelops.errors.Kube*Error. Beside the
    Deployments and the service proxy, each weighted traffic router reads and JSON-patches its
    one object: an HTTPRoute (gateway_api) or an Ingress (alb)."""

    def get_deployment(self, namespace: str, name: str) -> dict[str, Any]: ...

    def patch_deployment(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> dict[str, Any]:
        """Apply an RFC 6902 JSON Patch."""
        ...

    def get_http_route(self, namespace: str, name: str) -> dict[str, Any]: ...

    def patch_http_route(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> dict[str, Any]:
        """Apply an RFC 6902 JSON Patch to a gateway.networking.k8s.io/v1 HTTPRoute."""
        ...

    def get_ingress(self, namespace: str, name: str) -> dict[str, Any]: ...

    def patch_ingress(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> dict[str, Any]:
        """Apply an RFC 6902 JSON Patch to a networking.k8s.io/v1 Ingress."""
        ...

    def service_proxy_post(
        self, namespace: str, service: str, port: int, path: str, body: Any, content_type: str
    ) -> tuple[int, str]:
        """POST through the API server's service proxy; (status, body) whatever the status."""
        ...


class Metrics(Protocol):
    def alarm_states(self, model: str) -> list[AlarmState]: ...

    def variant_metrics(self, model: str, variant: str, start: datetime, end: datetime) -> VariantMetrics: ...


class DriftMetrics(Protocol):
    """The live drift statistics the serving pods publish, and the monitor's figures."""

    def code_counts(
        self, model: str, variant: str, codes: dict[str, int], start: datetime, end: datetime
    ) -> dict[str, list[float]]:
        """For each feature name (or "prediction") in `codes`, how many values the pods of
        `variant` counted for each code 1..codes[name] over [start, end)."""
        ...

    def publish_drift(self, model: str, psi: dict[str, float], samples: int, at: datetime) -> None:
        """Publish the window's PSI per feature, the largest and the number of predictions."""
        ...


# --- the state table ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LockResult:
    acquired: bool
    holder: str | None
    expires_at: int


class Store(Protocol):
    """Model configs, the per-model lock, the active rollout and the run history (DynamoDB)."""

    def get_model_document(self, model: str) -> dict[str, Any] | None: ...

    def get_doc(self, model: str, sk: str) -> dict[str, Any] | None: ...

    def put_doc(self, model: str, sk: str, doc: dict[str, Any], *, expires_at: int | None = None) -> None: ...

    def query_docs(
        self, model: str, prefix: str, *, limit: int = 50, newest_first: bool = True
    ) -> list[dict[str, Any]]:
        """The model's documents whose key starts with `prefix`, by key (newest first: descending)."""
        ...

    def acquire_lock(
        self, model: str, owner: str, ttl_seconds: int, *, now: float | None = None
    ) -> LockResult: ...

    def release_lock(self, model: str, owner: str) -> bool: ...

    def lock_holder(self, model: str) -> tuple[str, int] | None: ...

    def coalesce(self, model: str, holder: str, request: dict[str, Any], *, now: float | None = None) -> bool:
        """Store `request` as the model's PENDING request while `holder` holds the lock (atomically);
        False, nothing written, when the lock was released or taken over meanwhile."""
        ...

    def pop_pending(self, model: str) -> dict[str, Any] | None: ...

    def update_rollout(self, model: str, run_id: str, fields: dict[str, Any]) -> dict[str, Any]: ...

    def get_rollout(self, model: str) -> dict[str, Any] | None: ...

    def clear_rollout(self, model: str, run_id: str) -> None: ...

    def mark_rollout(self, model: str, run_id: str, fields: dict[str, Any]) -> dict[str, Any] | None:
        """Set fields of the rollout of `run_id` only if it is still the active one; the rollout as
        updated, or None (nothing written) when that run has no active rollout."""
        ...

    def record_alarm_on_rollout(self, model: str, alarm: dict[str, Any]) -> dict[str, Any] | None: ...


class ModelCatalog(Protocol):
    """What the state table knows about every model, for the retention clean-up."""

    def model_names(self) -> list[str]:
        """Every model with a stored config."""
        ...

    def get_model_document(self, model: str) -> dict[str, Any] | None: ...

    def get_doc(self, model: str, sk: str) -> dict[str, Any] | None: ...

    def get_rollout(self, model: str) -> dict[str, Any] | None: ...

    def history(self, model: str) -> Iterator[dict[str, Any]]:
        """The model's run records, newest first, all pages (read lazily)."""
        ...


#: Runs the rollout function's own `rollback` action for a run (the clean-up after a stopped execution).
Rollback = Callable[[RunRef], dict[str, Any]]
