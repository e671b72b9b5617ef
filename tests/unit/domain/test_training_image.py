"""The stack's own training image: packing its source, bootstrap's build-and-record, and
ResolveRequest's choice of image (a run before bootstrap fails early, saying what to run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from modelops.errors import BootstrapError, TrainingImageMissingError
from modelops.ports import BuildState
from modelops.training_image import (
    SOURCE_KEY,
    bootstrap_training_image,
    default_training_image,
    pack_image_source,
    recorded_image,
)

ROOT = Path(__file__).resolve().parents[3]
REPO = "123456789012.dkr.ecr.us-east-1.amazonaws.com/demo-training"
PARAM = "/modelops/demo/training-image"
DIGEST = "sha256:" + "a" * 64
LOG = "https://console.aws.amazon.com/cloudwatch/x (CloudWatch Logs group /aws/codebuild/demo-image-build, stream s1)"


class Objects:
    def __init__(self) -> None:
        self.puts: list[tuple[str, str, int]] = []

    def put(self, bucket: str, key: str, body: bytes, *, content_type: str) -> str | None:
        self.puts.append((bucket, key, len(body)))
        return "v7"


class Builds:
    """Reports the scripted states one poll at a time; pushes the image when told to succeed."""

    def __init__(self, repo: Repo, states: list[BuildState]) -> None:
        self.repo, self.states, self.started = repo, states, []

    def start(
        self, *, idempotency_token: str, variables: dict[str, str], source_version: str | None = None
    ) -> str:
        self.started.append((variables, source_version))
        return "demo-image-build:b1"

    def state(self, build_id: str) -> BuildState | None:
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        if state.status == "SUCCEEDED":
            self.repo.digests[self.started[-1][0]["IMAGE_TAG"]] = DIGEST
        return state


class Repo:
    uri = REPO

    def __init__(self) -> None:
        self.digests: dict[str, str] = {}

    def digest(self, tag: str) -> str | None:
        return self.digests.get(tag)


class Params:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def put(self, name: str, value: str) -> None:
        self.values[name] = value


def run(source, repo, builds, params, objects, *, timeout: float = 60.0, lines: list[str] | None = None):
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    return bootstrap_training_image(
        source,
        bucket="bkt",
        parameter=PARAM,
        objects=objects,
        builds=builds,
        repository=repo,
        parameters=params,
        progress=(lines if lines is not None else []).append,
        timeout_seconds=timeout,
        poll_seconds=5,
        clock=lambda: now[0],
        sleep=sleep,
    )


@pytest.fixture
def source():
    return pack_image_source(ROOT / "serving_image")


def test_source_zip_is_reproducible_and_holds_the_build_files(source):
    assert pack_image_source(ROOT / "serving_image").data == source.data
    assert {"Dockerfile", "buildspec.yml", "bin/train"} <= set(source.files)
    assert not any("__pycache__" in name for name in source.files)
    assert source.tag == f"source-{source.sha256[:20]}"


def test_a_folder_without_a_dockerfile_is_refused(tmp_path):
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(BootstrapError, match="--source serving_image"):
        pack_image_source(tmp_path)


def test_first_bootstrap_builds_the_runtime_target_and_records_the_digest(source):
    repo, params, objects = Repo(), Params(), Objects()
    phases = [BuildState("IN_PROGRESS", p) for p in ("QUEUED", "BUILD", "BUILD", "POST_BUILD")]
    builds = Builds(repo, [*phases, BuildState("SUCCEEDED", "COMPLETED")])
    lines: list[str] = []
    result = run(source, repo, builds, params, objects, lines=lines)
    assert result.built and result.recorded and result.image == f"{REPO}@{DIGEST}"
    assert objects.puts == [("bkt", SOURCE_KEY, len(source.data))]
    variables, version = builds.started[0]
    assert variables == {"IMAGE_TARGET": "runtime", "IMAGE_REPOSITORY_URI": REPO, "IMAGE_TAG": source.tag}
    assert version == "v7"  # the build reads exactly the object just uploaded
    assert recorded_image(params, PARAM) == f"{REPO}@{DIGEST}"
    assert [line.strip() for line in lines if line.startswith("  ")] == [
        "queued",
        "build",
        "post build",
        "completed",
    ]


def test_second_bootstrap_with_the_same_source_does_nothing(source):
    repo, params, objects = Repo(), Params(), Objects()
    run(source, repo, Builds(repo, [BuildState("SUCCEEDED", "COMPLETED")]), params, objects)
    before = dict(params.values)
    builds = Builds(repo, [BuildState("SUCCEEDED", "COMPLETED")])
    lines: list[str] = []
    result = run(source, repo, builds, params, objects, lines=lines)
    assert not result.built and not result.recorded
    assert builds.started == [] and len(objects.puts) == 1 and params.values == before
    assert "nothing to do" in lines[-1]


def test_an_image_built_from_this_source_is_recorded_without_building(source):
    repo, params, objects = Repo(), Params(), Objects()
    repo.digests[source.tag] = DIGEST
    builds = Builds(repo, [BuildState("SUCCEEDED", "COMPLETED")])
    result = run(source, repo, builds, params, objects)
    assert result.recorded and not result.built and builds.started == [] and objects.puts == []
    assert json.loads(params.values[PARAM])["image"] == f"{REPO}@{DIGEST}"


def test_a_failed_build_names_its_log_and_records_nothing(source):
    repo, params, objects = Repo(), Params(), Objects()
    failed = BuildState(
        "FAILED", "COMPLETED", ("BUILD: COMMAND_EXECUTION_ERROR pip install failed",), logs=LOG
    )
    with pytest.raises(BootstrapError) as caught:
        run(source, repo, Builds(repo, [failed]), params, objects)
    message = str(caught.value)
    assert "ended FAILED" in message and "pip install failed" in message
    assert "/aws/codebuild/demo-image-build" in message and "stream s1" in message
    assert "run `modelops bootstrap` again" in message
    assert params.values == {}


def test_a_build_past_the_deadline_stops_the_wait_and_records_nothing(source):
    repo, params, objects = Repo(), Params(), Objects()
    running = BuildState("IN_PROGRESS", "BUILD", logs=LOG)
    with pytest.raises(BootstrapError, match="still BUILD after 30 s.*without building again"):
        run(source, repo, Builds(repo, [running]), params, objects, timeout=30)
    assert params.values == {}


def test_the_training_image_a_run_uses():
    # TrainingImage set: it wins, bootstrap's record is not read
    assert default_training_image("custom:1", lambda: pytest.fail("read"), stack="demo") == "custom:1"
    # empty: the recorded image
    assert default_training_image("", lambda: f"{REPO}@{DIGEST}", stack="demo") == f"{REPO}@{DIGEST}"
    # neither: a clear error that says what to run
    with pytest.raises(TrainingImageMissingError, match=r"run `modelops --stack demo bootstrap`"):
        default_training_image("", lambda: None, stack="demo")


def test_recorded_image_reads_only_a_bootstrap_record():
    params = Params()
    assert recorded_image(params, PARAM) is None
    params.values[PARAM] = '{"image": ""}'  # the stack's placeholder before bootstrap
    assert recorded_image(params, PARAM) is None
    params.values[PARAM] = "not json"
    assert recorded_image(params, PARAM) is None


class Store:
    def __init__(self, image: str | None = None, script: bool = False) -> None:
        from modelops.config import load_config_file

        doc = load_config_file(ROOT / "models" / "churn.yaml").to_document()
        doc["training"]["image"] = image or ""
        if script:
            doc["training"]["script"] = {"entry_point": "train.py", "source": "s3://bkt/code/churn/x.tar.gz"}
        self.doc = doc

    def get_model_document(self, model: str):
        return self.doc

    def get_doc(self, model: str, sk: str):
        return None


def resolve_with(store: Store, recorded):
    from modelops.steps.resolve import resolve

    return resolve(
        {
            "model": "churn",
            "trigger": "manual",
            "dataset": {"key": "incoming/churn/a.csv"},
            "idempotency_key": "k",
        },
        execution_name="run-1",
        store=store,
        objects=None,
        bucket="bkt",
        stack_name="demo",
        sagemaker_role_arn="arn:aws:iam::123456789012:role/sm",
        training_image="",
        poll_seconds=0,
        recorded_image=recorded,
    )


def test_resolve_before_bootstrap_fails_early_and_says_what_to_run():
    with pytest.raises(TrainingImageMissingError, match="bootstrap"):
        resolve_with(Store(), lambda: None)
    run = resolve_with(Store(), lambda: f"{REPO}@{DIGEST}")
    assert run.training_image == f"{REPO}@{DIGEST}"
    # a team image running our harness (a script) needs no bootstrap (the record is not even read)
    harness = resolve_with(Store(image="team/train:3", script=True), lambda: pytest.fail("read"))
    assert harness.training_image == "team/train:3" and harness.judge_image is None
    # a team image of its own is judged by our image: that one must exist
    with pytest.raises(TrainingImageMissingError, match="bootstrap"):
        resolve_with(Store(image="team/train:3"), lambda: None)
    own = resolve_with(Store(image="team/train:3"), lambda: f"{REPO}@{DIGEST}")
    assert own.training_image == "team/train:3" and own.judge_image == f"{REPO}@{DIGEST}"
