"""Workflow steps other than the rollout itself: start, resolve, lock, validate, evaluate, register,
build, record history, and the alarm callback. Each function takes its adapters as arguments.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from datetime import UTC, datetime
from typing import Any

from modelops.adapters.aws import error_code
from modelops.adapters.store import StateStore
from modelops.canary import parse_alarm_name
from modelops.config import ModelConfig, parse_config
from modelops.dataset import validate_csv
from modelops.errors import (
    BuildFailedError,
    DatasetInvalidError,
    EvaluationError,
    TrainingFailedError,
    UnknownModelError,
)
from modelops.evaluation import judge, read_evaluation_from_tarball
from modelops.requests import (
    PipelineRequest,
    parse_alarm_event,
    parse_execution_input,
    queued_request,
    safe_name,
)
from modelops.rollout import require_digest
from modelops.rollout_service import relevant_alarms

MAX_ARTIFACT_BYTES = 512 * 1024 * 1024


def load_model(store: StateStore, model: str) -> ModelConfig:
    document = store.get_model_document(model)
    if document is None:
        raise UnknownModelError(f"model {model!r} is not configured; run `modelops model put <file>` first")
    return parse_config(document, source=f"stored config of model {model!r}")


# --- start ---------------------------------------------------------------------------------------
def start_run(
    request: PipelineRequest, *, store: StateStore, sfn: Any, state_machine_arn: str
) -> dict[str, Any]:
    """Start the workflow for `request` unless an execution with its name already exists."""
    load_model(store, request.model)  # unknown models are refused here, before anything starts
    name = request.execution_name()
    try:
        response = sfn.start_execution(
            stateMachineArn=state_machine_arn, name=name, input=request.model_dump_json()
        )
    except Exception as exc:
        if error_code(exc) == "ExecutionAlreadyExists":
            return {
                "started": False,
                "execution_name": name,
                "reason": "duplicate: this trigger already started a run",
            }
        raise
    return {"started": True, "execution_name": name, "execution_arn": response["executionArn"]}


# --- resolve -------------------------------------------------------------------------------------
def resolve(
    raw_request: Any,
    *,
    execution_name: str,
    store: StateStore,
    s3: Any,
    bucket: str,
    stack_name: str,
    sagemaker_role_arn: str,
    training_image: str,
    poll_seconds: int,
) -> dict[str, Any]:
    """Turn the execution input into the run context every later state reads."""
    request = parse_execution_input(raw_request, bucket=bucket)
    config = load_model(store, request.model)
    dataset = request.dataset.model_dump() if request.dataset else None
    if dataset is None:
        dataset = {
            "bucket": bucket,
            "key": _newest(s3, bucket, config.data_prefix)[0],
            "version_id": None,
        }
    dataset["bucket"] = dataset.get("bucket") or bucket
    champion = store.get_doc(config.name, "CHAMPION")
    job_name = training_job_name(stack_name, config.name, execution_name)
    output_prefix = f"s3://{bucket}/models/{config.name}"
    hyper = {
        **{
            k: str(v).lower() if isinstance(v, bool) else str(v)
            for k, v in config.training.hyperparameters.items()
        },
        "label_column": config.data.schema_.label_column,
        "feature_columns": json.dumps(config.data.schema_.feature_columns),
        "task": config.data.task,
        "objective_metric": config.training.objective.metric,
        "fault_error_rate": str(config.serving.fault_error_rate),
        "fault_latency_ms": str(config.serving.fault_latency_ms),
    }
    channels: list[dict[str, Any]] = [
        _channel("train", f"s3://{dataset['bucket']}/{dataset['key']}", "text/csv")
    ]
    if champion and champion.get("model_artifact"):
        channels.append(_channel("champion", champion["model_artifact"], "application/x-tar"))
    stopping: dict[str, int] = {"MaxRuntimeInSeconds": config.training.max_runtime_seconds}
    if config.training.managed_spot:
        stopping["MaxWaitTimeInSeconds"] = (
            config.training.max_wait_seconds or config.training.max_runtime_seconds
        )
    training = {
        "TrainingJobName": job_name,
        "AlgorithmSpecification": {
            "TrainingImage": config.training.image or training_image,
            "TrainingInputMode": "File",
            "MetricDefinitions": [
                {
                    "Name": f"validation:{config.training.objective.metric}",
                    "Regex": f"validation:{config.training.objective.metric}=([-0-9.eE]+)",
                }
            ],
        },
        "RoleArn": sagemaker_role_arn,
        "InputDataConfig": channels,
        "OutputDataConfig": {"S3OutputPath": output_prefix},
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
            {"Key": "modelops:run", "Value": execution_name},
        ],
    }
    worst_case = stopping.get("MaxWaitTimeInSeconds", 0) + config.training.max_runtime_seconds + 900
    return {
        "run_id": execution_name,
        "model": config.name,
        "stack": stack_name,
        "request": request.model_dump(mode="json"),
        "config": config.to_document(),
        "dataset": dataset,
        "training": training,
        "champion": champion,
        "poll_seconds": poll_seconds,
        "limits": {"training_polls": max(1, worst_case // max(1, poll_seconds))},
        "canary": {"bake_seconds": config.canary.bake_seconds, "watch_seconds": config.canary.watch_seconds},
    }


#: Triggers whose run trains "the data that arrived": an upload, or the follow-up of uploads
#: coalesced behind a holder. They defer to newer data and never retrain an object already trained.
#: A schedule or a manual start asks for a run and gets one.
DATA_TRIGGERS = ("s3", "queued")


def _newer_or_trained(
    run: dict[str, Any], config: ModelConfig, s3: Any, store: StateStore
) -> tuple[dict[str, str] | None, dict[str, str] | None]:
    """Checked while holding the lock, for a run started by data (DATA_TRIGGERS) on an object under
    the model's prefix: (why it must not train or None, the object it trains as {key, etag} or None).

    Uploads can be delivered, and runs reach the lock, in any order. A run that finds a newer object
    defers to it: the newer object's own run trains it, or, if that run was coalesced, the follow-up
    does (follow-ups take the newest object). A run whose object (same key and ETag) was already
    trained, typically the follow-up of a burst whose newest upload's own run trained it, has nothing
    new (`finish` records TRAINED once a run's candidate was evaluated). Checking under the lock,
    each holder sees every upload before it, so the last run to train uses the newest data and
    none retrains older data after it; only holders list the prefix, so a burst's coalesced runs
    cost one conditional write each."""
    dataset = run["dataset"]
    by_data = run["request"].get("trigger") in DATA_TRIGGERS
    if not by_data or not dataset["key"].startswith(config.data_prefix):
        return None, None
    try:
        key, etag = _newest(s3, dataset["bucket"], config.data_prefix)
    except DatasetInvalidError:
        return None, None  # the object is gone: validation reports it
    if key != dataset["key"]:
        newer = {
            "superseded_by": key,
            "message": f"superseded: {key} is newer than {dataset['key']} and is trained instead",
        }
        return newer, None
    trained = store.get_doc(config.name, "TRAINED")
    if trained and (trained.get("key"), trained.get("etag")) == (key, etag):
        done = {
            "already_trained_by": trained["run_id"],
            "message": f"{key} (ETag {etag}) was already trained by {trained['run_id']}; nothing newer to "
            "train (start the model manually to retrain it)",
        }
        return done, None
    return None, {"key": key, "etag": etag}


def training_job_name(stack: str, model: str, run_id: str) -> str:
    """<= 63 chars, unique per run, prefixed with the stack so IAM can scope `training-job/<stack>-*`."""
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:10]
    return safe_name(f"{stack[:24]}-{model[:26]}-{digest}", 63)


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


def _newest(s3: Any, bucket: str, prefix: str) -> tuple[str, str]:
    """(key, ETag) of the most recently modified non-empty object under `prefix`; S3 keeps
    LastModified to the second, so among objects of the same second the greatest key wins (name
    uploads by time)."""
    newest: tuple[datetime, str, str] | None = None
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if obj["Key"].endswith("/") or obj.get("Size", 0) == 0:
                continue
            candidate = (obj["LastModified"], obj["Key"], str(obj.get("ETag", "")).strip('"'))
            if newest is None or candidate[:2] > newest[:2]:
                newest = candidate
    if newest is None:
        raise DatasetInvalidError(f"no dataset under s3://{bucket}/{prefix}; upload a CSV there first")
    return newest[1], newest[2]


# --- lock and history ----------------------------------------------------------------------------
def acquire(
    run: dict[str, Any], *, store: StateStore, s3: Any, sfn: Any, state_machine_arn: str
) -> dict[str, Any]:
    """Take the model's lock. When another run holds it, this request is coalesced: stored as the
    model's PENDING request (newest wins) and run after the holder finishes. A data-triggered run
    that gets the lock but has newer or already-trained data (`_newer_or_trained`) gives it back at
    once, starting the follow-up of anything coalesced meanwhile."""
    config = ModelConfig.model_validate(run["config"])
    ttl = (
        config.training.max_runtime_seconds
        + (config.training.max_wait_seconds or 0)
        + 2 * config.canary.ready_timeout_seconds
        + config.canary.bake_seconds
        + config.canary.watch_seconds
        + 3600
    )
    result = store.acquire_lock(config.name, run["run_id"], ttl)
    if not result.acquired:
        store.put_doc(config.name, "PENDING", run["request"])
        return {
            "acquired": False,
            "holder": result.holder,
            "message": f"coalesced: {result.holder} is rolling out {config.name}; this request runs after it finishes",
        }
    try:
        skip, trains = _newer_or_trained(run, config, s3, store)
    except Exception:
        store.release_lock(config.name, run["run_id"])  # the retried state takes it again
        raise
    if skip is None:
        return {"acquired": True, "expires_at": result.expires_at, "object": trains}
    released = release(run, store=store, sfn=sfn, state_machine_arn=state_machine_arn)
    return {"acquired": False, **skip, "follow_up": released["follow_up"]}


def release(run: dict[str, Any], *, store: StateStore, sfn: Any, state_machine_arn: str) -> dict[str, Any]:
    """Release the lock; if requests were coalesced meanwhile, start one run for the newest."""
    model = run["model"]
    released = store.release_lock(model, run["run_id"])
    pending = store.pop_pending(model)
    follow_up = None
    if pending is not None:
        request = queued_request(PipelineRequest.model_validate(pending), run["run_id"])
        name = request.execution_name()
        try:
            sfn.start_execution(stateMachineArn=state_machine_arn, name=name, input=request.model_dump_json())
            follow_up = name
        except Exception as exc:
            if error_code(exc) != "ExecutionAlreadyExists":
                store.put_doc(model, "PENDING", pending)  # keep it for the next release
                raise
            follow_up = name
    return {"released": released, "follow_up": follow_up}


#: A registered version's approval once its run ends (SageMaker Model Registry semantics).
APPROVAL_BY_STATUS = {
    "promoted": "Approved",
    "rolled_back": "Rejected",
    "rollback_failed": "Rejected",
    "failed": "Rejected",
}


def finish(
    state: dict[str, Any],
    status: str,
    *,
    store: StateStore,
    sagemaker: Any | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """Record the run's outcome in history (and the new champion when promoted), set the registered
    model package's approval (Approved when promoted, Rejected when it failed or was rolled back);
    return the notification."""
    package_arn = (state.get("package") or {}).get("package_arn")
    approval = APPROVAL_BY_STATUS.get(status)
    if sagemaker is not None and package_arn and approval:
        sagemaker.update_model_package(
            ModelPackageArn=package_arn,
            ModelApprovalStatus=approval,
            ApprovalDescription=f"modelops run {state['run']['run_id']}: {status}"[:1000],
        )
    run = state["run"]
    model = run["model"]
    when = datetime.fromtimestamp(now if now is not None else time.time(), UTC).isoformat(timespec="seconds")
    error = state.get("error") or {}
    error_name = str(error.get("Error", "")) if error else ""
    if error_name.startswith("States."):  # a Fail state may not reuse the reserved States.* names
        error_name = "Workflow" + error_name.removeprefix("States.") + "Error"
    cause = _cause_text(error.get("Cause")) if error else ""
    build = state.get("build") or {}
    package = state.get("package") or {}
    evaluation = state.get("evaluation") or {}
    record = {
        "run_id": run["run_id"],
        "model": model,
        "status": status,
        "finished_at": when,
        "trigger": run.get("request", {}).get("trigger"),
        "dataset": run.get("dataset"),
        "version": package.get("version"),
        "image": build.get("image"),
        "evaluation": evaluation or None,
        "analysis": state.get("analysis"),
        "error": error_name or None,
        "cause": cause or None,
    }
    store.put_doc(model, f"HISTORY#{when}#{run['run_id']}", record)
    trained = (state.get("lock") or {}).get("object")
    if trained and evaluation:  # its candidate was trained and evaluated: see _newer_or_trained
        store.put_doc(model, "TRAINED", {**trained, "run_id": run["run_id"]})
    if status == "promoted":
        store.put_doc(
            model,
            "CHAMPION",
            {
                "version": package.get("version"),
                "image": build.get("image"),
                "model_artifact": evaluation.get("model_artifact"),
                "metric": evaluation.get("metric"),
                "value": evaluation.get("candidate"),
                "run_id": run["run_id"],
                "promoted_at": when,
            },
        )
    store.clear_rollout(model, run["run_id"])
    subject, message = _notification(record)
    return {
        "status": status,
        "subject": subject,
        "message": message,
        "error": error_name or "RunFailed",
        "cause": cause or message,
    }


def _cause_text(cause: Any) -> str:
    """Lambda errors arrive as a JSON payload with errorMessage; keep the human part."""
    if isinstance(cause, str):
        try:
            parsed = json.loads(cause)
        except ValueError:
            return cause[:2000]
        if isinstance(parsed, dict) and "errorMessage" in parsed:
            return str(parsed["errorMessage"])[:2000]
        return cause[:2000]
    return json.dumps(cause)[:2000] if cause is not None else ""


def _notification(record: dict[str, Any]) -> tuple[str, str]:
    model, status, version = record["model"], record["status"], record.get("version")
    titles = {
        "promoted": f"[modelops] {model}: version {version} promoted",
        "rejected": f"[modelops] {model}: candidate rejected by evaluation",
        "coalesced": f"[modelops] {model}: request coalesced",
        "rolled_back": f"[modelops] {model}: version {version} ROLLED BACK",
        "failed": f"[modelops] {model}: run failed",
        "rollback_failed": f"[modelops] {model}: ROLLBACK FAILED - action needed",
    }
    lines = [f"run {record['run_id']} finished {status} at {record['finished_at']}"]
    if record.get("image"):
        lines.append(f"image: {record['image']}")
    if record.get("evaluation"):
        lines.append(f"evaluation: {record['evaluation'].get('reason', '')}")
    if record.get("error"):
        lines.append(f"error: {record['error']}: {record.get('cause') or ''}")
    return titles.get(status, f"[modelops] {model}: {status}")[:100], "\n".join(lines)


# --- dataset, evaluation, registry, build --------------------------------------------------------
def validate_dataset(run: dict[str, Any], *, s3: Any) -> dict[str, Any]:
    config = ModelConfig.model_validate(run["config"])
    ds = run["dataset"]
    name = f"s3://{ds['bucket']}/{ds['key']}"
    kwargs = {"Bucket": ds["bucket"], "Key": ds["key"]}
    if ds.get("version_id"):
        kwargs["VersionId"] = ds["version_id"]
    try:
        head = s3.head_object(**kwargs)
    except Exception as exc:
        if error_code(exc) in {"404", "NoSuchKey", "NotFound", "NoSuchVersion"}:
            raise DatasetInvalidError(f"{name}: object not found (deleted after the trigger?)") from None
        raise
    if head["ContentLength"] > config.data.schema_.max_bytes:
        raise DatasetInvalidError(
            f"{name}: {head['ContentLength']} bytes exceeds max_bytes {config.data.schema_.max_bytes}"
        )
    body = s3.get_object(**kwargs)["Body"].read()
    report = validate_csv(
        body,
        config.data.schema_,
        name=name,
        task=config.data.task,
        smoke_size=config.canary.smoke_sample_size,
    )
    summary: dict[str, Any] = {"rows": report.rows, "smoke_sample": report.smoke_sample}
    if report.target is not None:
        summary["target"] = report.target
    else:
        summary["labels"] = report.label_distribution
    return summary


def explain_training_failure(run: dict[str, Any], *, sagemaker: Any) -> None:
    """Raise TrainingFailedError with SageMaker's own FailureReason and secondary status."""
    job = sagemaker.describe_training_job(TrainingJobName=run["training"]["TrainingJobName"])
    status, secondary = job.get("TrainingJobStatus"), job.get("SecondaryStatus")
    reason = job.get("FailureReason") or ""
    if secondary in {"MaxRuntimeExceeded", "MaxWaitTimeExceeded"}:
        reason = (
            f"{secondary}: exceeded training.max_runtime_seconds="
            f"{run['training']['StoppingCondition']['MaxRuntimeInSeconds']}. {reason}"
        ).strip()
    raise TrainingFailedError(
        f"training job {job['TrainingJobName']} {status} ({secondary}): {reason or 'no reason given'}"
    )


def evaluate(run: dict[str, Any], *, sagemaker: Any, s3: Any) -> dict[str, Any]:
    config = ModelConfig.model_validate(run["config"])
    job = sagemaker.describe_training_job(TrainingJobName=run["training"]["TrainingJobName"])
    artifact = (job.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
    if not artifact:
        raise EvaluationError(f"training job {job['TrainingJobName']} reports no model artifact")
    bucket, key = _split_s3(artifact)
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except Exception as exc:
        if error_code(exc) in {"404", "NoSuchKey", "NotFound"}:
            raise EvaluationError(f"{artifact}: model artifact missing") from None
        raise
    if head["ContentLength"] > MAX_ARTIFACT_BYTES:
        raise EvaluationError(f"{artifact}: {head['ContentLength']} bytes is too large to inspect")
    data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    evaluation = read_evaluation_from_tarball(data, source=artifact)
    verdict = judge(evaluation, config.training.objective)
    return {**verdict.to_dict(), "model_artifact": artifact, "n_validation": evaluation.n_validation}


def register(run: dict[str, Any], evaluation: dict[str, Any], *, sagemaker: Any) -> dict[str, Any]:
    """Register the candidate as a new version in the model's SageMaker model package group."""
    group = safe_name(f"{run['stack']}-{run['model']}", 63)
    try:
        sagemaker.create_model_package_group(
            ModelPackageGroupName=group, ModelPackageGroupDescription=f"modelops versions of {run['model']}"
        )
    except Exception as exc:
        if error_code(exc) not in {"ValidationException", "ResourceInUse", "ConflictException"}:
            raise
    existing = sagemaker.list_model_packages(
        ModelPackageGroupName=group, SortBy="CreationTime", SortOrder="Descending"
    )
    for package in existing.get("ModelPackageSummaryList", []):
        described = sagemaker.describe_model_package(ModelPackageName=package["ModelPackageArn"])
        if (described.get("CustomerMetadataProperties") or {}).get("run_id") == run["run_id"]:
            return {
                "version": str(described["ModelPackageVersion"]),
                "package_arn": package["ModelPackageArn"],
                "group": group,
            }
    response = sagemaker.create_model_package(
        ModelPackageGroupName=group,
        ModelPackageDescription=f"run {run['run_id']}: {evaluation.get('reason', '')}"[:1000],
        ModelApprovalStatus="PendingManualApproval",
        InferenceSpecification={
            "Containers": [
                {
                    "Image": run["training"]["AlgorithmSpecification"]["TrainingImage"],
                    "ModelDataUrl": evaluation["model_artifact"],
                }
            ],
            "SupportedContentTypes": ["application/json", "text/csv"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
        CustomerMetadataProperties={
            "run_id": run["run_id"],
            "metric": str(evaluation.get("metric")),
            "candidate": str(evaluation.get("candidate")),
        },
    )
    arn = response["ModelPackageArn"]
    version = sagemaker.describe_model_package(ModelPackageName=arn)["ModelPackageVersion"]
    return {"version": str(version), "package_arn": arn, "group": group}


def start_build(
    run: dict[str, Any],
    evaluation: dict[str, Any],
    package: dict[str, Any],
    *,
    codebuild: Any,
    project: str,
    repository_uri: str,
) -> dict[str, Any]:
    tag = safe_name(f"{run['model']}-v{package['version']}-{run['run_id'][-8:]}", 128)
    response = codebuild.start_build(
        projectName=project,
        idempotencyToken=hashlib.sha256(f"{run['run_id']}|build".encode()).hexdigest()[:64],
        environmentVariablesOverride=[
            {"name": "MODEL_ARTIFACT_S3_URI", "value": evaluation["model_artifact"], "type": "PLAINTEXT"},
            {"name": "IMAGE_REPOSITORY_URI", "value": repository_uri, "type": "PLAINTEXT"},
            {"name": "IMAGE_TAG", "value": tag, "type": "PLAINTEXT"},
            {"name": "MODEL_NAME", "value": run["model"], "type": "PLAINTEXT"},
            {"name": "MODEL_VERSION", "value": str(package["version"]), "type": "PLAINTEXT"},
        ],
    )
    return {"build_id": response["build"]["id"], "tag": tag}


def build_status(
    build: dict[str, Any], *, codebuild: Any, ecr: Any, repository_name: str, repository_uri: str
) -> dict[str, Any]:
    """{"done": bool, ...}; BuildFailedError for a failed, stopped or timed-out build."""
    builds = codebuild.batch_get_builds(ids=[build["build_id"]]).get("builds", [])
    if not builds:
        raise BuildFailedError(f"build {build['build_id']} not found")
    current = builds[0]
    status = current.get("buildStatus")
    if status == "IN_PROGRESS":
        return {**build, "done": False, "phase": current.get("currentPhase")}
    if status != "SUCCEEDED":
        phases = [p for p in current.get("phases", []) if p.get("phaseStatus") not in (None, "SUCCEEDED")]
        detail = "; ".join(
            f"{p.get('phaseType')}: {' '.join(c.get('message', '') for c in p.get('contexts', []))}".strip()
            for p in phases
        )
        raise BuildFailedError(f"image build {build['build_id']} {status}: {detail or 'see the build logs'}")
    try:
        images = ecr.describe_images(repositoryName=repository_name, imageIds=[{"imageTag": build["tag"]}])
    except Exception as exc:
        if error_code(exc) == "ImageNotFoundException":
            raise BuildFailedError(
                f"build {build['build_id']} succeeded but pushed no image tagged {build['tag']}"
            ) from None
        raise
    digest = images["imageDetails"][0]["imageDigest"]
    image = require_digest(f"{repository_uri}@{digest}")
    return {**build, "done": True, "digest": digest, "image": image}


# --- alarms ----------------------------------------------------------------------------------------
def handle_alarm(
    event: Any, *, store: StateStore, sfn: Any, alarm_prefix: str, now: float | None = None
) -> dict[str, Any]:
    """An alarm state change: fail the active rollout's bake/watch task when it counts against the
    new version; record it otherwise. Alarms of other stacks or models are ignored."""
    change = parse_alarm_event(event)
    name, state = change.alarm_name, change.state
    parsed = parse_alarm_name(name, alarm_prefix)
    if parsed is None:
        return {"action": "ignored", "reason": f"alarm {name} is not one of this stack's model alarms"}
    model, variant, kind = parsed
    if store.get_model_document(model) is None:
        return {"action": "ignored", "reason": f"alarm {name} names unknown model {model}"}
    at = now if now is not None else time.time()
    alarm = {
        "name": name,
        "state": state,
        "variant": variant,
        "kind": kind,
        "at": at,
        "reason": change.reason,
    }
    if state != "ALARM":
        return {"action": "ignored", "reason": f"{name} -> {state}"}
    rollout = store.record_alarm_on_rollout(model, alarm)
    if rollout is None:
        stamp = datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")
        store.put_doc(model, f"ALARM#{stamp}#{name}", {**alarm, "note": "fired with no rollout active"})
        return {
            "action": "recorded",
            "reason": f"no rollout of {model} active; {name} recorded in its history",
        }
    phase = rollout.get("phase")
    token = rollout.get("task_token")
    if phase not in {"bake", "watch"} or not token:
        return {
            "action": "recorded",
            "reason": f"rollout in phase {phase}; checked when the bake/watch wait starts",
        }
    if name not in relevant_alarms(rollout, phase):
        return {"action": "recorded", "reason": f"{name} does not count in phase {phase}"}
    error = "CanaryAlarmError" if phase == "bake" else "WatchAlarmError"
    try:
        sfn.send_task_failure(
            taskToken=token,
            error=error,
            cause=json.dumps({"alarm": name, "phase": phase, "reason": alarm["reason"][:500]}),
        )
    except Exception as exc:
        if error_code(exc) in {"TaskTimedOut", "InvalidToken", "TaskDoesNotExist"}:
            return {"action": "recorded", "reason": f"{phase} already over"}
        raise
    return {"action": "rollback", "run_id": rollout["run_id"], "phase": phase, "alarm": name}


def _split_s3(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise EvaluationError(f"{uri!r} is not an s3:// URI")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def read_json_object(s3: Any, bucket: str, key: str) -> Any:
    return json.load(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))


# --- canary analysis -------------------------------------------------------------------------------
def analyze_canary(
    run: dict[str, Any], *, store: StateStore, metrics: Any, now: float | None = None
) -> dict[str, Any]:
    """Alarms plus canary-versus-stable metrics over the bake window -> {"verdict": "pass"|"fail", ...}."""
    from modelops.canary import AlarmState, analyze

    config = ModelConfig.model_validate(run["config"])
    rollout = store.get_rollout(config.name)
    if rollout is None or rollout.get("run_id") != run["run_id"]:
        raise EvaluationError(f"no active rollout for run {run['run_id']}: cannot analyze the canary")
    end = datetime.fromtimestamp(now if now is not None else time.time(), UTC)
    start = datetime.fromtimestamp(float(rollout.get("bake_started_at") or rollout.get("started_at")), UTC)
    if (end - start).total_seconds() < 1:
        start = datetime.fromtimestamp(end.timestamp() - 1, UTC)
    preexisting = set(rollout.get("preexisting_alarms", []))
    alarms = [
        AlarmState(a.name, a.state, a.variant, preexisting=a.name in preexisting)
        for a in metrics.alarm_states(config.name)
    ]
    report = analyze(
        config.canary,
        canary=metrics.variant_metrics(config.name, "canary", start, end),
        stable=metrics.variant_metrics(config.name, "stable", start, end),
        alarms=alarms,
        first_version=int((rollout.get("previous_stable") or {}).get("replicas") or 0) == 0,
    )
    return {**report.to_dict(), "window": {"start": start.isoformat(), "end": end.isoformat()}}
