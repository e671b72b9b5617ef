"""EvaluateModel: candidate versus champion, from the evaluation the training job (or the judge job) wrote."""

from __future__ import annotations

import json
from typing import Any

from modelops.drift import BASELINE_FILE, parse_baseline
from modelops.errors import DriftError, EvaluationError
from modelops.evaluation import judge, read_evaluation_from_tarball, read_tarball_member
from modelops.ports import ObjectStore, TrainingJobs
from modelops.run import EvaluationResult, Run

#: The largest model.tar.gz this function reads (it holds the file in memory).
MAX_ARTIFACT_BYTES = 512 * 1024 * 1024


def evaluate(run: Run, *, jobs: TrainingJobs, objects: ObjectStore) -> EvaluationResult:
    """The verdict of the model's objective on the evaluation.json of the training job or, for a
    team image's candidate, of the judge job (never the team image's own); EvaluationError when an
    artifact or the evaluation is missing or malformed. The verdict's model_artifact is always
    the training job's: the judge's artifact holds the evaluation only."""
    artifact = _model_artifact(jobs, run.training_job_name)
    judged_by = _model_artifact(jobs, run.judge_job_name) if run.judge_job_name else artifact
    bucket, key = split_s3_uri(judged_by)
    size = objects.size(bucket, key)
    if size is None:
        raise EvaluationError(f"{judged_by}: model artifact missing")
    if size > MAX_ARTIFACT_BYTES:
        raise EvaluationError(f"{judged_by}: {size} bytes is too large to inspect")
    data = objects.read(bucket, key)
    evaluation = read_evaluation_from_tarball(data, source=judged_by)
    verdict = judge(evaluation, run.config.training.objective)
    return EvaluationResult(
        **verdict.to_dict(),
        model_artifact=artifact,
        n_validation=evaluation.n_validation,
        baseline=baseline_record(data, source=judged_by),
    )


def baseline_record(data: bytes, *, source: str) -> dict[str, Any] | None:
    """Where the version's drift baseline is (the artifact holding baseline.json: the training
    job's, or the judge job's for a team image) and its size; a note instead when the artifact
    has none or an unusable one (the run goes on: drift is then not monitored for it)."""
    raw = read_tarball_member(data, BASELINE_FILE, source=source)
    if raw is None:
        return {"artifact": None, "note": f"no {BASELINE_FILE} in {source}: drift is not monitored"}
    try:
        baseline = parse_baseline(json.loads(raw), source=f"{source}/{BASELINE_FILE}")
    except (ValueError, DriftError) as exc:
        return {"artifact": None, "note": f"unusable {BASELINE_FILE}: {exc}"[:500]}
    return {
        "artifact": source,
        "file": BASELINE_FILE,
        "features": len(baseline.features),
        "n_rows": baseline.n_rows,
        "prediction": baseline.prediction.kind,
    }


def _model_artifact(jobs: TrainingJobs, name: str) -> str:
    job = jobs.describe(name)
    if not job.model_artifact:
        raise EvaluationError(f"training job {job.name} reports no model artifact")
    return job.model_artifact


def split_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise EvaluationError(f"{uri!r} is not an s3:// URI")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key
