"""The local SageMaker training runner against moto's S3: lifecycle, artifacts, failures, stop and timeout."""

from __future__ import annotations

import io
import json
import tarfile
import textwrap
import threading
import time
from pathlib import Path

import boto3
import pytest
from modelops.evaluation import read_evaluation_from_tarball
from moto import mock_aws

from modelops_local.sagemaker_runner import (
    TrainingJobExistsError,
    TrainingJobNotStoppableError,
    TrainingJobState,
    TrainingRequestError,
    TrainingRunner,
)
from modelops_local.sample_data import CHURN_FEATURES, CHURN_LABEL, generate_churn_csv

ROOT = Path(__file__).resolve().parents[3]
BUCKET = "pipeline-bucket"
ROLE = "arn:aws:iam::123456789012:role/sagemaker-training"


@pytest.fixture
def s3(tmp_path):
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        data = generate_churn_csv(tmp_path / "customers.csv", 300, seed=4)
        client.upload_file(str(data), BUCKET, "incoming/churn/2026-11-22/customers.csv")
        yield client


class Updates:
    """Records every state the runner reports (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.states: list[TrainingJobState] = []

    def __call__(self, name: str, state: TrainingJobState) -> None:
        with self.lock:
            self.states.append(state)

    def secondary(self, name: str) -> list[str]:
        with self.lock:
            seen = [s.secondary_status for s in self.states if s.name == name]
        return [s for i, s in enumerate(seen) if i == 0 or seen[i - 1] != s]


@pytest.fixture
def runner_factory(tmp_path, s3):
    runners: list[TrainingRunner] = []

    def make(image_dir: Path = ROOT / "serving_image", **kwargs) -> tuple[TrainingRunner, Updates]:
        updates = Updates()
        runner = TrainingRunner(s3, tmp_path / f"work{len(runners)}", image_dir, updates, **kwargs)
        runners.append(runner)
        return runner, updates

    yield make
    for runner in runners:
        runner.shutdown(timeout=15)


def _request(
    name: str, *, channels: dict[str, str] | None = None, max_runtime: int = 120, **hyper: str
) -> dict:
    channels = channels or {"train": f"s3://{BUCKET}/incoming/churn/2026-11-22/customers.csv"}
    return {
        "TrainingJobName": name,
        "AlgorithmSpecification": {
            "TrainingImage": "123456789012.dkr.ecr.us-east-1.amazonaws.com/serving:train",
            "TrainingInputMode": "File",
            "MetricDefinitions": [{"Name": "validation:auc", "Regex": "validation:auc=([-0-9.eE]+)"}],
        },
        "RoleArn": ROLE,
        "InputDataConfig": [
            {
                "ChannelName": channel,
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri}},
                "ContentType": "text/csv" if channel == "train" else "application/x-tar",
            }
            for channel, uri in channels.items()
        ],
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/models/churn"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
        "StoppingCondition": {"MaxRuntimeInSeconds": max_runtime},
        "HyperParameters": {
            "label_column": CHURN_LABEL,
            "feature_columns": json.dumps(list(CHURN_FEATURES)),
            "task": "binary_classification",
            "objective_metric": "auc",
            "max_iter": "15",
            **hyper,
        },
        "EnableManagedSpotTraining": False,
    }


def _fake_image(tmp_path: Path, body: str) -> Path:
    """A stand-in serving image whose `train` program behaves as the test needs."""
    image = tmp_path / "fake_image"
    (image / "bin").mkdir(parents=True, exist_ok=True)
    program = image / "bin" / "train"
    program.write_text("import signal, sys, time\n" + textwrap.dedent(body))
    return image


def test_a_job_trains_and_uploads_model_tar_gz_where_sagemaker_would(s3, runner_factory):
    # Given a training request for data under incoming/
    runner, updates = runner_factory()

    # When the job runs
    runner.start(_request("stack-churn-a1"))
    state = runner.wait("stack-churn-a1", timeout=60)

    # Then it completes through SageMaker's secondary statuses
    assert state.status == "Completed", state.failure_reason
    assert updates.secondary("stack-churn-a1") == [
        "Starting",
        "Downloading",
        "Training",
        "Uploading",
        "Completed",
    ]
    assert [t["Status"] for t in state.transitions] == [
        "Starting",
        "Downloading",
        "Training",
        "Uploading",
        "Completed",
    ]
    assert all("EndTime" in t for t in state.transitions)
    assert state.start_time and state.end_time and state.start_time <= state.end_time
    assert state.arn == "arn:aws:sagemaker:us-east-1:123456789012:training-job/stack-churn-a1"
    # And the model is at <S3OutputPath>/<job>/output/model.tar.gz, evaluation.json inside
    assert state.model_artifact == f"s3://{BUCKET}/models/churn/stack-churn-a1/output/model.tar.gz"
    body = s3.get_object(Bucket=BUCKET, Key="models/churn/stack-churn-a1/output/model.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        assert {"model.joblib", "metadata.json", "evaluation.json"} <= set(tar.getnames())
        meta = json.loads(tar.extractfile("metadata.json").read())  # type: ignore[union-attr]
    assert meta["training_job"] == "stack-churn-a1"
    evaluation = read_evaluation_from_tarball(body, source=state.model_artifact)
    assert evaluation.metric == "auc" and evaluation.champion is None
    # And the final metric is what the MetricDefinition scraped from the log
    [metric] = state.final_metrics
    assert metric["MetricName"] == "validation:auc"
    assert metric["Value"] == pytest.approx(evaluation.candidate, abs=1e-6)
    assert s3.head_object(Bucket=BUCKET, Key="models/churn/stack-churn-a1/output/output.tar.gz")
    # And describe() is shaped like DescribeTrainingJob
    described = state.describe()
    assert described["TrainingJobStatus"] == "Completed"
    assert described["ModelArtifacts"] == {"S3ModelArtifacts": state.model_artifact}
    assert described["TrainingTimeInSeconds"] >= 1


def test_the_champion_channel_is_evaluated_on_the_same_holdout(s3, runner_factory):
    # Given a first model in production
    runner, _ = runner_factory()
    runner.start(_request("stack-churn-v1"))
    champion = runner.wait("stack-churn-v1", timeout=60).model_artifact
    assert champion

    # When the next job gets it as the champion channel
    runner.start(
        _request(
            "stack-churn-v2",
            channels={"train": f"s3://{BUCKET}/incoming/churn/", "champion": champion},
        )
    )
    state = runner.wait("stack-churn-v2", timeout=60)

    # Then the evaluation scores both
    assert state.status == "Completed", state.failure_reason
    body = s3.get_object(Bucket=BUCKET, Key="models/churn/stack-churn-v2/output/model.tar.gz")["Body"].read()
    evaluation = read_evaluation_from_tarball(body, source="v2")
    assert evaluation.champion is not None


def test_a_registered_team_image_runs_its_program_and_our_judge_scores_its_model(s3, runner_factory):
    # Given a team image registered as a program (test bench), whose own evaluation claims 0.99
    from modelops_local import team_image

    runner, _ = runner_factory(image_programs={team_image.TEAM_IMAGE: Path(team_image.__file__)})
    request = _request("stack-churn-team")
    request["AlgorithmSpecification"]["TrainingImage"] = team_image.TEAM_IMAGE
    runner.start(request)
    candidate = runner.wait("stack-churn-team", timeout=60)
    assert candidate.status == "Completed", candidate.failure_reason
    assert candidate.model_artifact
    own = s3.get_object(Bucket=BUCKET, Key="models/churn/stack-churn-team/output/model.tar.gz")["Body"].read()
    assert read_evaluation_from_tarball(own, source="team").candidate == team_image.CLAIMED_SCORE

    # When our image judges its model.tar.gz on the same data
    channels = {"train": f"s3://{BUCKET}/incoming/churn/", "candidate": candidate.model_artifact}
    runner.start(_request("stack-churn-team-judge", channels=channels, modelops_judge="true"))
    judged = runner.wait("stack-churn-team-judge", timeout=60)

    # Then the judge's artifact holds its own evaluation, not the team's claim, and the drift
    # baseline of the training rows (README, Drift)
    assert judged.status == "Completed", judged.failure_reason
    body = s3.get_object(Bucket=BUCKET, Key="models/churn/stack-churn-team-judge/output/model.tar.gz")[
        "Body"
    ].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        assert sorted(tar.getnames()) == ["baseline.json", "evaluation.json"]
    evaluation = read_evaluation_from_tarball(body, source="judge")
    assert evaluation.candidate != team_image.CLAIMED_SCORE and 0.5 < evaluation.candidate < 0.99


def test_a_failing_train_reports_the_failure_file_as_failure_reason(runner_factory):
    # Given hyperparameters naming a label column the data does not have
    runner, _ = runner_factory()

    # When the job runs
    runner.start(_request("stack-churn-bad", label_column="cancelled"))
    state = runner.wait("stack-churn-bad", timeout=60)

    # Then it fails with the program's own one-line reason, and uploads nothing
    assert (state.status, state.secondary_status) == ("Failed", "Failed")
    assert state.failure_reason is not None
    assert state.failure_reason.startswith(
        "AlgorithmError: label column 'cancelled' not found in customers.csv"
    )
    assert state.model_artifact is None
    assert state.exit_code == 1
    assert state.log_path is not None and "training failed" in state.log_path.read_text()


def test_an_empty_channel_fails_before_training(runner_factory):
    runner, updates = runner_factory()
    runner.start(_request("stack-churn-empty", channels={"train": f"s3://{BUCKET}/incoming/nothing-here/"}))
    state = runner.wait("stack-churn-empty", timeout=30)
    assert state.status == "Failed"
    assert state.failure_reason is not None and state.failure_reason.startswith(
        "ClientError: No S3 objects found"
    )
    assert "Training" not in updates.secondary("stack-churn-empty")


def test_max_runtime_stops_the_job(tmp_path, runner_factory):
    # Given a train program that would run for a minute and ignores SIGTERM
    image = _fake_image(
        tmp_path,
        """
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("validation:auc=0.61", flush=True)
        time.sleep(60)
        """,
    )
    runner, _ = runner_factory(image, stop_grace_seconds=0.5)

    # When MaxRuntimeInSeconds is 1
    started = time.monotonic()
    runner.start(_request("stack-churn-slow", max_runtime=1))
    state = runner.wait("stack-churn-slow", timeout=20)

    # Then SageMaker's timeout outcome: Stopped / MaxRuntimeExceeded, the process killed promptly
    assert (state.status, state.secondary_status) == ("Stopped", "MaxRuntimeExceeded")
    assert state.failure_reason is not None and "exceeded MaxRuntimeInSeconds=1" in state.failure_reason
    assert state.failure_reason.startswith("TrainingJobTimeout:")
    assert time.monotonic() - started < 10
    assert state.model_artifact is None


def test_stop_ends_a_running_job(tmp_path, runner_factory):
    # Given a long-running job
    image = _fake_image(tmp_path, "print('training', flush=True)\ntime.sleep(60)\n")
    runner, updates = runner_factory(image)
    runner.start(_request("stack-churn-stop"))
    deadline = time.monotonic() + 20
    while runner.state("stack-churn-stop").secondary_status != "Training":
        assert time.monotonic() < deadline, "job never reached Training"
        time.sleep(0.05)

    # When StopTrainingJob is called
    runner.stop("stack-churn-stop")

    # Then it passes through Stopping and ends Stopped, with no failure reason
    state = runner.wait("stack-churn-stop", timeout=20)
    assert (state.status, state.secondary_status) == ("Stopped", "Stopped")
    assert state.failure_reason is None
    assert "Stopping" in updates.secondary("stack-churn-stop")
    # And a finished job cannot be stopped again
    with pytest.raises(TrainingJobNotStoppableError, match="is Stopped"):
        runner.stop("stack-churn-stop")


def test_names_are_unique_and_requests_are_validated(tmp_path, runner_factory):
    image = _fake_image(tmp_path, "time.sleep(30)\n")
    runner, _ = runner_factory(image)
    runner.start(_request("stack-churn-dup"))
    with pytest.raises(TrainingJobExistsError, match="stack-churn-dup"):
        runner.start(_request("stack-churn-dup"))
    bad = _request("stack-churn-x")
    bad["StoppingCondition"] = {}
    with pytest.raises(TrainingRequestError, match="MaxRuntimeInSeconds"):
        runner.start(bad)
    bad = _request("stack-churn-y")
    bad["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3DataType"] = "ManifestFile"
    with pytest.raises(TrainingRequestError, match="only S3Prefix"):
        runner.start(bad)


def test_shutdown_kills_running_jobs_within_its_timeout(tmp_path, runner_factory):
    # Given a job whose program ignores SIGTERM
    image = _fake_image(tmp_path, "signal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(60)\n")
    runner, _ = runner_factory(image, stop_grace_seconds=0.5)
    runner.start(_request("stack-churn-hang"))

    # When the runner shuts down
    started = time.monotonic()
    runner.shutdown(timeout=10)

    # Then it returns in bounded time and the job ended
    assert time.monotonic() - started < 10
    assert runner.state("stack-churn-hang").status == "Stopped"
