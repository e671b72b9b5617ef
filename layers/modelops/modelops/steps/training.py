"""StartTraining's request (built once by ResolveRequest), PrepareJudge's and ExplainTrainingFailure.

The workflow starts the SageMaker training job and polls it itself (createTrainingJob plus a
describeTrainingJob loop); this module decides what the job is and says why it failed. A model
trained by a training image of the team's own (`training.image`, no `training.script`) gets a
second job, the judge: the stack's own image scores that candidate and the champion on the same
holdout with the same evaluator as every other model, and EvaluateModel reads the judge's numbers.
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
#: The judge job (judge_job_request): the serving image's `train` in judge mode, which fits nothing.
JUDGE_HYPERPARAMETER = "modelops_judge"  # the serving image's hyperparameters.py: the same name
JUDGE_MAX_RUNTIME_SECONDS = 3600
CANDIDATE_CHANNEL = "candidate"
#: The training's hyperparameters the judge takes over: those that decide the split.
JUDGE_SPLIT_HYPERPARAMETERS = ("seed", "validation_fraction", "allow_class_change")


def training_job_name(stack: str, model: str, run_id: str) -> str:
    """<= 63 chars, unique per run, prefixed with the stack so IAM can scope `training-job/<stack>-*`."""
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:10]
    return safe_name(f"{stack[:24]}-{model[:26]}-{digest}", 63)


def judge_job_name(stack: str, model: str, run_id: str) -> str:
    """The judge job's name: the training job's scheme with a `-judge` suffix (<= 63 chars, in the
    same IAM scope `training-job/<stack>-*`)."""
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:10]
    return safe_name(f"{stack[:24]}-{model[:20]}-{digest}-judge", 63)


def needs_judge(config: ModelConfig, default_image: str) -> bool:
    """A training image of the team's own that does not run our `train` (no training.script: no
    harness) writes its own evaluation; such a candidate is judged by a second job of our image."""
    image = config.training.image
    return bool(image) and image != default_image and config.training.script is None


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
        **_data_hyperparameters(config),
        "algorithm": config.training.algorithm,
    }
    channels = _data_channels(dataset.uri, champion)
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
    return {
        "TrainingJobName": training_job_name(stack, config.name, run_id),
        "AlgorithmSpecification": _algorithm(config, config.training.image or default_image),
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
        "Tags": _tags(config, run_id),
    }


def judge_job_request(run: Run, *, candidate_artifact: str) -> dict[str, Any]:
    """The judge's CreateTrainingJob request: the stack's own training image in judge mode
    (hyperparameter modelops_judge) scores the candidate (`candidate`: the team image's
    model.tar.gz) and the champion on the training job's data, with the split and the evaluator a
    model trained by our `train` gets. One instance of the training's type, on demand, at most
    JUDGE_MAX_RUNTIME_SECONDS; only modelops' own hyperparameters (the team's mean nothing to it)."""
    if run.judge_image is None or run.judge_job_name is None:
        raise ConfigError(f"model {run.model}: no judge job for a model trained by the stack's own `train`")
    config = run.config
    training = run.training
    split = {k: v for k, v in training["HyperParameters"].items() if k in JUDGE_SPLIT_HYPERPARAMETERS}
    channels = _data_channels(
        next(c for c in training["InputDataConfig"] if c["ChannelName"] == "train")["DataSource"][
            "S3DataSource"
        ]["S3Uri"],
        run.champion,
    )
    channels.append(_channel(CANDIDATE_CHANNEL, candidate_artifact, "application/x-tar"))
    return {
        "TrainingJobName": run.judge_job_name,
        "AlgorithmSpecification": _algorithm(config, run.judge_image),
        "RoleArn": training["RoleArn"],
        "InputDataConfig": channels,
        "OutputDataConfig": training["OutputDataConfig"],
        "ResourceConfig": {**training["ResourceConfig"], "InstanceCount": 1},
        "StoppingCondition": {"MaxRuntimeInSeconds": JUDGE_MAX_RUNTIME_SECONDS},
        "HyperParameters": {**split, **_data_hyperparameters(config), JUDGE_HYPERPARAMETER: "true"},
        "EnableManagedSpotTraining": False,
        "Tags": [*_tags(config, run.run_id), {"Key": "modelops:role", "Value": "judge"}],
    }


def prepare_judge(run: Run, *, jobs: TrainingJobs) -> dict[str, Any]:
    """PrepareJudge: the judge's request for the completed training job's model artifact."""
    job = jobs.describe(run.training_job_name)
    if not job.model_artifact:
        raise TrainingFailedError(
            f"training job {job.name} ({job.status}) reports no model artifact to judge"
        )
    return judge_job_request(run, candidate_artifact=job.model_artifact)


def _data_hyperparameters(config: ModelConfig) -> dict[str, str]:
    """What every job of our image needs to read and split the data and score a model."""
    hyper = {
        "label_column": config.data.schema_.label_column,
        "feature_columns": json.dumps(config.data.schema_.feature_columns),
        "task": config.data.task,
        "objective_metric": config.training.objective.metric,
    }
    if config.data.schema_.categorical_columns:  # only then: a numeric-only job's request is unchanged
        hyper["categorical_columns"] = json.dumps(config.data.schema_.categorical_columns)
    return hyper


def _data_channels(dataset_uri: str, champion: Champion | None) -> list[dict[str, Any]]:
    channels = [_channel("train", dataset_uri, "text/csv")]
    if champion is not None and champion.model_artifact:
        channels.append(_channel("champion", champion.model_artifact, "application/x-tar"))
    return channels


def _algorithm(config: ModelConfig, image: str) -> dict[str, Any]:
    metric = config.training.objective.metric
    return {
        "TrainingImage": image,
        "TrainingInputMode": "File",
        "MetricDefinitions": [{"Name": f"validation:{metric}", "Regex": f"validation:{metric}=([-0-9.eE]+)"}],
    }


def _tags(config: ModelConfig, run_id: str) -> list[dict[str, str]]:
    return [{"Key": "modelops:model", "Value": config.name}, {"Key": "modelops:run", "Value": run_id}]


def worst_case_seconds(training: dict[str, Any]) -> int:
    """How long the job can take before the workflow stops waiting for it."""
    stopping = training["StoppingCondition"]
    return int(
        stopping.get("MaxWaitTimeInSeconds", 0) + stopping["MaxRuntimeInSeconds"] + POLL_MARGIN_SECONDS
    )


def explain_training_failure(run: Run, *, jobs: TrainingJobs, judge: bool = False) -> NoReturn:
    """Raise TrainingFailedError with SageMaker's own FailureReason and secondary status, of the
    training job or (`judge`) of the judge job."""
    name = run.judge_job_name if judge else run.training_job_name
    if name is None:
        raise ConfigError(f"model {run.model}: this run has no judge job")
    job = jobs.describe(name)
    reason = job.failure_reason or ""
    if job.secondary_status in {"MaxRuntimeExceeded", "MaxWaitTimeExceeded"}:
        limit = (
            f"the judge's limit of {JUDGE_MAX_RUNTIME_SECONDS} s"
            if judge
            else f"training.max_runtime_seconds={run.training['StoppingCondition']['MaxRuntimeInSeconds']}"
        )
        reason = f"{job.secondary_status}: exceeded {limit}. {reason}".strip()
    kind = "judge job" if judge else "training job"
    raise TrainingFailedError(
        f"{kind} {job.name} {job.status} ({job.secondary_status}): {reason or 'no reason given'}"
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
