"""Steps over fakes of their ports: what each tells the workflow when the outside world answers."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, cast

import pytest
from modelops.config import load_config_file
from modelops.errors import BuildFailedError, KubeInvalidError, SmokeTestFailedError
from modelops.ports import BuildState, Kube
from modelops.run import Build, RunRef
from modelops.steps.build import build_status, start_build
from modelops.steps.lock import release
from modelops.steps.rollout import RolloutService

DIGEST = "sha256:" + "b" * 64
ROOT = Path(__file__).resolve().parents[3]


class FakeBuilds:
    """ImageBuilds: remembers what it was asked to start; reports the state it is given."""

    def __init__(self, state: BuildState | None) -> None:
        self.current = state
        self.started: list[dict[str, Any]] = []

    def start(self, *, idempotency_token: str, variables: dict[str, str]) -> str:
        self.started.append({"token": idempotency_token, **variables})
        return "project:1"

    def state(self, build_id: str) -> BuildState | None:
        return self.current


class FakeRepository:
    def __init__(self, digests: dict[str, str]) -> None:
        self.digests = digests

    @property
    def uri(self) -> str:
        return "123456789012.dkr.ecr.us-east-1.amazonaws.com/serving"

    def digest(self, tag: str) -> str | None:
        return self.digests.get(tag)


BUILD = Build(build_id="project:1", tag="churn-v3-abcdef12")


def test_a_build_is_started_with_what_the_buildspec_reads_and_the_same_token_per_run():
    builds, images = FakeBuilds(None), FakeRepository({})
    request = {
        "model": "churn",
        "version": "3",
        "run_id": "run-abcdef12",
        "model_artifact": "s3://b/m.tar.gz",
    }
    build = start_build(**request, builds=builds, images=images)
    start_build(**request, builds=builds, images=images)
    assert build == BUILD
    first, again = builds.started
    assert first == again and first["IMAGE_TAG"] == "churn-v3-abcdef12"
    assert first["MODEL_ARTIFACT_S3_URI"] == "s3://b/m.tar.gz" and first["IMAGE_REPOSITORY_URI"] == images.uri


@pytest.mark.parametrize(
    ("baseline_artifact", "expected"),
    [
        ("s3://b/judge/model.tar.gz", "s3://b/judge/model.tar.gz"),  # a team image: the judge's
        ("s3://b/m.tar.gz", None),  # the training job's own artifact already holds it
        (None, None),  # no usable baseline: nothing to add
    ],
)
def test_the_build_is_given_the_baseline_artifact_only_when_it_is_not_the_models(baseline_artifact, expected):
    builds = FakeBuilds(None)
    start_build(
        model="churn",
        version="3",
        run_id="run-abcdef12",
        model_artifact="s3://b/m.tar.gz",
        baseline_artifact=baseline_artifact,
        builds=builds,
        images=FakeRepository({}),
    )
    (started,) = builds.started
    assert started.get("BASELINE_ARTIFACT_S3_URI") == expected
    assert started["MODEL_ARTIFACT_S3_URI"] == "s3://b/m.tar.gz"


def test_a_running_build_is_not_done_and_a_finished_one_is_pinned_by_digest():
    running = build_status(
        BUILD, builds=FakeBuilds(BuildState("IN_PROGRESS", "BUILD")), images=FakeRepository({})
    )
    assert running.done is False and running.phase == "BUILD"
    done = build_status(
        BUILD,
        builds=FakeBuilds(BuildState("SUCCEEDED", "COMPLETED")),
        images=FakeRepository({BUILD.tag: DIGEST}),
    )
    assert done.done is True and done.image == f"{FakeRepository({}).uri}@{DIGEST}"


@pytest.mark.parametrize(
    ("state", "digests", "message"),
    [
        (None, {}, "build project:1 not found"),
        (
            BuildState("FAILED", "BUILD", ("PRE_BUILD: NoSuchKey", "BUILD: docker build exited 1")),
            {},
            "FAILED: PRE_BUILD: NoSuchKey; BUILD: docker build exited 1",
        ),
        (BuildState("TIMED_OUT", "BUILD"), {}, "TIMED_OUT: see the build logs"),
        (BuildState("SUCCEEDED", "COMPLETED"), {}, "pushed no image tagged churn-v3-abcdef12"),
    ],
)
def test_a_build_that_did_not_push_an_image_fails_saying_why(state, digests, message):
    with pytest.raises(BuildFailedError, match=message):
        build_status(BUILD, builds=FakeBuilds(state), images=FakeRepository(digests))


def test_an_image_that_is_not_a_digest_is_refused():
    with pytest.raises(KubeInvalidError, match="not pinned by digest"):
        build_status(
            BUILD,
            builds=FakeBuilds(BuildState("SUCCEEDED", None)),
            images=FakeRepository({BUILD.tag: "latest"}),
        )


class FakeStore:
    def __init__(self, pending: dict[str, Any] | None) -> None:
        self.pending = pending
        self.docs: dict[str, dict[str, Any]] = {}
        self.released: list[str] = []

    def release_lock(self, model: str, owner: str) -> bool:
        self.released.append(owner)
        return True

    def pop_pending(self, model: str) -> dict[str, Any] | None:
        pending, self.pending = self.pending, None
        return pending

    def put_doc(self, model: str, sk: str, doc: dict[str, Any], *, expires_at: int | None = None) -> None:
        self.docs[sk] = doc


class FailingExecutions:
    def start(self, name: str, payload: str) -> str | None:
        raise ConnectionError("Step Functions unreachable")


class RecordingExecutions:
    def __init__(self) -> None:
        self.started: list[str] = []

    def start(self, name: str, payload: str) -> str | None:
        self.started.append(name)
        return None if len(self.started) > 1 else f"arn:{name}"


PENDING = {"model": "churn", "trigger": "s3", "idempotency_key": "s3|b|k|v", "reason": "new data"}


def test_a_follow_up_that_cannot_start_stays_pending_for_the_next_release():
    store = FakeStore(dict(PENDING))
    with pytest.raises(ConnectionError):
        release("churn", "run-1", store=store, executions=FailingExecutions())  # type: ignore[arg-type]
    assert store.released == ["run-1"] and store.docs["PENDING"] == PENDING


def test_a_follow_up_already_started_by_an_earlier_try_is_still_reported():
    executions = RecordingExecutions()
    first = release("churn", "run-1", store=FakeStore(dict(PENDING)), executions=executions)  # type: ignore[arg-type]
    again = release("churn", "run-1", store=FakeStore(dict(PENDING)), executions=executions)  # type: ignore[arg-type]
    assert first["follow_up"] == again["follow_up"] == executions.started[0]
    assert "-queued-" in first["follow_up"] and len(set(executions.started)) == 1


# --- smoke test -----------------------------------------------------------------------------------
class AnsweringKube:
    """Kube whose service proxy answers every POST with one fixed (status, body); remembers bodies."""

    def __init__(self, status: int, answer: dict[str, Any]) -> None:
        self.status, self.body = status, json.dumps(answer)
        self.posted: list[Any] = []

    def service_proxy_post(
        self, namespace: str, service: str, port: int, path: str, body: Any, content_type: str
    ) -> tuple[int, str]:
        self.posted.append(body)
        return self.status, self.body


def _smoke(answer: dict[str, Any], rows: list[list[float | str | None]]) -> dict[str, Any]:
    kube = AnsweringKube(200, answer)
    service = RolloutService(
        kube=cast(Kube, kube), store=cast(Any, None), metrics=cast(Any, None), callbacks=cast(Any, None)
    )
    run = RunRef(run_id="run-1", model="churn", config=load_config_file(ROOT / "models" / "churn.yaml"))
    result = service.smoke_test(run, rows)
    assert kube.posted == [{"instances": rows}]
    return result


ROWS: list[list[float | str | None]] = [[1.0, None, "basic"], [2.0, 3.0, None]]


@pytest.mark.parametrize(
    "answer",
    [
        {"predictions": [0.5, -3.25]},  # regression
        {"predictions": ["no", "yes"], "classes": ["no", "yes"], "probabilities": [[0.9, 0.1], [0.2, 0.8]]},
        {
            "predictions": ["gold", "bronze"],
            "classes": ["bronze", "gold", "silver"],
            "probabilities": [[0.1, 0.7, 0.2], [0.6, 0.3, 0.1]],
        },
    ],
    ids=["regression", "binary-labels", "multiclass-labels"],
)
def test_the_smoke_test_accepts_values_or_labels_named_by_the_model(answer):
    assert _smoke(answer, ROWS) == {"rows": 2, "status": 200}


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ({"predictions": [0.5, None]}, "non-numeric predictions, e.g. [None]"),
        ({"predictions": [0.5]}, "returned 1 predictions for 2 rows"),
        (
            {"predictions": ["no", "maybe"], "classes": ["no", "yes"], "probabilities": [[1, 0], [0, 1]]},
            "predictions ['maybe'] that are not among its classes ['no', 'yes']",
        ),
        ({"predictions": ["no", "yes"], "classes": ["no", "yes"]}, "no probabilities row per prediction"),
        (
            {"predictions": ["no", "yes"], "classes": ["no", "yes"], "probabilities": [[1, 0], [0.5]]},
            "not 2 finite numbers per row, e.g. [[0.5]]",
        ),
        (
            {"predictions": ["no", "no"], "classes": ["no"], "probabilities": [[1], [1]]},
            "a classifier names at least 2",
        ),
    ],
)
def test_the_smoke_test_fails_on_an_answer_a_client_could_not_use(answer, message):
    with pytest.raises(SmokeTestFailedError, match=re.escape(message)):
        _smoke(answer, ROWS)
