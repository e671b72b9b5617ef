"""A team image's serving image carries the judge's drift baseline: the real state machine runs a
team image's candidate through the judge, EvaluateModel records the judge's baseline, and StartBuild
hands that artifact to the local CodeBuild, which runs serving_image/buildspec.yml's own commands
and the Dockerfile into a real image whose model folder holds the judge's baseline.json."""

from __future__ import annotations

import io
import json
import sys
import tarfile
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from modelops_local.aws_server import InProcessAws
from modelops_local.codebuild import LocalCodeBuild, package_source, unpack_reference
from modelops_local.moto_patches import MotoPatches
from tests.integration.local.test_codebuild_local import METADATA, MODEL_FILES
from tests.integration.workflow.harness import BUCKET, REGION, ROOT
from tests.integration.workflow.test_judge_job import TEAM_IMAGE
from tests.integration.workflow.test_workflow import run

BUILD_TIMEOUT = 180.0  # the build runs bash, the shims and the Dockerfile (native compile included)

# A servable model over 2 features, the local CodeBuild's tests' (the team image's model folder:
# no baseline.json of its own).
TEAM_MODEL = MODEL_FILES


def _judges_baseline() -> bytes:
    """A baseline.json as the judge writes it (the serving image's own code, from serving_image/)."""
    if str(ROOT / "serving_image") not in sys.path:
        sys.path.insert(0, str(ROOT / "serving_image"))
    from model_server.baseline import make_baseline

    rng = np.random.default_rng(15)
    doc = make_baseline(
        features=rng.normal(size=(200, 2)),
        feature_columns=["a", "b"],
        categorical_columns=[],
        task="regression",
        predictions=rng.normal(size=50),
        classes=None,
        n_holdout=50,
    )
    return json.dumps(doc).encode()


@pytest.fixture
def local_codebuild(harness, tmp_path) -> Iterator[LocalCodeBuild]:
    """The harness's CodeBuild project served by the local CodeBuild (the buildspec's commands)."""
    clients = InProcessAws(REGION)
    clients.client("s3").put_object(
        Bucket=BUCKET, Key="source/serving_image.zip", Body=package_source(ROOT / "serving_image")
    )
    builder = LocalCodeBuild(clients, layout_dir=tmp_path / "layout", work_dir=tmp_path / "work")
    with MotoPatches() as patches:
        patches.route_codebuild(start=builder.start, batch_get=builder.batch_get)
        try:
            yield builder
        finally:
            builder.shutdown(5)


def test_a_team_images_serving_image_holds_the_judges_baseline(harness, local_codebuild, tmp_path):
    # Given a team image whose model folder has no baseline, and a judge that writes one
    harness.training_evaluation = None
    harness.training_files = dict(TEAM_MODEL)
    harness.judge_evaluation = {"metric": "auc", "candidate": 0.9, "champion": None, "n_validation": 60}
    baseline = _judges_baseline()
    harness.judge_files = {"baseline.json": baseline}

    # When the workflow runs up to the canary's deployment
    arn = run(harness, training__image=TEAM_IMAGE)
    harness.wait_for_state(arn, "DeployCanary", timeout=BUILD_TIMEOUT)

    # Then EvaluateModel recorded the judge's artifact as the baseline's, and StartBuild passed it on
    (training, _, _), (judge, _, _) = harness.training_jobs
    evaluation = _state_output(harness, arn, "EvaluateModel")["evaluation"]
    assert evaluation["baseline"]["artifact"].endswith(f"/{judge}/output/model.tar.gz")
    assert evaluation["model_artifact"].endswith(f"/{training}/output/model.tar.gz")
    build = _state_output(harness, arn, "CheckBuild")["build"]
    log = local_codebuild.log_path(build["build_id"]).read_text()
    assert f"baseline.json from {evaluation['baseline']['artifact']} added to the model" in log

    # And the image the build pushed serves the team's model with the judge's baseline beside it
    image = build["image"]
    assert image.startswith(f"{harness.repo_uri}@sha256:")
    root = unpack_reference(local_codebuild.layout_dir, image, tmp_path / "rootfs")
    model = root / "opt/ml/model"
    assert (model / "baseline.json").read_bytes() == baseline
    assert json.loads((model / "metadata.json").read_text()) == METADATA
    assert (model / "forest.json").read_bytes() == TEAM_MODEL["forest.json"]
    # while the registered artifact in S3 stays the team's own (the build changed its copy only)
    _, _, key = evaluation["model_artifact"][5:].partition("/")
    with tarfile.open(
        fileobj=io.BytesIO(harness.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    ) as tar:
        assert sorted(tar.getnames()) == sorted(TEAM_MODEL)
    harness.wait(arn, timeout=BUILD_TIMEOUT)


def _state_output(harness: Any, arn: str, state: str) -> dict[str, Any]:
    """The last output of `state` in the execution's history."""
    events = harness.sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    outputs = [
        json.loads(e["stateExitedEventDetails"]["output"])
        for e in events
        if e.get("stateExitedEventDetails", {}).get("name") == state
    ]
    assert outputs, f"{state} never exited"
    return outputs[-1]  # type: ignore[no-any-return]
