"""Each AWS adapter against moto: what its port promises (a missing object is None, a repeated
execution name starts nothing, a task already over is False, a repeated registration is found)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from modelops.adapters.codebuild import EcrRepository
from modelops.adapters.s3 import S3Objects
from modelops.adapters.sagemaker import SageMakerRegistry, SageMakerTrainingJobs
from modelops.adapters.stepfunctions import StepFunctionsCallbacks, StepFunctionsExecutions
from moto import mock_aws

REGION = "us-east-1"


@pytest.fixture
def aws(offline_aws: None) -> Iterator[None]:
    with mock_aws():
        yield


def client(service: str) -> Any:
    return boto3.client(service, region_name=REGION)


def test_s3_objects_size_is_none_for_a_missing_object_or_version_and_list_reads_every_page(aws):
    s3 = client("s3")
    s3.create_bucket(Bucket="pipeline")
    s3.put_bucket_versioning(Bucket="pipeline", VersioningConfiguration={"Status": "Enabled"})
    version = s3.put_object(Bucket="pipeline", Key="incoming/m/a.csv", Body=b"x,y\n")["VersionId"]
    objects = S3Objects(s3)
    assert objects.size("pipeline", "incoming/m/a.csv") == 4
    assert objects.size("pipeline", "incoming/m/a.csv", version) == 4
    assert objects.read("pipeline", "incoming/m/a.csv", version) == b"x,y\n"
    assert objects.size("pipeline", "incoming/m/missing.csv") is None
    assert objects.size("pipeline", "incoming/m/a.csv", "not-a-version") is None
    # Listing follows the paginator past one page
    for i in range(1005):
        s3.put_object(Bucket="pipeline", Key=f"incoming/n/{i:04d}.csv", Body=b"1")
    listed = list(objects.list("pipeline", "incoming/n/"))
    assert len(listed) == 1005 and listed[0].size == 1 and listed[0].etag and '"' not in listed[0].etag


def test_a_repeated_execution_name_starts_nothing(aws):
    sfn = client("stepfunctions")
    role = client("iam").create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    definition = {"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}
    arn = sfn.create_state_machine(name="m", definition=json.dumps(definition), roleArn=role)[
        "stateMachineArn"
    ]
    executions = StepFunctionsExecutions(sfn, state_machine_arn=arn)
    first = executions.start("run-1", '{"try": 1}')
    assert first is not None and first.endswith(":run-1")
    # Step Functions: the same name with the same input while it runs is the same execution (its
    # ARN again); with another input, or once it closed, ExecutionAlreadyExists: nothing starts
    assert executions.start("run-1", '{"try": 1}') in (first, None)
    assert executions.start("run-1", '{"try": 2}') is None


class _Answering:
    """A Step Functions client whose SendTaskFailure answers with the given error code (moto accepts
    any token, so the answers for a task that is over are given here as the API documents them)."""

    def __init__(self, code: str | None) -> None:
        self.code = code
        self.sent: list[dict[str, str]] = []

    def send_task_failure(self, **kwargs: str) -> dict[str, Any]:
        if self.code:
            raise ClientError({"Error": {"Code": self.code, "Message": "m"}}, "SendTaskFailure")
        self.sent.append(kwargs)
        return {}


@pytest.mark.parametrize("code", ["TaskTimedOut", "InvalidToken", "TaskDoesNotExist"])
def test_failing_a_task_that_is_already_over_is_false(code):
    assert StepFunctionsCallbacks(_Answering(code)).fail("token", "CanaryAlarmError", "{}") is False


def test_failing_a_waiting_task_is_true_and_other_errors_are_raised():
    answering = _Answering(None)
    assert StepFunctionsCallbacks(answering).fail("token", "CanaryAlarmError", "{}") is True
    assert answering.sent == [{"taskToken": "token", "error": "CanaryAlarmError", "cause": "{}"}]
    with pytest.raises(ClientError, match="ThrottlingException"):
        StepFunctionsCallbacks(_Answering("ThrottlingException")).fail("token", "CanaryAlarmError", "{}")


def test_a_training_job_is_described_with_its_artifact(aws):
    sagemaker = client("sagemaker")
    role = client("iam").create_role(RoleName="sm", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    sagemaker.create_training_job(
        TrainingJobName="job-1",
        AlgorithmSpecification={"TrainingImage": "img:1", "TrainingInputMode": "File"},
        RoleArn=role,
        OutputDataConfig={"S3OutputPath": "s3://b/models/m"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        StoppingCondition={"MaxRuntimeInSeconds": 60},
    )
    job = SageMakerTrainingJobs(sagemaker).describe("job-1")
    assert job.name == "job-1" and job.status == "Completed"
    assert job.model_artifact is not None and job.model_artifact.startswith("s3://b/models/m/job-1")


def test_a_registered_version_is_found_again_by_its_run_and_its_approval_set(aws):
    sagemaker = client("sagemaker")
    registry = SageMakerRegistry(sagemaker)
    registry.ensure_group("stack-m", "versions of m")
    registry.ensure_group("stack-m", "versions of m")  # already there: nothing raised
    assert registry.find_version("stack-m", "run-1") is None
    created = registry.create_version(
        "stack-m",
        description="run run-1",
        image="img:1",
        artifact="s3://b/m.tar.gz",
        metadata={"run_id": "run-1"},
    )
    assert created.version == "1"
    assert registry.find_version("stack-m", "run-1") == created
    registry.set_approval(created.package_arn, "Approved", "promoted")
    described = sagemaker.describe_model_package(ModelPackageName=created.package_arn)
    assert described["ModelApprovalStatus"] == "Approved"


def test_an_old_runs_version_is_found_beyond_the_first_page_of_the_group(aws):
    # ListModelPackages answers a page at a time with a NextToken (moto's pages hold 100):
    # `rollback --to` an old version must read past the first
    registry = SageMakerRegistry(client("sagemaker"))
    registry.ensure_group("stack-m", "versions of m")
    created = [
        registry.create_version(
            "stack-m",
            description=f"run {n}",
            image="img:1",
            artifact="s3://b/m.tar.gz",
            metadata={"run_id": f"run-{n}"},
        )
        for n in range(101)
    ]
    assert registry.find_version("stack-m", "run-0") == created[0]  # the oldest: on the second page
    assert registry.find_version("stack-m", "run-100") == created[100]
    assert registry.find_version("stack-m", "run-101") is None


def test_an_unknown_image_tag_has_no_digest(aws):
    ecr = client("ecr")
    uri = ecr.create_repository(repositoryName="serving")["repository"]["repositoryUri"]
    repository = EcrRepository(ecr, name="serving", uri=uri)
    assert repository.uri == uri and repository.digest("v1") is None
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": "sha256:" + "a" * 64,
                "size": 1,
            }
        ],
    }
    ecr.put_image(repositoryName="serving", imageTag="v1", imageManifest=json.dumps(manifest))
    digest = repository.digest("v1")
    assert digest is not None and digest.startswith("sha256:")


def test_cached_clients_share_one_session_and_a_cache_clear_reads_the_environment_again(aws, monkeypatch):
    from modelops.adapters import aws as adapters

    adapters.client.cache_clear()
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    # Given clients of two services made from threads at once
    got: list[tuple[str, Any]] = []
    threads = [
        threading.Thread(target=lambda s=service: got.append((s, adapters.client(s))))
        for service in ("s3", "dynamodb", "s3", "dynamodb")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    made = dict(got)
    assert len(got) == 4 and all(made[service] is each for service, each in got)
    # Then each service has one client (all four threads got it), both from one session, in the
    # environment's region
    assert adapters.client.cached_services() in (["s3", "dynamodb"], ["dynamodb", "s3"])
    assert adapters.client("s3") is made["s3"] and adapters.client("dynamodb") is made["dynamodb"]
    assert made["s3"]._loader is made["dynamodb"]._loader  # one session: one botocore loader
    assert made["s3"].meta.region_name == "eu-west-1"
    assert made["dynamodb"].list_tables()["TableNames"] == []
    # And after cache_clear the environment is read again, into a new session
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    adapters.client.cache_clear()
    again = adapters.client("s3")
    assert again is not made["s3"] and again.meta.region_name == "us-west-2"
    assert again._loader is not made["s3"]._loader
    adapters.client.cache_clear()
