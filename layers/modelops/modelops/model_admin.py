"""`modelops model put`: store a model's config and create or update its alarms and schedule.

Idempotent: running it twice with the same file leaves the same state (PutMetricAlarm overwrites
by name; the schedule is created or updated; a removed schedule expression deletes the schedule).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from modelops.adapters.aws import error_code
from modelops.adapters.cloudwatch import CloudWatchMetrics
from modelops.adapters.store import StateStore
from modelops.config import ModelConfig
from modelops.errors import ConfigError
from modelops.steps.drift import drift_schedule_input


@dataclass(frozen=True)
class StackInfo:
    """What the CLI reads from the stack's SSM parameter `/modelops/<stack>/stack`."""

    stack_name: str
    table: str
    bucket: str
    state_machine_arn: str
    start_function_arn: str
    schedule_group: str
    scheduler_role_arn: str
    alarm_prefix: str
    metric_namespace: str
    # The image build and the training image (`modelops bootstrap`); empty in a stack deployed
    # before they were added to its document.
    codebuild_project: str = ""
    training_repository_name: str = ""
    training_repository_uri: str = ""
    training_image_parameter: str = ""
    # The drift monitor function (empty in a stack deployed before it existed).
    drift_function_arn: str = ""

    @classmethod
    def from_parameter(cls, value: str) -> StackInfo:
        doc = json.loads(value)
        return cls(
            **{
                name: doc[name] if f.default is dataclasses.MISSING else str(doc.get(name) or f.default)
                for name, f in cls.__dataclass_fields__.items()
            }
        )


def schedule_name(model: str) -> str:
    return f"retrain-{model}"[:64]


def drift_schedule_name(model: str) -> str:
    return f"drift-{model}"[:64]


def put_model(
    config: ModelConfig, *, stack: StackInfo, store: StateStore, metrics: CloudWatchMetrics, scheduler: Any
) -> dict[str, Any]:
    script = config.training.script
    if script is not None and not script.is_s3:  # the CLI uploads a local folder first
        raise ConfigError(
            f"model {config.name}: training.script.source {script.source!r} is not an s3:// URI; "
            "the stored config must name the uploaded code (modelops model put does this)"
        )
    if config.drift.enabled and not stack.drift_function_arn:
        raise ConfigError(
            f"model {config.name}: drift.enabled needs the stack's drift monitor function, which stack "
            f"{stack.stack_name} does not have; deploy the current template first"
        )
    store.put_model_document(config.name, config.to_document())
    alarms = metrics.put_model_alarms(config)
    schedule = _sync_schedule(config, stack=stack, scheduler=scheduler)
    drift = _sync_drift_schedule(config, stack=stack, scheduler=scheduler)
    return {"model": config.name, "alarms": alarms, "schedule": schedule, "drift_schedule": drift}


def _sync_drift_schedule(config: ModelConfig, *, stack: StackInfo, scheduler: Any) -> str:
    """The drift monitor's schedule: every drift.period_minutes, while drift is enabled."""
    name = drift_schedule_name(config.name)
    if not config.drift.enabled:
        return _delete_schedule(scheduler, name, stack.schedule_group)
    minutes = config.drift.period_minutes
    spec = {
        "Name": name,
        "GroupName": stack.schedule_group,
        "ScheduleExpression": f"rate({minutes} minute{'s' if minutes > 1 else ''})",
        "ScheduleExpressionTimezone": "UTC",
        "State": "ENABLED",
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "Target": {
            "Arn": stack.drift_function_arn,
            "RoleArn": stack.scheduler_role_arn,
            "Input": drift_schedule_input(config.name),
            "RetryPolicy": {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 60 * minutes},
        },
        "Description": f"modelops: drift monitor of {config.name}",
    }
    return _upsert_schedule(scheduler, spec)


def _delete_schedule(scheduler: Any, name: str, group: str) -> str:
    try:
        scheduler.delete_schedule(Name=name, GroupName=group)
        return "deleted"
    except Exception as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return "none"
        raise


def _upsert_schedule(scheduler: Any, spec: dict[str, Any]) -> str:
    try:
        scheduler.create_schedule(**spec)
        return "created"
    except Exception as exc:
        if error_code(exc) != "ConflictException":
            raise
    scheduler.update_schedule(**spec)
    return "updated"


def _sync_schedule(config: ModelConfig, *, stack: StackInfo, scheduler: Any) -> str:
    name = schedule_name(config.name)
    if config.schedule.expression is None:
        return _delete_schedule(scheduler, name, stack.schedule_group)
    # EventBridge Scheduler fills the context attribute in: the slot becomes the idempotency key.
    target_input = json.dumps(
        {
            "source": "modelops.schedule",
            "model": config.name,
            "scheduled_time": "<aws.scheduler.scheduled-time>",
        }
    )
    spec = {
        "Name": name,
        "GroupName": stack.schedule_group,
        "ScheduleExpression": config.schedule.expression,
        "ScheduleExpressionTimezone": config.schedule.timezone,
        "State": "ENABLED" if config.schedule.enabled else "DISABLED",
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "Target": {
            "Arn": stack.start_function_arn,
            "RoleArn": stack.scheduler_role_arn,
            "Input": target_input,
            "RetryPolicy": {"MaximumRetryAttempts": 3, "MaximumEventAgeInSeconds": 3600},
        },
        "Description": f"modelops: scheduled retraining of {config.name}",
    }
    return _upsert_schedule(scheduler, spec)
