"""The local CodeBuild: serving_image/buildspec.yml's steps without Docker, a real OCI image in the
layout and its manifest digest in (moto's) ECR. Everything runs in-process under `mock_aws`."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from modelops_local import oci
from modelops_local.aws_server import InProcessAws
from modelops_local.codebuild import (
    PHASES,
    LocalCodeBuild,
    UnsafeArchiveError,
    package_source,
    resolve_image,
    safe_unzip,
    unpack_reference,
)
from modelops_local.moto_patches import MotoPatches
from tests.serving_models import has_c_compiler, tiny_forest_doc

ROOT = Path(__file__).resolve().parents[3]
REGION = "us-east-1"
BUCKET = "modelops-pipeline"
PROJECT = "modelops-image-build"
REPO = "modelops-serving"
MODEL_KEY = "models/churn/run-1/output/model.tar.gz"
WAIT = 60.0  # a bound: a build runs bash, the shims and the Dockerfile (native compile included)


def model_tarball(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# A one-split forest over 2 features (x0 <= 0.5 -> -1, else 2), with the check rows train.py adds.
FOREST = {
    **tiny_forest_doc(),
    "check": {"rows": [[0.5, 1.0], [0.6, 1.0], [None, 0.0]], "expected": [-0.75, 2.25, -0.75]},
}
METADATA = {
    "task": "regression",
    "label_column": "y",
    "feature_columns": ["a", "b"],
    "classes": [],
    "objective_metric": "rmse",
    "n_train": 10,
    "n_validation": 2,
    "sklearn_version": "",
    "forest_file": "forest.json",
}
MODEL_FILES = {
    "metadata.json": json.dumps(METADATA).encode(),
    "model.joblib": b"\x00weights\xff" * 64,
    "forest.json": json.dumps(FOREST).encode(),
}


@dataclass
class Stack:
    builder: LocalCodeBuild
    codebuild: Any
    ecr: Any
    s3: Any
    repo_uri: str
    layout: Path
    work: Path

    def env(self, **overrides: str | None) -> list[dict[str, str]]:
        values: dict[str, str | None] = {
            "MODEL_ARTIFACT_S3_URI": f"s3://{BUCKET}/{MODEL_KEY}",
            "IMAGE_TAG": "churn-v1-run00001",
            "MODEL_NAME": "churn",
            "MODEL_VERSION": "1",
            **overrides,
        }
        return [{"name": k, "value": v, "type": "PLAINTEXT"} for k, v in values.items() if v is not None]

    def start(self, **overrides: str | None) -> str:
        return str(
            self.codebuild.start_build(
                projectName=PROJECT, environmentVariablesOverride=self.env(**overrides)
            )["build"]["id"]
        )

    def finished(self, build_id: str) -> dict[str, Any]:
        self.builder.wait(build_id, WAIT)
        (build,) = self.codebuild.batch_get_builds(ids=[build_id])["builds"]
        return dict(build)

    def ecr_images(self) -> list[dict[str, Any]]:
        return list(self.ecr.describe_images(repositoryName=REPO)["imageDetails"])


@pytest.fixture
def aws(offline_aws: None) -> Iterator[None]:
    with mock_aws():
        yield


def deploy(tmp_path: Path, **builder_options: Any) -> tuple[LocalCodeBuild, InProcessAws, str]:
    """What the template creates (bucket, IMMUTABLE repository, S3-sourced project) plus the uploads."""
    clients = InProcessAws(REGION)
    s3, ecr, iam = clients.client("s3"), clients.client("ecr"), clients.client("iam")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="source/serving_image.zip", Body=package_source(ROOT / "serving_image"))
    s3.put_object(Bucket=BUCKET, Key=MODEL_KEY, Body=model_tarball(MODEL_FILES))
    repo_uri = ecr.create_repository(repositoryName=REPO, imageTagMutability="IMMUTABLE")["repository"][
        "repositoryUri"
    ]
    role = iam.create_role(RoleName="codebuild", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    clients.client("codebuild").create_project(
        name=PROJECT,
        source={"type": "S3", "location": f"{BUCKET}/source/serving_image.zip", "buildspec": "buildspec.yml"},
        artifacts={"type": "NO_ARTIFACTS"},
        environment={
            "type": "LINUX_CONTAINER",
            "image": "aws/codebuild/standard:7.0",
            "computeType": "BUILD_GENERAL1_SMALL",
            "privilegedMode": True,
            "environmentVariables": [{"name": "IMAGE_REPOSITORY_URI", "value": repo_uri}],
        },
        serviceRole=role,
        timeoutInMinutes=30,
    )
    builder = LocalCodeBuild(
        clients, layout_dir=tmp_path / "layout", work_dir=tmp_path / "work", **builder_options
    )
    return builder, clients, repo_uri


@pytest.fixture
def routed(aws: None, tmp_path: Path) -> Iterator[Any]:
    """deploy(), with StartBuild / BatchGetBuilds routed to the builder; call it with builder options."""
    patches = MotoPatches()
    builders: list[LocalCodeBuild] = []

    def make(**options: Any) -> Stack:
        builder, clients, repo_uri = deploy(tmp_path, **options)
        builders.append(builder)
        patches.route_codebuild(start=builder.start, batch_get=builder.batch_get)
        return Stack(
            builder,
            clients.client("codebuild"),
            clients.client("ecr"),
            clients.client("s3"),
            repo_uri,
            tmp_path / "layout",
            tmp_path / "work",
        )

    try:
        yield make
    finally:
        for builder in builders:
            builder.shutdown(5)
        patches.undo()


def phase(build: dict[str, Any], name: str) -> dict[str, Any]:
    return next(p for p in build["phases"] if p["phaseType"] == name)


# --- success ----------------------------------------------------------------------------------------
def test_build_pushes_a_real_oci_image_and_ecr_reports_its_manifest_digest(routed, tmp_path):
    # Given the stack and a trained model's model.tar.gz in S3
    stack = routed()
    # When the workflow's StartBuild runs to the end
    build = stack.finished(stack.start())
    # Then it succeeded and exported the digest and the pinned URI, as the buildspec does
    assert build["buildStatus"] == "SUCCEEDED", build["phases"]
    exported = {v["name"]: v["value"] for v in build["exportedEnvironmentVariables"]}
    digest = exported["IMAGE_DIGEST"]
    assert exported["IMAGE_URI"] == f"{stack.repo_uri}@{digest}"
    # And ECR's digest for the tag is sha256 of the manifest bytes stored in the OCI layout
    details = stack.ecr.describe_images(repositoryName=REPO, imageIds=[{"imageTag": "churn-v1-run00001"}])
    assert details["imageDetails"][0]["imageDigest"] == digest
    manifest_bytes = oci.blob_path(stack.layout, digest).read_bytes()
    assert "sha256:" + hashlib.sha256(manifest_bytes).hexdigest() == digest
    assert oci.resolve_tag(stack.layout, "churn-v1-run00001", stack.repo_uri) == digest
    # And the image unpacks to the serving program and the model, labelled as the Dockerfile labels it
    root = unpack_reference(stack.layout, exported["IMAGE_URI"], tmp_path / "rootfs")
    assert (root / "opt/program/bin/serve").is_file()
    assert (root / "opt/program/bin/serve").stat().st_mode & 0o111
    assert json.loads((root / "opt/ml/model/metadata.json").read_text()) == METADATA
    # with the native predictor built into the model folder, as the Dockerfile's model stage does
    # (when this machine has a C compiler; without one the step says so and the build goes on)
    log_text = stack.builder.log_path(build["id"]).read_text()
    if has_c_compiler():
        assert "native predictor: built native/forest.so" in log_text
        assert (root / "opt/ml/model/native/forest.so").is_file()
    else:
        assert "native predictor: not built" in log_text
    config = oci.read_config(stack.layout, oci.read_manifest(stack.layout, digest))
    assert config["config"]["Labels"]["io.modelops.model"] == "churn"
    assert config["config"]["Labels"]["io.modelops.version"] == "1"
    # And the log file and CodeBuild's logs entry exist
    assert "Entering phase BUILD" in log_text and f"pushed {exported['IMAGE_URI']}" in log_text
    assert build["logs"]["groupName"] == f"/aws/codebuild/{PROJECT}" and build["logs"]["deepLink"]
    assert build["id"].startswith(f"{PROJECT}:") and build["arn"].endswith(f":build/{build['id']}")


def test_lifecycle_is_in_progress_then_succeeded_with_every_phase_recorded(routed):
    # Given a builder whose build is held at the start of PRE_BUILD
    reached, release = threading.Event(), threading.Event()

    def hold(build_id: str, phase_name: str) -> None:
        if phase_name == "PRE_BUILD":
            reached.set()
            assert release.wait(WAIT)

    stack = routed(on_phase=hold)
    # When the build is started
    started = stack.codebuild.start_build(projectName=PROJECT, environmentVariablesOverride=stack.env())
    # Then StartBuild answers IN_PROGRESS / QUEUED with SUBMITTED done
    assert started["build"]["buildStatus"] == "IN_PROGRESS" and started["build"]["currentPhase"] == "QUEUED"
    assert [p["phaseType"] for p in started["build"]["phases"]] == ["SUBMITTED", "QUEUED"]
    assert started["build"]["buildNumber"] == 1
    build_id = started["build"]["id"]
    # And while held, BatchGetBuilds reports IN_PROGRESS in PRE_BUILD
    assert reached.wait(WAIT)
    (held,) = stack.codebuild.batch_get_builds(ids=[build_id])["builds"]
    assert (held["buildStatus"], held["currentPhase"], held["buildComplete"]) == (
        "IN_PROGRESS",
        "PRE_BUILD",
        False,
    )
    # When it is released
    release.set()
    build = stack.finished(build_id)
    # Then it SUCCEEDED with every CodeBuild phase, in order, each timed
    assert (build["buildStatus"], build["currentPhase"], build["buildComplete"]) == (
        "SUCCEEDED",
        "COMPLETED",
        True,
    )
    assert [p["phaseType"] for p in build["phases"]] == list(PHASES)
    for entry in build["phases"][:-1]:
        assert entry["phaseStatus"] == "SUCCEEDED" and entry["endTime"] >= entry["startTime"]
        assert entry["durationInSeconds"] >= 0
    assert "phaseStatus" not in build["phases"][-1]  # COMPLETED only has a start time
    assert build["endTime"] >= build["startTime"]
    # And the project's variables were merged under the overrides
    variables = {v["name"]: v["value"] for v in build["environment"]["environmentVariables"]}
    assert (
        variables["IMAGE_REPOSITORY_URI"] == stack.repo_uri and variables["IMAGE_TAG"] == "churn-v1-run00001"
    )


# --- failures ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("setup", "failed_phase", "fragment"),
    [
        ("no_model_uri", "PRE_BUILD", "MODEL_ARTIFACT_S3_URI is required"),
        ("no_metadata", "PRE_BUILD", "model.tar.gz has no metadata.json"),
        ("missing_object", "PRE_BUILD", "NoSuchKey"),
        ("unknown_repository", "BUILD", "The repository with name 'nope' does not exist"),
        ("missing_source", "DOWNLOAD_SOURCE", "NoSuchKey"),
        # a corrupt source zip fails the download as CodeBuild's CLIENT_ERROR (the fault matrix's
        # failed build: tests/integration/workflow/test_fault_matrix.py)
        ("corrupt_source", "DOWNLOAD_SOURCE", "File is not a zip file"),
        # the Dockerfile's GNU tar refuses the member (as `docker build` would), naming it
        ("traversal_model", "BUILD", "../../escape.txt: Member name contains '..'"),
    ],
)
def test_a_failing_phase_fails_the_build_names_the_problem_and_pushes_nothing(
    routed, setup, failed_phase, fragment
):
    # Given a stack with one thing wrong
    stack = routed()
    overrides: dict[str, str | None] = {}
    if setup == "no_model_uri":
        overrides["MODEL_ARTIFACT_S3_URI"] = None
    elif setup == "no_metadata":
        stack.s3.put_object(Bucket=BUCKET, Key=MODEL_KEY, Body=model_tarball({"model.joblib": b"x"}))
    elif setup == "missing_object":
        overrides["MODEL_ARTIFACT_S3_URI"] = f"s3://{BUCKET}/models/none/model.tar.gz"
    elif setup == "unknown_repository":
        overrides["IMAGE_REPOSITORY_URI"] = stack.repo_uri.rsplit("/", 1)[0] + "/nope"
    elif setup == "traversal_model":
        stack.s3.put_object(
            Bucket=BUCKET, Key=MODEL_KEY, Body=model_tarball({**MODEL_FILES, "../../escape.txt": b"x"})
        )
    elif setup == "missing_source":
        stack.s3.delete_object(Bucket=BUCKET, Key="source/serving_image.zip")
    elif setup == "corrupt_source":
        stack.s3.put_object(Bucket=BUCKET, Key="source/serving_image.zip", Body=b"not a zip")
    # When the build runs
    build = stack.finished(stack.start(**overrides))
    # Then it FAILED in that phase, with a message naming the problem
    assert build["buildStatus"] == "FAILED"
    failed = phase(build, failed_phase)
    assert failed["phaseStatus"] == "FAILED"
    assert fragment in failed["contexts"][0]["message"], failed["contexts"]
    if setup == "missing_object":  # the buildspec stops at the failed download (no tar errors after it)
        assert "Cannot open" not in failed["contexts"][0]["message"], failed["contexts"]
    # And later phases went as CodeBuild's: a failed BUILD still runs POST_BUILD, earlier failures skip to FINALIZING
    types = [p["phaseType"] for p in build["phases"]]
    assert types[-2:] == ["FINALIZING", "COMPLETED"]
    if failed_phase == "BUILD":
        assert phase(build, "POST_BUILD")["phaseStatus"] == "FAILED"
        assert "build failed; no image to report" in phase(build, "POST_BUILD")["contexts"][0]["message"]
        assert "UPLOAD_ARTIFACTS" in types
    else:
        assert "BUILD" not in types and "POST_BUILD" not in types
    # And nothing reached ECR, the layout's index or the exported variables
    assert stack.ecr_images() == []
    assert not (stack.layout / "index.json").exists() or oci.read_index(stack.layout)["manifests"] == []
    assert "exportedEnvironmentVariables" not in build or build["exportedEnvironmentVariables"] == []
    assert not (stack.work / "escape.txt").exists() and not (stack.work.parent / "escape.txt").exists()


def test_an_immutable_tag_pushed_again_with_other_content_fails_and_the_first_image_stays(routed):
    # Given a build that pushed churn-v1-run00001
    stack = routed()
    first = stack.finished(stack.start())
    first_digest = {v["name"]: v["value"] for v in first["exportedEnvironmentVariables"]}["IMAGE_DIGEST"]
    # When the same inputs are built again (deterministic: same digest), then other content under the same tag
    again = stack.finished(stack.start())
    stack.s3.put_object(
        Bucket=BUCKET, Key=MODEL_KEY, Body=model_tarball({**MODEL_FILES, "model.joblib": b"retrained"})
    )
    other = stack.finished(stack.start())
    # Then the identical push is a no-op success and the different one is refused as ECR refuses it
    assert again["buildStatus"] == "SUCCEEDED"
    assert {v["name"]: v["value"] for v in again["exportedEnvironmentVariables"]}[
        "IMAGE_DIGEST"
    ] == first_digest
    assert other["buildStatus"] == "FAILED"
    message = phase(other, "BUILD")["contexts"][0]["message"]
    assert "ImageTagAlreadyExistsException" in message and "cannot be overwritten" in message
    # And ECR and the layout still point the tag at the first image
    assert [i["imageDigest"] for i in stack.ecr_images()] == [first_digest]
    assert resolve_image(stack.layout, f"{stack.repo_uri}:churn-v1-run00001") == first_digest


def test_a_build_past_its_timeout_is_timed_out(routed):
    # Given a clock where every reading is ten minutes after the last
    ticks = iter(range(0, 10**6, 600))
    stack = routed(clock=lambda: float(next(ticks)))
    # When a build with a 5 minute timeout runs
    started = stack.codebuild.start_build(
        projectName=PROJECT, environmentVariablesOverride=stack.env(), timeoutInMinutesOverride=5
    )
    build = stack.finished(started["build"]["id"])
    # Then the first phase after the deadline is TIMED_OUT and the build goes to FINALIZING
    assert build["buildStatus"] == "TIMED_OUT"
    assert phase(build, "PROVISIONING")["phaseStatus"] == "TIMED_OUT"
    assert [p["phaseType"] for p in build["phases"]][-3:] == ["PROVISIONING", "FINALIZING", "COMPLETED"]


# --- StartBuild semantics -----------------------------------------------------------------------------
def test_idempotency_token_returns_the_same_build_within_five_minutes(routed):
    # Given a clock the test controls
    now = [1000.0]
    stack = routed(clock=lambda: now[0])
    request = {
        "projectName": PROJECT,
        "environmentVariablesOverride": stack.env(),
        "idempotencyToken": "tok-1",
    }
    # When the same request is repeated with the same token
    first = stack.codebuild.start_build(**request)["build"]
    second = stack.codebuild.start_build(**request)["build"]
    # Then it is the same build
    assert second["id"] == first["id"]
    # And a changed parameter with that token is a parameter mismatch
    with pytest.raises(ClientError) as mismatch:
        stack.codebuild.start_build(
            **{**request, "environmentVariablesOverride": stack.env(IMAGE_TAG="other")}
        )
    assert mismatch.value.response["Error"]["Code"] == "InvalidInputException"
    assert "different parameters" in mismatch.value.response["Error"]["Message"]
    # And after five minutes the token starts a new build
    stack.finished(first["id"])
    now[0] += 301
    third = stack.codebuild.start_build(**request)["build"]
    assert third["id"] != first["id"] and third["buildNumber"] == 2
    stack.finished(third["id"])


def test_an_unknown_project_is_resource_not_found(routed):
    # Given the stack
    stack = routed()
    # When a build of a project that does not exist is started
    with pytest.raises(ClientError) as error:
        stack.codebuild.start_build(projectName="no-such-project", environmentVariablesOverride=stack.env())
    # Then CodeBuild's error comes back
    assert error.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert error.value.response["Error"]["Message"] == (
        "Project cannot be found: arn:aws:codebuild:us-east-1:123456789012:project/no-such-project"
    )
    # And BatchGetBuilds of an unknown id reports it as not found
    got = stack.codebuild.batch_get_builds(ids=[f"{PROJECT}:00000000-0000-0000-0000-000000000000"])
    assert got["builds"] == [] and len(got["buildsNotFound"]) == 1


def test_shutdown_stops_a_running_build_and_refuses_new_ones(routed):
    # Given a build held at DOWNLOAD_SOURCE
    reached, release = threading.Event(), threading.Event()

    def hold(build_id: str, phase_name: str) -> None:
        if phase_name == "DOWNLOAD_SOURCE":
            reached.set()
            assert release.wait(WAIT)

    stack = routed(on_phase=hold)
    build_id = stack.start()
    assert reached.wait(WAIT)
    # When the builder shuts down while it is held
    stopper = threading.Thread(target=stack.builder.shutdown, args=(WAIT,))
    stopper.start()
    assert _until(lambda: stack.builder.closed)
    release.set()
    stopper.join(WAIT)
    # Then the build stopped in that phase and new builds are refused
    assert not stopper.is_alive()
    build = stack.builder.get(build_id)
    assert build["buildStatus"] == "STOPPED" and phase(build, "DOWNLOAD_SOURCE")["phaseStatus"] == "STOPPED"
    with pytest.raises(ClientError, match="shut down"):
        stack.start()


# --- the product's own calls ------------------------------------------------------------------------
def test_pipeline_start_build_and_build_status_report_the_real_digest(routed):
    from modelops.adapters.codebuild import CodeBuildImages, EcrRepository
    from modelops.steps.build import build_status, start_build

    # Given the stack, with the build held in BUILD so the first status poll sees it running
    reached, release = threading.Event(), threading.Event()

    def hold(build_id: str, phase_name: str) -> None:
        if phase_name == "BUILD":
            reached.set()
            assert release.wait(WAIT)

    stack = routed(on_phase=hold)
    builds = CodeBuildImages(stack.codebuild, project=PROJECT)
    images = EcrRepository(stack.ecr, name=REPO, uri=stack.repo_uri)
    # When the workflow's build_image function starts the build and polls it
    build = start_build(
        model="churn",
        version="3",
        run_id="run-20260101-abcdef12",
        model_artifact=f"s3://{BUCKET}/{MODEL_KEY}",
        builds=builds,
        images=images,
    )
    assert reached.wait(WAIT)
    polled = build_status(build, builds=builds, images=images)
    release.set()
    stack.builder.wait(build.build_id, WAIT)
    status = build_status(build, builds=builds, images=images)
    # Then it was running, then done with the manifest's real digest
    assert polled.done is False and polled.phase == "BUILD"
    assert status.done is True and status.tag == "churn-v3-abcdef12" and status.digest is not None
    manifest = oci.blob_path(stack.layout, status.digest).read_bytes()
    assert status.digest == "sha256:" + hashlib.sha256(manifest).hexdigest()
    assert status.image == f"{stack.repo_uri}@{status.digest}"
    assert resolve_image(stack.layout, status.image) == status.digest


# --- references and archives ------------------------------------------------------------------------
def test_resolve_image_accepts_digest_and_tag_references_of_the_right_repository(tmp_path):
    # Given an image pushed into a layout for one repository
    code = tmp_path / "code"
    (code / "bin").mkdir(parents=True)
    (code / "bin" / "serve").write_text("print('serve')\n")
    (code / "model_server").mkdir()
    layers, config = oci.serving_image_spec(code, None)
    image = oci.build_image(tmp_path / "layout", "1.dkr.ecr.r.amazonaws.com/a", "t1", layers, config)
    layout = tmp_path / "layout"
    # When references are resolved
    # Then digest, repo@digest and repo:tag name it, and another repository or a bad digest does not
    assert resolve_image(layout, image.reference) == image.digest
    assert resolve_image(layout, image.digest) == image.digest
    assert resolve_image(layout, "1.dkr.ecr.r.amazonaws.com/a:t1") == image.digest
    with pytest.raises(oci.OciError, match="not to"):
        resolve_image(layout, f"1.dkr.ecr.r.amazonaws.com/b@{image.digest}")
    with pytest.raises(oci.OciError, match="no image tagged"):
        resolve_image(layout, "1.dkr.ecr.r.amazonaws.com/b:t1")
    with pytest.raises(oci.OciError, match="not found"):
        resolve_image(layout, "1.dkr.ecr.r.amazonaws.com/a@sha256:" + "0" * 64)
    with pytest.raises(oci.OciError, match="neither a tag nor a digest"):
        resolve_image(layout, "localhost:5000/a")


@pytest.mark.parametrize(
    ("name", "mode"),
    [("../escape.txt", 0o100644), ("/abs.txt", 0o100644), ("a/../../x", 0o100644), ("link", 0o120777)],
)
def test_safe_unzip_refuses_entries_outside_the_folder_and_links(tmp_path, name, mode):
    # Given a zip with one unsafe entry
    archive = tmp_path / "src.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("buildspec.yml", "version: 0.2\n")
        info = zipfile.ZipInfo(name)
        info.external_attr = mode << 16
        zf.writestr(info, "/etc/passwd" if mode == 0o120777 else "x")
    # When it is unzipped, then it is refused and nothing escaped
    with pytest.raises(UnsafeArchiveError):
        safe_unzip(archive, tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists() and not Path("/abs.txt").exists()


def test_safe_unzip_refuses_a_zip_bomb_and_keeps_executable_bits(tmp_path):
    # Given a packaged serving_image and a zip larger than the limit
    archive = tmp_path / "src.zip"
    archive.write_bytes(package_source(ROOT / "serving_image"))
    big = tmp_path / "big.zip"
    with zipfile.ZipFile(big, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros", b"\0" * 200_000)
    # When both are unzipped
    safe_unzip(archive, tmp_path / "src")
    # Then the source keeps bin/serve executable and holds the buildspec, and the bomb is refused
    assert (tmp_path / "src" / "bin" / "serve").stat().st_mode & 0o111
    assert (tmp_path / "src" / "buildspec.yml").is_file()
    assert not list((tmp_path / "src").rglob("__pycache__"))
    with pytest.raises(UnsafeArchiveError, match="more than"):
        safe_unzip(big, tmp_path / "bomb", max_bytes=100_000)


def test_a_link_to_a_host_file_in_the_model_stays_a_link_and_no_host_content_enters_the_image(
    routed, tmp_path
):
    # Given a model.tar.gz with a link to a host file (the Dockerfile's tar keeps links as links)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in MODEL_FILES.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("leak")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    stack = routed()
    stack.s3.put_object(Bucket=BUCKET, Key=MODEL_KEY, Body=buf.getvalue())
    # When it is built
    build = stack.finished(stack.start())
    # Then the image holds the link as a link, never the host file's content
    assert build["buildStatus"] == "SUCCEEDED", [p["contexts"] for p in build["phases"] if p.get("contexts")]
    exported = {v["name"]: v["value"] for v in build["exportedEnvironmentVariables"]}
    root = unpack_reference(stack.layout, exported["IMAGE_URI"], tmp_path / "rootfs")
    assert (root / "opt/ml/model/leak").is_symlink()
    passwd = Path("/etc/passwd").read_bytes()
    for layer in oci.read_manifest(stack.layout, exported["IMAGE_DIGEST"])["layers"]:
        assert passwd not in gzip.decompress(oci.read_blob(stack.layout, layer["digest"]))


def _until(probe: Any, timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return True
        time.sleep(0.01)
    return False


def test_package_source_is_deterministic():
    # Given serving_image/ / When it is packaged twice / Then the bytes are equal (a stable source zip)
    assert package_source(ROOT / "serving_image") == package_source(ROOT / "serving_image")


def test_concurrent_builds_of_one_image_under_three_tags_all_succeed(routed):
    # Given three builds of the same model under different tags, started together
    stack = routed()
    ids = [stack.start(IMAGE_TAG=f"churn-v1-tag{i}") for i in range(3)]
    # When they all finish
    builds = [stack.finished(build_id) for build_id in ids]
    # Then each succeeded with the same (deterministic) digest, which ECR holds once under all three tags
    assert [b["buildStatus"] for b in builds] == ["SUCCEEDED"] * 3
    digests = {
        v["value"] for b in builds for v in b["exportedEnvironmentVariables"] if v["name"] == "IMAGE_DIGEST"
    }
    (image,) = stack.ecr_images()
    assert {image["imageDigest"]} == digests
    assert sorted(image["imageTags"]) == [f"churn-v1-tag{i}" for i in range(3)]
    assert [b["buildNumber"] for b in builds] == [1, 2, 3]
    for i in range(3):
        assert resolve_image(stack.layout, f"{stack.repo_uri}:churn-v1-tag{i}") == image["imageDigest"]


# --- the buildspec's and the Dockerfile's own text --------------------------------------------------
def _source_with(stack: Stack, tmp_path: Path, edit: Any) -> None:
    """Upload serving_image/ edited by `edit(folder)` as the project's source."""
    import shutil

    folder = tmp_path / "edited-source"
    shutil.copytree(ROOT / "serving_image", folder, ignore=shutil.ignore_patterns("__pycache__"))
    edit(folder)
    stack.s3.put_object(Bucket=BUCKET, Key="source/serving_image.zip", Body=package_source(folder))


