"""ResolveRequest: the execution input becomes the run every later state reads (`$.run`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from modelops.config import ModelConfig, parse_config
from modelops.errors import RequestError, UnknownModelError
from modelops.ports import ObjectStore, Store
from modelops.run import CanaryTimes, Champion, DatasetObject, Limits, Restore, Run
from modelops.steps.dataset import newest_object
from modelops.steps.training import (
    JUDGE_MAX_RUNTIME_SECONDS,
    POLL_MARGIN_SECONDS,
    judge_job_name,
    needs_judge,
    training_job_request,
    worst_case_seconds,
)
from modelops.training_image import default_training_image
from modelops.triggers import parse_execution_input


def load_model(store: Store, model: str) -> ModelConfig:
    """The model's stored config; UnknownModelError when `modelops model put` never stored one."""
    document = store.get_model_document(model)
    if document is None:
        raise UnknownModelError(f"model {model!r} is not configured; run `modelops model put <file>` first")
    return parse_config(document, source=f"stored config of model {model!r}")


def restorable(
    store: Store, model: str, version: str, *, recovered: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The record of `version` (VERSION#<v>, or one `recovered` from older runs' records) if it can
    be brought back: built and recorded, once promoted, and not what serves now. RequestError
    saying which of these fails."""
    doc = recovered or store.get_doc(model, f"VERSION#{version}")
    if doc is None:
        known = [
            d.get("version") for d in store.query_docs(model, "VERSION#", limit=50) if d.get("promoted_at")
        ]
        raise RequestError(
            f"version {version} of {model} is unknown: no run recorded it"
            + (f" (versions that were promoted: {', '.join(str(v) for v in known)})" if known else "")
        )
    if not doc.get("promoted_at"):
        raise RequestError(
            f"version {version} of {model} was never promoted (its run {doc.get('run_id')} ended "
            f"{doc.get('status')}): only a version that served as the stable can be brought back"
        )
    champion = store.get_doc(model, "CHAMPION") or {}
    if str(champion.get("version")) == str(version) and champion.get("image") == doc.get("image"):
        raise RequestError(f"version {version} of {model} is already serving (the champion): nothing to do")
    return doc


def resolve(
    raw_request: Any,
    *,
    execution_name: str,
    store: Store,
    objects: ObjectStore,
    bucket: str,
    stack_name: str,
    sagemaker_role_arn: str,
    training_image: str,
    poll_seconds: int,
    recorded_image: Callable[[], str | None] = lambda: None,
) -> Run:
    """Check the request (RequestError naming the field), load the model's config, pick the
    dataset (the one named, or the newest under the model's prefix) and the champion, and decide
    the training job. The image: the model's training.image, else `training_image` (the stack's
    TrainingImage parameter), else the one `modelops bootstrap` recorded (`recorded_image()`);
    TrainingImageMissingError before any of them exists."""
    request = parse_execution_input(raw_request, bucket=bucket)
    config = load_model(store, request.model)
    restore = None
    if request.restore is not None:
        doc = restorable(store, config.name, request.restore.version)
        restore = Restore(
            version=str(doc["version"]),
            image=doc["image"],
            package_arn=doc["package_arn"],
            group=doc["group"],
            model_artifact=doc.get("model_artifact"),
            metric=doc.get("metric"),
            value=doc.get("value"),
            smoke_sample=doc.get("smoke_sample") or [],
            now=request.restore.now,
            reason=request.restore.reason,
            requested_by=request.restore.requested_by,
        )
    if not (config.training.image and config.training.script):
        # The job runs our image, or a team's image whose candidate our image judges: either way
        # the stack's own image must exist (only a team image running our harness needs none).
        training_image = default_training_image(training_image, recorded_image, stack=stack_name)
    if restore is not None:  # trains nothing: the data its version was trained on, for the record
        dataset = DatasetObject.model_validate(doc["dataset"])
    elif request.dataset is not None:
        ref = request.dataset
        dataset = DatasetObject(bucket=ref.bucket or bucket, key=ref.key, version_id=ref.version_id)
    else:
        dataset = DatasetObject(bucket=bucket, key=newest_object(objects, bucket, config.data_prefix)[0])
    stored = store.get_doc(config.name, "CHAMPION")
    champion = Champion.model_validate(stored) if stored else None
    training = training_job_request(
        config,
        run_id=execution_name,
        stack=stack_name,
        bucket=bucket,
        dataset=dataset,
        champion=champion,
        role_arn=sagemaker_role_arn,
        default_image=training_image,
    )
    judged = needs_judge(config, training_image)
    polls = max(1, poll_seconds)
    return Run(
        run_id=execution_name,
        model=config.name,
        config=config,
        stack=stack_name,
        request=request,
        dataset=dataset,
        training=training,
        champion=champion,
        poll_seconds=poll_seconds,
        limits=Limits(
            training_polls=max(1, worst_case_seconds(training) // polls),
            judge_polls=max(1, (JUDGE_MAX_RUNTIME_SECONDS + POLL_MARGIN_SECONDS) // polls),
        ),
        judge_image=training_image if judged else None,
        judge_job_name=judge_job_name(stack_name, config.name, execution_name) if judged else None,
        canary=CanaryTimes(
            bake_seconds=config.canary.bake_seconds, watch_seconds=config.canary.watch_seconds
        ),
        restore=restore,
    )
