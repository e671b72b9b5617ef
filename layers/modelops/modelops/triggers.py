"""Triggers -> one pipeline request with a deterministic execution name.

Four triggers start the workflow: an S3 `Object Created` event (via EventBridge) under
`incoming/<model>/`, a per-model EventBridge Scheduler schedule, a manual start, and the model's
drift alarm `<stack>-<model>-drift` going to ALARM (its state change, via EventBridge). Each becomes a
:class:`PipelineRequest`, the documented execution input. The execution name is the idempotency
key: Step Functions refuses a second execution with the same name, so a redelivered S3 event or a
repeated schedule slot starts nothing new.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from modelops.config import format_validation_error
from modelops.errors import RequestError

MODEL_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$")
INCOMING_PREFIX = "incoming/"
_NAME_OK = re.compile(r"[^A-Za-z0-9_-]")


class DatasetRef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    bucket: str | None = None  # None: the stack's pipeline bucket
    key: str = Field(min_length=1)
    version_id: str | None = None


class RestoreRequest(BaseModel):
    """`modelops rollback --to VERSION`: bring a version promoted before back (its serving image as
    recorded when it was built), through the canary and its checks, or, with `now`, straight to
    the stable Deployment. Only the version is named here: the image comes from the model's record."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = Field(min_length=1, max_length=40)
    now: bool = False
    reason: str = Field(default="", max_length=500)
    requested_by: str = Field(default="", max_length=2048)

    @model_validator(mode="after")
    def _now_says_why(self) -> RestoreRequest:
        if self.now and not self.reason.strip():
            raise ValueError("restore.now skips the canary and needs a reason")
        return self


class PipelineRequest(BaseModel):
    """The execution input. `aws stepfunctions start-execution --input` takes exactly this shape."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(pattern=MODEL_NAME_RE.pattern)
    trigger: Literal["s3", "schedule", "manual", "queued", "drift", "restore"]
    # None: the newest object under incoming/<model>/ is used.
    dataset: DatasetRef | None = None
    requested_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    reason: str = Field(default="", max_length=500)
    # What makes this request unique; folded into the execution name. Room for an S3 key and a
    # version id of 1024 bytes each.
    idempotency_key: str = Field(min_length=1, max_length=4096)
    # A drift trigger: the drift monitor's figures that raised the alarm (modelops.drift.DriftReport).
    drift: dict[str, Any] | None = None
    # trigger "restore" only: the version to bring back (no training: see RestoreRequest).
    restore: RestoreRequest | None = None

    @model_validator(mode="after")
    def _restore_is_its_trigger(self) -> PipelineRequest:
        if (self.trigger == "restore") != (self.restore is not None):
            raise ValueError("a restore request has trigger 'restore' and a 'restore' section, and only it")
        if self.restore is not None and self.dataset is not None:
            raise ValueError("a restore request trains nothing and names no dataset")
        return self

    def execution_name(self) -> str:
        """A Step Functions execution name (<= 80 chars of [A-Za-z0-9-_]) unique per request."""
        digest = hashlib.sha256(self.idempotency_key.encode()).hexdigest()[:16]
        return f"{self.model[:40]}-{self.trigger}-{digest}"


class ManualStart(BaseModel):
    """`modelops start` / a direct invoke of start_pipeline."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(pattern=MODEL_NAME_RE.pattern)
    dataset_key: str | None = None
    reason: str = Field(default="manual start", max_length=500)
    # Same request id -> same execution: a retried CLI call does not start twice.
    request_id: str = Field(default_factory=lambda: uuid.uuid4().hex, min_length=1, max_length=128)