def test_a_change_to_the_buildspecs_commands_shows_up_in_the_local_build(routed, tmp_path):
    # Given a buildspec with one more pre_build command and one more exported variable
    def edit(folder: Path) -> None:
        import yaml

        spec = yaml.safe_load((folder / "buildspec.yml").read_text())
        spec["phases"]["pre_build"]["commands"].append(
            'BUILT_FOR="$MODEL_NAME-$IMAGE_TAG"; echo "team step for $BUILT_FOR"'
        )
        spec["env"]["exported-variables"].append("BUILT_FOR")
        (folder / "buildspec.yml").write_text(yaml.safe_dump(spec, sort_keys=False))

    stack = routed()
    _source_with(stack, tmp_path, edit)
    # When it builds
    build = stack.finished(stack.start())
    # Then the command ran (its output is in the log) and its variable was exported with the others
    assert build["buildStatus"] == "SUCCEEDED", build["phases"]
    assert "team step for churn-churn-v1-run00001" in stack.builder.log_path(build["id"]).read_text()
    exported = {v["name"]: v["value"] for v in build["exportedEnvironmentVariables"]}
    assert exported["BUILT_FOR"] == "churn-churn-v1-run00001" and exported["IMAGE_DIGEST"].startswith(
        "sha256:"
    )


