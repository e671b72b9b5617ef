"""The judge job: a team image's candidate is scored by the stack's own image (steps/training.py),
and EvaluateModel reads the judge's evaluation, never the team image's own."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
from modelops.config import load_config_file
from modelops.errors import TrainingFailedError
from modelops.ports import TrainingJob
from modelops.run import Run
from modelops.steps.evaluation import evaluate
from modelops.steps.resolve import resolve
from modelops.steps.training import (
    JUDGE_MAX_RUNTIME_SECONDS,
    explain_training_failure,
    prepare_judge,
)

ROOT = Path(__file__).resolve().parents[3]
OUR_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/modelops-serving:train"
TEAM_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/team-trainer:7"
STACK = "a-rather-long-stack-name-for-iam"
CHAMPION = "s3://bucket/models/churn/old-job/output/model.tar.gz"


class _Store:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    def get_model_document(self, model: str) -> dict[str, Any]:
        return self.document

    def get_doc(self, model: str, key: str) -> dict[str, Any] | None:
        return {"version": "3", "model_artifact": CHAMPION} if key == "CHAMPION" else None


class _Jobs:
    def __init__(self, **jobs: TrainingJob) -> None:
        self.jobs = {job.name: job for job in jobs.values()}

    def describe(self, name: str) -> TrainingJob:
        return self.jobs[name]


class _Objects:
    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    def size(self, bucket: str, key: str) -> int | None:
        data = self.files.get(f"s3://{bucket}/{key}")
        return None if data is None else len(data)

    def read(self, bucket: str, key: str) -> bytes:
        return self.files[f"s3://{bucket}/{key}"]


def _run(**training: Any) -> Run:
    document = load_config_file(ROOT / "models" / "churn.yaml").to_document()
    document["training"].update(training)
    return resolve(
        {
            "model": "churn",
            "trigger": "manual",
            "dataset": {"key": "incoming/churn/d.csv"},
            "idempotency_key": "k",
        },
        execution_name="run-1",
        store=_Store(document),  # type: ignore[arg-type]
        objects=None,  # type: ignore[arg-type]
        bucket="bucket",
        stack_name=STACK,
        sagemaker_role_arn="arn:aws:iam::123456789012:role/sm",
        training_image=OUR_IMAGE,
        poll_seconds=30,
    )


def _tarball(evaluation: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = json.dumps(evaluation).encode()
        info = tarfile.TarInfo("evaluation.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _job(
    name: str, artifact: str | None = None, status: str = "Completed", reason: str | None = None
) -> TrainingJob:
    return TrainingJob(name, status, status, reason, artifact)


@pytest.mark.parametrize(
    "training",
    [
        {},
        {"image": OUR_IMAGE},
        {"image": TEAM_IMAGE, "script": {"source": "s3://b/code.tar.gz", "entry_point": "t.py"}},
    ],
    ids=["built-in", "our-image-named", "team-image-running-our-harness"],
)
def test_models_trained_by_our_train_get_no_judge_job(training):
    run = _run(**training)
    assert run.judge_image is None and run.judge_job_name is None
    assert run.to_payload()["judge_job_name"] is None  # the workflow's NeedsJudge choice reads it


def test_a_team_images_candidate_gets_a_judge_job_of_our_image_on_the_same_data():
    # Given a model trained by a team image, with a champion and a seed of its own
    run = _run(image=TEAM_IMAGE, hyperparameters={"seed": 7, "eta": 0.3})
    assert run.judge_image == OUR_IMAGE
    assert run.training_image == TEAM_IMAGE

    # When the training job completed and PrepareJudge builds the judge's request
    candidate = f"s3://bucket/models/churn/{run.training_job_name}/output/model.tar.gz"
    request = prepare_judge(run, jobs=_Jobs(t=_job(run.training_job_name, candidate)))

    # Then the judge runs our image in judge mode on the training's data, candidate and champion
    assert request["TrainingJobName"] == run.judge_job_name
    assert request["TrainingJobName"].startswith(STACK[:24] + "-") and len(request["TrainingJobName"]) <= 63
    assert request["TrainingJobName"].endswith("-judge")
    assert request["AlgorithmSpecification"]["TrainingImage"] == OUR_IMAGE
    channels = {
        c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in request["InputDataConfig"]
    }
    assert channels == {
        "train": "s3://bucket/incoming/churn/d.csv",
        "champion": CHAMPION,
        "candidate": candidate,
    }
    hyper = request["HyperParameters"]
    assert hyper["modelops_judge"] == "true"
    assert hyper["seed"] == "7"  # the split's own hyperparameters are the training's
    assert "eta" not in hyper and "algorithm" not in hyper  # the team's mean nothing to the judge
    assert hyper["label_column"] == run.training["HyperParameters"]["label_column"]
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": JUDGE_MAX_RUNTIME_SECONDS}
    assert request["EnableManagedSpotTraining"] is False
    assert request["RoleArn"] == run.training["RoleArn"]
    assert request["OutputDataConfig"] == run.training["OutputDataConfig"]


def test_evaluate_reads_the_judges_evaluation_and_keeps_the_candidates_artifact():
    run = _run(image=TEAM_IMAGE)
    assert run.judge_job_name is not None
    candidate = "s3://bucket/models/churn/t/output/model.tar.gz"
    judged = "s3://bucket/models/churn/j/output/model.tar.gz"
    jobs = _Jobs(t=_job(run.training_job_name, candidate), j=_job(run.judge_job_name, judged))
    lie = {"metric": "auc", "candidate": 0.99, "champion": None, "n_validation": 10}
    truth = {"metric": "auc", "candidate": 0.71, "champion": 0.8, "n_validation": 80}
    objects = _Objects({candidate: _tarball(lie), judged: _tarball(truth)})

    result = evaluate(run, jobs=jobs, objects=objects)  # type: ignore[arg-type]

    assert (result.decision, result.candidate, result.champion) == ("not_better", 0.71, 0.8)
    assert result.model_artifact == candidate  # what is registered and built: the team's model


def test_a_failed_judge_is_explained_with_its_own_failure_reason():
    run = _run(image=TEAM_IMAGE)
    assert run.judge_job_name is not None
    jobs = _Jobs(
        j=_job(run.judge_job_name, status="Failed", reason="AlgorithmError: candidate model is unusable: x")
    )
    with pytest.raises(
        TrainingFailedError, match=r"judge job .*-judge Failed \(Failed\): AlgorithmError: candidate"
    ):
        explain_training_failure(run, jobs=jobs, judge=True)  # type: ignore[arg-type]