class ScheduledStart(BaseModel):
    """The Input of a per-model EventBridge Scheduler schedule (see modelops.model_admin)."""

    model_config = ConfigDict(extra="forbid")

    source: Literal["modelops.schedule"]
    model: str = Field(pattern=MODEL_NAME_RE.pattern)
    # EventBridge Scheduler fills <aws.scheduler.scheduled-time> in: the slot, so a retried
    # delivery of the same slot maps to the same execution.
    scheduled_time: str = Field(min_length=1)

    @field_validator("scheduled_time")
    @classmethod
    def _timestamp(cls, value: str) -> str:
        # The slot is the idempotency key: a constant (an unfilled placeholder, a date without a
        # time) would make every later slot a "duplicate" that never runs.
        if value.startswith("<aws.scheduler."):
            raise ValueError(
                f"{value} was not filled in; the schedule must be an EventBridge Scheduler schedule "
                "(created by `modelops model put`)"
            )
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"expected an ISO 8601 timestamp such as 2026-11-22T06:00:00Z, got {value!r}"
            ) from None
        if moment.tzinfo is None:
            raise ValueError(f"expected a timestamp with a zone such as 2026-11-22T06:00:00Z, got {value!r}")
        return value


class _AlarmState(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    value: Literal["OK", "ALARM", "INSUFFICIENT_DATA"]
    reason: str = ""
    timestamp: str = ""  # when the alarm entered this state (ISO 8601)


class _AlarmDetail(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    alarmName: str = Field(min_length=1)
    state: _AlarmState


class AlarmStateChange(BaseModel):
    """The `CloudWatch Alarm State Change` event EventBridge delivers to on_alarm (the fields it reads)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    source: Literal["aws.cloudwatch"]
    detail_type: Literal["CloudWatch Alarm State Change"] = Field(alias="detail-type")
    detail: _AlarmDetail

    @property
    def alarm_name(self) -> str:
        return self.detail.alarmName

    @property
    def state(self) -> str:
        return self.detail.state.value

    @property
    def reason(self) -> str:
        return self.detail.state.reason

    @property
    def since(self) -> str:
        return self.detail.state.timestamp


DRIFT_ALARM_SUFFIX = "-drift"


def drift_alarm_name(prefix: str, model: str) -> str:
    """The name `modelops model put` gives a model's drift alarm."""
    return f"{prefix}{model}{DRIFT_ALARM_SUFFIX}"


def drift_alarm_model(name: str, prefix: str) -> str | None:
    """The model whose drift alarm `name` is; None for any other alarm."""
    if not name.startswith(prefix) or not name.endswith(DRIFT_ALARM_SUFFIX):
        return None
    model = name[len(prefix) : -len(DRIFT_ALARM_SUFFIX)]
    return model if MODEL_NAME_RE.fullmatch(model) else None


def parse_alarm_event(event: Any) -> AlarmStateChange:
    """An alarm state-change event; RequestError naming the bad field when malformed."""
    if not isinstance(event, dict):
        raise RequestError(f"event must be a JSON object, got {type(event).__name__}")
    try:
        return AlarmStateChange.model_validate(event)
    except ValidationError as exc:
        raise RequestError(
            f"malformed CloudWatch Alarm State Change event: {format_validation_error(exc)}"
        ) from None


def model_from_key(key: str) -> str:
    """`incoming/<model>/<file>` -> model; RequestError for anything else."""
    if not key.startswith(INCOMING_PREFIX):
        raise RequestError(f"object key {key!r} is outside {INCOMING_PREFIX}<model>/; nothing to do")
    rest = key[len(INCOMING_PREFIX) :]
    model, sep, filename = rest.partition("/")
    if not sep or not filename:
        raise RequestError(f"object key {key!r} has no file under {INCOMING_PREFIX}<model>/")
    if filename.endswith("/"):
        raise RequestError(f"object key {key!r} is a folder marker, not a dataset")
    if not MODEL_NAME_RE.fullmatch(model):
        raise RequestError(f"object key {key!r}: {model!r} is not a valid model name")
    return model


def parse_trigger(event: Any, *, bucket: str, alarm_prefix: str = "") -> PipelineRequest:
    """Turn any of the four trigger events into a PipelineRequest; RequestError when malformed or
    not a trigger (a drift alarm that did not go to ALARM, another alarm).

    `bucket` is the stack's pipeline bucket: S3 events from any other bucket are rejected.
    `alarm_prefix` (`<stack>-`) names this stack's drift alarms.
    """
    if not isinstance(event, dict):
        raise RequestError(f"event must be a JSON object, got {type(event).__name__}")
    if "Records" in event:
        raise RequestError(
            "S3 event notifications (Records) are not a trigger: the stack receives S3 events through "
            "EventBridge (detail-type Object Created); enable EventBridge on the bucket instead of "
            "an event notification to this function"
        )
    if event.get("source") == "aws.s3" or event.get("detail-type") == "Object Created":
        return _from_s3(event, bucket=bucket)
    if event.get("source") == "modelops.schedule":
        return _from_schedule(event)
    if event.get("source") == "aws.cloudwatch":
        return _from_drift_alarm(event, alarm_prefix)
    return _from_manual(event)


def _from_drift_alarm(event: dict[str, Any], prefix: str) -> PipelineRequest:
    """A drift alarm's state change to ALARM: one run per alarm episode (the idempotency key is
    the moment the alarm entered ALARM, so a redelivered event starts nothing new)."""
    change = parse_alarm_event(event)
    model = drift_alarm_model(change.alarm_name, prefix) if prefix else None
    if model is None:
        raise RequestError(
            f"alarm {change.alarm_name} is not one of this stack's drift alarms; nothing to do"
        )
    if change.state != "ALARM":
        raise RequestError(f"drift alarm {change.alarm_name} went to {change.state}; only ALARM retrains")
    since = change.since or str(event.get("time") or "")
    if not since:
        raise RequestError(f"drift alarm {change.alarm_name}: the event has no state timestamp or time")
    return PipelineRequest(
        model=model,
        trigger="drift",
        reason=f"drift alarm {change.alarm_name} in ALARM since {since}: {change.reason}"[:500],
        idempotency_key=f"drift|{model}|{since}",
    )


def _from_s3(event: dict[str, Any], *, bucket: str) -> PipelineRequest:
    # Imported lazily: the parser models cost ~0.2 s of cold start and only S3 events need them.
    from aws_lambda_powertools.utilities.parser.models import S3EventNotificationEventBridgeModel

    try:
        parsed = S3EventNotificationEventBridgeModel.model_validate(event)
    except ValidationError as exc:
        raise RequestError(f"malformed S3 Object Created event: {format_validation_error(exc)}") from None
    if parsed.source != "aws.s3" or parsed.detail_type != "Object Created":
        raise RequestError(
            f"event {parsed.source}/{parsed.detail_type} is not an S3 Object Created event; nothing to do"
        )
    detail = parsed.detail
    if detail.bucket.name != bucket:
        raise RequestError(f"event is for bucket {detail.bucket.name!r}, not the pipeline bucket {bucket!r}")
    key = detail.object.key
    model = model_from_key(key)
    if detail.object.size is None:
        raise RequestError(f"malformed S3 Object Created event: detail.object.size missing for {key!r}")
    if not detail.object.size:
        raise RequestError(f"object {key!r} is empty (0 bytes); upload a CSV with a header and rows")
    version = detail.object.version_id or detail.object.etag or detail.object.sequencer or ""
    return PipelineRequest(
        model=model,
        trigger="s3",
        dataset=DatasetRef(bucket=detail.bucket.name, key=key, version_id=detail.object.version_id),
        reason=f"new data s3://{detail.bucket.name}/{key}"[:500],
        idempotency_key=f"s3|{detail.bucket.name}|{key}|{version}",
    )


def _from_schedule(event: dict[str, Any]) -> PipelineRequest:
    try:
        parsed = ScheduledStart.model_validate(event)
    except ValidationError as exc:
        raise RequestError(f"malformed schedule input: {format_validation_error(exc)}") from None
    return PipelineRequest(
        model=parsed.model,
        trigger="schedule",
        reason=f"scheduled retraining for slot {parsed.scheduled_time}",
        idempotency_key=f"schedule|{parsed.model}|{parsed.scheduled_time}",
    )


def _from_manual(event: dict[str, Any]) -> PipelineRequest:
    try:
        parsed = ManualStart.model_validate(event)
    except ValidationError as exc:
        raise RequestError(f"invalid manual start input: {format_validation_error(exc)}") from None
    dataset = None
    if parsed.dataset_key:
        _check_dataset_key(parsed.dataset_key, parsed.model, field="dataset_key")
        dataset = DatasetRef(key=parsed.dataset_key)
    return PipelineRequest(
        model=parsed.model,
        trigger="manual",
        dataset=dataset,
        reason=parsed.reason,
        idempotency_key=f"manual|{parsed.model}|{parsed.request_id}",
    )


def parse_execution_input(raw: Any, *, bucket: str) -> PipelineRequest:
    """The execution input (what start_pipeline passes, or `aws stepfunctions start-execution
    --input`) -> PipelineRequest; RequestError naming the field when it is malformed or names a
    dataset outside the pipeline bucket or the model's incoming/<model>/ prefix."""
    if not isinstance(raw, dict):
        raise RequestError(f"execution input must be a JSON object, got {type(raw).__name__}")
    try:
        request = PipelineRequest.model_validate(raw)
    except ValidationError as exc:
        raise RequestError(f"invalid execution input: {format_validation_error(exc)}") from None
    dataset = request.dataset
    if dataset is not None:
        if dataset.bucket not in (None, bucket):
            raise RequestError(
                f"dataset.bucket {dataset.bucket!r} is not the pipeline bucket {bucket!r}; "
                f"upload the data to s3://{bucket}/{INCOMING_PREFIX}{request.model}/"
            )
        _check_dataset_key(dataset.key, request.model, field="dataset.key")
    return request


def _check_dataset_key(key: str, model: str, *, field: str) -> None:
    """A named dataset must be a file under the model's own incoming/<model>/ prefix."""
    prefix = f"{INCOMING_PREFIX}{model}/"
    if not key.startswith(prefix):
        raise RequestError(f"{field} {key!r} is not under {prefix}")
    if key.endswith("/"):
        raise RequestError(f"{field} {key!r} is a folder, not a file under {prefix}")


def restore_request(
    model: str, version: str, *, now: bool, reason: str, requested_by: str, request_id: str
) -> PipelineRequest:
    """The execution input of `modelops rollback --to VERSION` (RequestError when malformed)."""
    try:
        return PipelineRequest(
            model=model,
            trigger="restore",
            reason=(f"rollback to version {version}" + (f": {reason}" if reason else ""))[:500],
            idempotency_key=f"restore|{model}|{version}|{request_id}",
            restore=RestoreRequest(version=version, now=now, reason=reason, requested_by=requested_by),
        )
    except ValidationError as exc:
        raise RequestError(f"invalid rollback request: {format_validation_error(exc)}") from None


def queued_request(original: PipelineRequest, holder: str) -> PipelineRequest:
    """The follow-up run for requests coalesced while `holder` held the model's lock.

    Data that arrived through S3 is not pinned: the follow-up trains on the newest object under
    incoming/<model>/ when it starts, so a burst of uploads ends with the newest data trained
    whichever coalesced trigger happened to be stored last. A manual start that named its
    dataset keeps it."""
    return original.model_copy(
        update={
            "dataset": None if original.trigger == "s3" else original.dataset,
            # A restore stays one (its follow-up brings the same version back).
            "trigger": "restore" if original.restore is not None else "queued",
            "reason": f"coalesced while {holder} ran: {original.reason}"[:500],
            "idempotency_key": f"queued|{holder}|{original.idempotency_key}",
            "requested_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )


def safe_name(text: str, limit: int) -> str:
    """Replace characters AWS names refuse and cut to `limit`."""
    return _NAME_OK.sub("-", text)[:limit]
