"""`modelops bootstrap` against the local AWS stand-in and its CodeBuild (the buildspec's steps,
a real OCI image pushed to ECR): the first run builds and records the training image, a repeat
does nothing, and a bad stack name or a failed build end with a clear message and nothing recorded."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from modelops.adapters.aws import client

from modelops_cli.main import main
from modelops_local.aws_server import LocalAws
from modelops_local.codebuild import LocalCodeBuild, unpack_reference
from modelops_local.moto_patches import MotoPatches

ROOT = Path(__file__).resolve().parents[3]
STACK = "demo"
BUCKET = "demo-pipeline"
PROJECT = "demo-image-build"
PARAMETER = f"/modelops/{STACK}/training-image"
PLACEHOLDER = '{"image": ""}'  # what the stack creates (template.yaml TrainingImageParameter)


class World:
    def __init__(self, aws: LocalAws, builder: LocalCodeBuild, repo_uri: str, layout: Path) -> None:
        self.aws, self.builder, self.repo_uri, self.layout = aws, builder, repo_uri, layout

    def parameter(self) -> str:
        return str(self.aws.client("ssm").get_parameter(Name=PARAMETER)["Parameter"]["Value"])

    def builds(self) -> list[str]:
        return list(self.aws.client("codebuild").list_builds_for_project(projectName=PROJECT).get("ids", []))

    def images(self) -> list[dict]:
        return list(
            self.aws.client("ecr").describe_images(repositoryName=f"{STACK}-training")["imageDetails"]
        )


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    aws = LocalAws().start()
    patches = MotoPatches()
    builder = LocalCodeBuild(
        s3=aws.client("s3"),
        ecr=aws.client("ecr"),
        codebuild=aws.client("codebuild"),
        layout_dir=tmp_path / "layout",
        work_dir=tmp_path / "work",
    )
    try:
        for key, value in aws.function_environment().items():
            monkeypatch.setenv(key, value)
        client.cache_clear()
        s3, ecr = aws.client("s3"), aws.client("ecr")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        repo_uri = ecr.create_repository(repositoryName=f"{STACK}-training", imageTagMutability="IMMUTABLE")[
            "repository"
        ]["repositoryUri"]
        role = aws.client("iam").create_role(RoleName="cb", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        aws.client("codebuild").create_project(
            name=PROJECT,
            source={
                "type": "S3",
                "location": f"{BUCKET}/source/serving_image.zip",
                "buildspec": "buildspec.yml",
            },
            artifacts={"type": "NO_ARTIFACTS"},
            environment={
                "type": "LINUX_CONTAINER",
                "image": "aws/codebuild/standard:7.0",
                "computeType": "BUILD_GENERAL1_SMALL",
            },
            serviceRole=role,
            logsConfig={"cloudWatchLogs": {"status": "ENABLED", "groupName": f"/aws/codebuild/{PROJECT}"}},
        )
        patches.route_codebuild(start=builder.start, batch_get=builder.batch_get)
        ssm = aws.client("ssm")
        ssm.put_parameter(Name=PARAMETER, Type="String", Value=PLACEHOLDER)
        info = {
            "stack_name": STACK,
            "table": "t",
            "bucket": BUCKET,
            "state_machine_arn": "arn:sm",
            "start_function_arn": "arn:fn",
            "schedule_group": STACK,
            "scheduler_role_arn": "arn:role",
            "alarm_prefix": f"{STACK}-",
            "metric_namespace": "ModelOps",
            "codebuild_project": PROJECT,
            "training_repository_name": f"{STACK}-training",
            "training_repository_uri": repo_uri,
            "training_image_parameter": PARAMETER,
        }
        ssm.put_parameter(Name=f"/modelops/{STACK}/stack", Type="String", Value=json.dumps(info))
        yield World(aws, builder, repo_uri, tmp_path / "layout")
    finally:
        builder.shutdown(5)
        patches.undo()
        aws.stop()
        client.cache_clear()


def bootstrap(*extra: str) -> int:
    return main(["--stack", STACK, "bootstrap", "--poll-seconds", "0.1", "--timeout-minutes", "2", *extra])


def test_first_bootstrap_builds_the_training_image_and_a_repeat_does_nothing(world, capsys, tmp_path):
    # When bootstrap runs on a fresh stack
    assert bootstrap() == 0
    out = capsys.readouterr().out
    # Then it uploaded the source, followed the build's phases and recorded the pushed digest

    assert "uploaded the image source" in out and "  build" in out and "  post build" in out
    record = json.loads(world.parameter())
    (image,) = world.images()
    assert record["image"] == f"{world.repo_uri}@{image['imageDigest']}"
    assert image["imageTags"][0].startswith("source-")
    assert f"training image ready: {record['image']}" in out and "next:" in out
    # And the image is the runtime target: the train program, no model
    root = unpack_reference(world.layout, record["image"], tmp_path / "rootfs")
    # (the Dockerfile's base stage makes /opt/ml/model; the training image has nothing in it)
    assert (root / "opt/program/bin/train").is_file() and not any((root / "opt/ml/model").iterdir())

    # When it runs again with the same source
    builds = world.builds()
    assert bootstrap() == 0
    out = capsys.readouterr().out
    # Then it says so and changes nothing: no upload, no build, the same record
    assert "already built from this source" in out and "nothing to do" in out
    assert "uploaded" not in out and world.builds() == builds
    assert json.loads(world.parameter()) == record


def test_an_unknown_stack_is_refused_before_anything_is_made(world, capsys):
    assert main(["--stack", "nope", "bootstrap", "--poll-seconds", "0.1"]) == 1
    err = capsys.readouterr().err
    assert "stack 'nope' not found (no SSM parameter /modelops/nope/stack)" in err
    assert world.builds() == [] and world.parameter() == PLACEHOLDER
    assert "Contents" not in world.aws.client("s3").list_objects_v2(Bucket=BUCKET)


def test_a_failed_build_names_its_log_and_records_nothing(world, capsys, tmp_path):
    # Given an image source the Dockerfile cannot build (model_server/ is missing)
    source = tmp_path / "broken"
    source.mkdir()
    for name in (
        "Dockerfile",
        "buildspec.yml",
        *(p.name for p in (ROOT / "serving_image").glob("requirements*.txt")),
    ):
        shutil.copy(ROOT / "serving_image" / name, source / name)
    shutil.copytree(ROOT / "serving_image" / "bin", source / "bin")
    # When bootstrap builds it
    assert bootstrap("--source", str(source)) == 1
    err = capsys.readouterr().err
    # Then the message says the build failed, why, and where its log is
    assert "the training image build" in err and "ended FAILED" in err and "model_server" in err
    assert f"CloudWatch Logs group /aws/codebuild/{PROJECT}, stream" in err
    assert "Nothing was recorded" in err and "modelops bootstrap" in err
    # And nothing is half-made: the parameter still holds the placeholder, no image was pushed
    assert world.parameter() == PLACEHOLDER and world.images() == []
