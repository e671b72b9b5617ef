"""A team image's model served with the judge's baseline (what the image build puts beside it):
the pods keep live drift statistics; without a usable baseline they still serve and say why not."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
from model_server.contract import container_paths
from model_server.train import main

from modelops_local.sample_data import CHURN_FEATURES
from modelops_local.team_image import train as team_train
from tests.unit.serving.test_serving_judge import _judge_job
from tests.unit.serving.test_serving_requests import _invoke, _service
from tests.unit.serving.test_serving_train import _job, _tarball


@pytest.fixture(scope="module")
def team_model(tmp_path_factory) -> tuple[Path, bytes]:
    """A team image's model folder (no baseline.json) and the judge job's baseline.json for it."""
    base = tmp_path_factory.mktemp("team")
    _job(base / "team")
    team_train(base / "team")
    model = base / "team" / "model"
    assert not (model / "baseline.json").exists()
    env = _judge_job(base / "judge", _tarball(model, base / "candidate.tar.gz"))
    assert main(env) == 0
    return model, (container_paths(env).model_dir / "baseline.json").read_bytes()


def _served_folder(tmp_path: Path, model: Path, baseline: bytes | None) -> Path:
    """The serving image's model folder: the team's files, and baseline.json as the build adds it."""
    folder = tmp_path / "opt-ml-model"
    shutil.copytree(model, folder)
    if baseline is not None:
        (folder / "baseline.json").write_bytes(baseline)
    return folder


ROWS = [[1, 20.0, 1, 0, 0, 1], [70, 110.5, 2, 3, 1, 0], [None, 60.0, 0, 1, 0, 0]]


def test_a_team_images_model_with_the_judges_baseline_keeps_live_statistics(team_model, tmp_path):
    # Given the team's model folder with the judge's baseline beside it
    model, baseline = team_model
    service = _service(_served_folder(tmp_path, model, baseline))
    service.load()

    # When three rows are predicted, one with a missing tenure
    status, answer = _invoke(service, json.dumps({"instances": ROWS}).encode(), "application/json")
    assert status == 200, answer

    # Then every feature has a histogram of the three rows, against the judge's bins
    documents = service.metrics.drain()
    bins = {d["Feature"]: d["FeatureBins"] for d in documents if "FeatureBins" in d}
    assert set(bins) == set(CHURN_FEATURES)
    assert all(sum(h["Counts"]) == 3 for h in bins.values())
    doc = json.loads(baseline)
    tenure = next(f for f in doc["features"] if f["name"] == "tenure_months")
    k = len(tenure["edges"]) + 1
    assert float(k + 1) in bins["tenure_months"]["Values"]  # code k+1: the missing value
    [predictions] = [d["PredictionBins"] for d in documents if "PredictionBins" in d]
    assert predictions["Count"] == 3


@pytest.mark.parametrize(
    ("baseline", "says"),
    [
        (None, "no live drift statistics: no baseline.json"),
        (b"{not json", "live drift statistics off: baseline.json unusable"),
        (
            json.dumps({"version": 1, "features": []}).encode(),
            "live drift statistics off: baseline.json unusable",
        ),
    ],
)
def test_without_a_usable_baseline_the_model_still_serves_and_logs_why(
    team_model, tmp_path, caplog, baseline, says
):
    # Given the team's model folder with no baseline, or a corrupt one
    model, _ = team_model
    service = _service(_served_folder(tmp_path, model, baseline))
    with caplog.at_level(logging.INFO):
        service.load()

    # Then it serves, counts nothing, and its log says why
    status, answer = _invoke(service, json.dumps({"instances": ROWS}).encode(), "application/json")
    assert status == 200 and len(answer["predictions"]) == 3
    assert service.metrics.stats is None
    assert not [d for d in service.metrics.drain() if "FeatureBins" in d]
    assert says in caplog.text
