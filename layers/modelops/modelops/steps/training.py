"""StartTraining's request (built once by ResolveRequest) and ExplainTrainingFailure.

The workflow starts the SageMaker training job and polls it itself (createTrainingJob plus a
describeTrainingJob loop); this module decides what the job is and says why it failed.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, NoReturn

from modelops.config import ModelConfig
from modelops.errors import ConfigError, TrainingFailedError
from modelops.ports import TrainingJobs
from modelops.run import Champion, DatasetObject, Run
from modelops.triggers import safe_name

#: Seconds added to the job's own limits for the workflow's polling to give up on it.
POLL_MARGIN_SECONDS = 900


def training_job_name(stack: str, model: str, run_id: str) -> str:
    """<= 63 chars, unique per run, prefixed with the stack so IAM can scope `training-job/<stack>-*`."""
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:10]
    return safe_name(f"{stack[:24]}-{model[:26]}-{digest}", 63)


def training_job_request(
    config: ModelConfig,
    *,
    run_id: str,
    stack: str,
    bucket: str,
    dataset: DatasetObject,
    champion: Champion | None,
    role_arn: str,
    default_image: str,
) -> dict[str, Any]:
    """The CreateTrainingJob request: the model's data as the `train` channel, the champion's
    artifact (when there is one) as `champion`, so the job scores both on the same holdout."""
    hyper = {
        **{
            k: str(v).lower() if isinstance(v, bool) else str(v)
            for k, v in config.training.hyperparameters.items()
        },
        "label_column": config.data.schema_.label_column,
        "feature_columns": json.dumps(config.data.schema_.feature_columns),
        "task": config.data.task,
        "algorithm": config.training.algorithm,
        "objective_metric": config.training.objective.metric,
    }
    if config.data.schema_.categorical_columns:  # only then: a numeric-only job's request is unchanged
        hyper["categorical_columns"] = json.dumps(config.data.schema_.categorical_columns)
    channels = [_channel("train", dataset.uri, "text/csv")]
    if champion is not None and champion.model_artifact:
        channels.append(_channel("champion", champion.model_artifact, "application/x-tar"))
    script = config.training.script
    if script is not None:  # script mode: the image's `train` runs the team's script from `code`
        if not script.is_s3:
            raise ConfigError(
                f"model {config.name}: training.script.source {script.source!r} is a local folder; "
                "store the config with `modelops model put`, which uploads it to S3"
            )
        channels.append(_channel("code", script.source, "application/x-tar"))
        hyper["entry_point"] = script.entry_point
    stopping: dict[str, int] = {"MaxRuntimeInSeconds": config.training.max_runtime_seconds}
    if config.training.managed_spot:
        stopping["MaxWaitTimeInSeconds"] = (
            config.training.max_wait_seconds or config.training.max_runtime_seconds
        )
    metric = config.training.objective.metric
    return {
        "TrainingJobName": training_job_name(stack, config.name, run_id),
        "AlgorithmSpecification": {
            "TrainingImage": config.training.image or default_image,
            "TrainingInputMode": "File",
            "MetricDefinitions": [
                {"Name": f"validation:{metric}", "Regex": f"validation:{metric}=([-0-9.eE]+)"}
            ],
        },
        "RoleArn": role_arn,
        "InputDataConfig": channels,
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/models/{config.name}"},
        "ResourceConfig": {
            "InstanceType": config.training.instance_type,
            "InstanceCount": config.training.instance_count,
            "VolumeSizeInGB": config.training.volume_size_gb,
        },
        "StoppingCondition": stopping,
        "HyperParameters": hyper,
        "EnableManagedSpotTraining": config.training.managed_spot,
        "Tags": [
            {"Key": "modelops:model", "Value": config.name},
            {"Key": "modelops:run", "Value": run_id},
        ],
    }


def worst_case_seconds(training: dict[str, Any]) -> int:
    """How long the job can take before the workflow stops waiting for it."""
    stopping = training["StoppingCondition"]
    return int(
        stopping.get("MaxWaitTimeInSeconds", 0) + stopping["MaxRuntimeInSeconds"] + POLL_MARGIN_SECONDS
    )


def explain_training_failure(run: Run, *, jobs: TrainingJobs) -> NoReturn:
    """Raise TrainingFailedError with SageMaker's own FailureReason and secondary status."""
    job = jobs.describe(run.training_job_name)
    reason = job.failure_reason or ""
    if job.secondary_status in {"MaxRuntimeExceeded", "MaxWaitTimeExceeded"}:
        reason = (
            f"{job.secondary_status}: exceeded training.max_runtime_seconds="
            f"{run.training['StoppingCondition']['MaxRuntimeInSeconds']}. {reason}"
        ).strip()
    raise TrainingFailedError(
        f"training job {job.name} {job.status} ({job.secondary_status}): {reason or 'no reason given'}"
    )


def _channel(name: str, uri: str, content_type: str) -> dict[str, Any]:
    return {
        "ChannelName": name,
        "ContentType": content_type,
        "DataSource": {
            "S3DataSource": {
                "S3DataType": "S3Prefix",
                "S3Uri": uri,
                "S3DataDistributionType": "FullyReplicated",
            }
        },
    }
