"""EvaluateModel: candidate versus champion, from the evaluation the training job wrote."""

from __future__ import annotations

from modelops.errors import EvaluationError
from modelops.evaluation import judge, read_evaluation_from_tarball
from modelops.ports import ObjectStore, TrainingJobs
from modelops.run import EvaluationResult, Run

#: The largest model.tar.gz this function reads (it holds the file in memory).
MAX_ARTIFACT_BYTES = 512 * 1024 * 1024


def evaluate(run: Run, *, jobs: TrainingJobs, objects: ObjectStore) -> EvaluationResult:
    """The verdict of the model's objective on the training job's evaluation.json; EvaluationError
    when the artifact or its evaluation is missing or malformed."""
    job = jobs.describe(run.training_job_name)
    artifact = job.model_artifact
    if not artifact:
        raise EvaluationError(f"training job {job.name} reports no model artifact")
    bucket, key = split_s3_uri(artifact)
    size = objects.size(bucket, key)
    if size is None:
        raise EvaluationError(f"{artifact}: model artifact missing")
    if size > MAX_ARTIFACT_BYTES:
        raise EvaluationError(f"{artifact}: {size} bytes is too large to inspect")
    evaluation = read_evaluation_from_tarball(objects.read(bucket, key), source=artifact)
    verdict = judge(evaluation, run.config.training.objective)
    return EvaluationResult(
        **verdict.to_dict(), model_artifact=artifact, n_validation=evaluation.n_validation
    )


def split_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise EvaluationError(f"{uri!r} is not an s3:// URI")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key
