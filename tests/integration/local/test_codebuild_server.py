"""The local CodeBuild behind moto's HTTP server (`LocalAws`), as `modelops local` wires it: StartBuild
arrives over HTTP, the builder calls back into the same server (CodeBuild, S3, ECR) from inside that
request and from its build thread, and the product's build_status reads the real digest from ECR."""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from modelops.adapters.codebuild import CodeBuildImages, EcrRepository
from modelops.errors import BuildFailedError
from modelops.steps.build import build_status, start_build

from modelops_local import oci
from modelops_local.aws_server import LocalAws
from modelops_local.codebuild import LocalCodeBuild, package_source, unpack_reference
from modelops_local.moto_patches import MotoPatches

ROOT = Path(__file__).resolve().parents[3]
BUCKET = "stack-pipeline"
PROJECT = "stack-image-build"
REPO = "stack-serving"
WAIT = 15.0


def model_tarball(extra: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in {
            "metadata.json": b'{"task": "binary_classification"}',
            "model.joblib": b"m",
            **(extra or {}),
        }.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[LocalAws, LocalCodeBuild, str]]:
    aws = LocalAws().start()
    patches = MotoPatches()
    builder = LocalCodeBuild(  # as the orchestrator (modelops_local.cloud) wires it
        s3=aws.client("s3"),
        ecr=aws.client("ecr"),
        codebuild=aws.client("codebuild"),
        layout_dir=tmp_path / "layout",
        work_dir=tmp_path / "work",
    )
    try:
        s3, ecr = aws.client("s3"), aws.client("ecr")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(
            Bucket=BUCKET, Key="source/serving_image.zip", Body=package_source(ROOT / "serving_image")
        )
        s3.put_object(Bucket=BUCKET, Key="models/run-1/model.tar.gz", Body=model_tarball())
        repo_uri = ecr.create_repository(repositoryName=REPO, imageTagMutability="IMMUTABLE")["repository"][
            "repositoryUri"
        ]
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
                "environmentVariables": [{"name": "IMAGE_REPOSITORY_URI", "value": repo_uri}],
            },
            serviceRole=role,
        )
        patches.route_codebuild(start=builder.start, batch_get=builder.batch_get)
        yield aws, builder, repo_uri
    finally:
        builder.shutdown(5)
        patches.undo()
        aws.stop()


def ports(aws: LocalAws, repo_uri: str) -> tuple[CodeBuildImages, EcrRepository]:
    """The build_image function's two ports, over the HTTP endpoint."""
    return (
        CodeBuildImages(aws.client("codebuild"), project=PROJECT),
        EcrRepository(aws.client("ecr"), name=REPO, uri=repo_uri),
    )


def test_the_workflow_build_over_http_yields_the_real_digest_and_an_unpackable_image(server, tmp_path):
    aws, builder, repo_uri = server
    builds, images = ports(aws, repo_uri)
    request = {
        "model": "churn",
        "version": "7",
        "run_id": "run-20260101-0000beef",
        "model_artifact": f"s3://{BUCKET}/models/run-1/model.tar.gz",
    }
    # Given the build_image function's start call over the HTTP endpoint
    build = start_build(**request, builds=builds, images=images)
    # When the build finishes and build_status polls it
    builder.wait(build.build_id, WAIT)
    status = build_status(build, builds=builds, images=images)
    # Then the digest is the manifest's sha256 and the pinned image unpacks to a runnable root
    assert status.digest is not None and status.image is not None
    manifest = oci.blob_path(builder.layout_dir, status.digest).read_bytes()
    assert status.done is True and status.digest == "sha256:" + hashlib.sha256(manifest).hexdigest()
    root = unpack_reference(builder.layout_dir, status.image, tmp_path / "rootfs")
    assert (root / "opt/program/bin/serve").is_file() and (root / "opt/ml/model/metadata.json").is_file()
    # And a retry of the same request (same idempotency token) is the same build, not a second push
    again = start_build(**request, builds=builds, images=images)
    assert again.build_id == build.build_id


def test_a_failed_build_reaches_build_status_as_build_failed_with_the_reason(server):
    aws, builder, repo_uri = server
    builds, images = ports(aws, repo_uri)
    # Given a model artifact that does not exist
    build = start_build(
        model="churn",
        version="1",
        run_id="run-20260101-0000dead",
        model_artifact=f"s3://{BUCKET}/models/missing/model.tar.gz",
        builds=builds,
        images=images,
    )
    # When it finishes and is polled
    builder.wait(build.build_id, WAIT)
    # Then build_status raises with the failed phase and the message
    with pytest.raises(BuildFailedError, match=r"FAILED: PRE_BUILD: .*NoSuchKey"):
        build_status(build, builds=builds, images=images)


@pytest.mark.parametrize(
    ("requirements", "outcome"),
    [
        (b"inflection==0.5.1\nnumpy>=2\n", "SUCCEEDED"),
        (b"inflection==0.5.1\nnumpy<2\n", "'numpy<2' conflicts with the image's numpy=="),
    ],
)
def test_the_models_code_requirements_become_a_site_packages_layer_under_the_images_pins(
    server, tmp_path, requirements, outcome
):
    aws, builder, repo_uri = server
    builds, images = ports(aws, repo_uri)
    # Given a model whose code/ needs inflection (from the package index), with or without a pin conflict
    aws.client("s3").put_object(
        Bucket=BUCKET,
        Key="models/run-2/model.tar.gz",
        Body=model_tarball(
            {"code/requirements.txt": requirements, "code/regions.py": b"import inflection\n"}
        ),
    )
    request = {"model": "churn", "version": "2", "run_id": "run-20260101-0000cafe"}
    build = start_build(
        **request, model_artifact=f"s3://{BUCKET}/models/run-2/model.tar.gz", builds=builds, images=images
    )
    # When it finishes (pip reaches the index: a longer wait than a build without requirements)
    doc = builder.wait(build.build_id, 300)
    if outcome != "SUCCEEDED":
        # Then a conflict fails the build in BUILD naming the package, and nothing is pushed
        assert doc["buildStatus"] == "FAILED"
        (failed,) = [p for p in doc["phases"] if p["phaseType"] == "BUILD"]
        assert outcome in failed["contexts"][0]["message"], failed
        assert aws.client("ecr").describe_images(repositoryName=REPO)["imageDetails"] == []
        return
    # Then the image's venv site-packages holds the package, where a local pod's Python finds it
    status = build_status(build, builds=builds, images=images)
    assert status.image is not None, doc["phases"]
    root = unpack_reference(builder.layout_dir, status.image, tmp_path / "rootfs")
    site = root / oci.site_packages().lstrip("/")
    assert (site / "inflection").is_dir() or (site / "inflection.py").is_file()
    assert (root / "opt/ml/model/code/requirements.txt").read_bytes() == requirements
    from modelops_local.kube.kubelet import image_python_path

    assert image_python_path(root) == [root / "opt/program", site]