@pytest.mark.parametrize(
    ("command", "says"),
    [
        (
            "test -f no-such-file",
            "Error while executing command: test -f no-such-file. Reason: exit status 1",
        ),
        (
            "docker system prune --force",
            "docker system prune --force: not supported by the local CodeBuild's docker shim",
        ),
    ],
)
def test_a_failing_buildspec_command_fails_its_phase_naming_it(routed, tmp_path, command, says):
    # Given a buildspec with one more command before the push: one that fails, one no shim carries out
    def edit(folder: Path) -> None:
        text = (folder / "buildspec.yml").read_text()
        (folder / "buildspec.yml").write_text(
            text.replace("      - docker push", f"      - {command}\n      - docker push", 1)
        )

    stack = routed()
    _source_with(stack, tmp_path, edit)
    build = stack.finished(stack.start())

    # Then BUILD fails naming it, and the push after it never ran
    assert build["buildStatus"] == "FAILED"
    message = phase(build, "BUILD")["contexts"][0]["message"]
    assert says in message, message
    assert stack.ecr_images() == []


@pytest.mark.parametrize(
    ("line", "says"),
    [
        (
            "HEALTHCHECK CMD serve --check",
            "instruction HEALTHCHECK is not supported by the local docker shim",
        ),
        (
            "RUN curl -fsSL https://example.com/x -o /x",
            "RUN program 'curl' is not supported by the local docker shim",
        ),
        ("COPY --link bin /x", "flag --link is not supported by the local docker shim"),
    ],
)
def test_an_unsupported_dockerfile_instruction_fails_the_build_naming_it(routed, tmp_path, line, says):
    def edit(folder: Path) -> None:
        (folder / "Dockerfile").write_text((folder / "Dockerfile").read_text() + f"\n{line}\n")

    stack = routed()
    _source_with(stack, tmp_path, edit)
    build = stack.finished(stack.start())

    assert build["buildStatus"] == "FAILED"
    message = phase(build, "BUILD")["contexts"][0]["message"]
    assert says in message, message
    assert stack.ecr_images() == []


def test_a_change_to_the_dockerfile_shows_up_in_the_image(routed, tmp_path):
    def edit(folder: Path) -> None:
        text = (folder / "Dockerfile").read_text()
        (folder / "Dockerfile").write_text(
            text + '\nLABEL io.modelops.extra="from the Dockerfile"\nENV TEAM_SETTING=42\n'
        )

    stack = routed()
    _source_with(stack, tmp_path, edit)
    build = stack.finished(stack.start())

    assert build["buildStatus"] == "SUCCEEDED", build["phases"]
    digest = {v["name"]: v["value"] for v in build["exportedEnvironmentVariables"]}["IMAGE_DIGEST"]
    config = oci.read_config(stack.layout, oci.read_manifest(stack.layout, digest))["config"]
    assert config["Labels"]["io.modelops.extra"] == "from the Dockerfile"
    assert "TEAM_SETTING=42" in config["Env"] and config["User"] == "10001"


def test_shutdown_stops_a_phase_whose_command_is_still_running(routed, tmp_path):
    # Given a buildspec whose pre_build runs a long command, and a build inside it
    def edit(folder: Path) -> None:
        text = (folder / "buildspec.yml").read_text()
        (folder / "buildspec.yml").write_text(text.replace("      - set -o pipefail", "      - sleep 300", 1))

    entered = threading.Event()
    stack = routed(on_phase=lambda build_id, name: name == "PRE_BUILD" and entered.set())
    _source_with(stack, tmp_path, edit)
    build_id = stack.start()
    assert entered.wait(WAIT)
    # When the builder shuts down
    started = time.monotonic()
    stack.builder.shutdown(WAIT)
    # Then the command was stopped (long before it would end) and the phase and build are STOPPED
    assert time.monotonic() - started < 30
    build = stack.builder.get(build_id)
    assert build["buildStatus"] == "STOPPED" and phase(build, "PRE_BUILD")["phaseStatus"] == "STOPPED"
