"""Judge mode of `train` (hyperparameter modelops_judge): a model trained elsewhere (a team's own
image) is scored by the same evaluator, on the same holdout rows, as a model trained here."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from model_server.contract import container_paths
from model_server.train import main

from modelops_local.team_image import CLAIMED_SCORE
from modelops_local.team_image import train as team_train
from tests.unit.serving.test_serving_train import _job, _tarball


def _judge_job(
    base: Path, candidate: Path | None, champion: Path | None = None, **hyper: str
) -> dict[str, str]:
    """A judge job on the same data as `_job(base)` (same rows and seed): channels train,
    candidate (the model.tar.gz) and, when given, champion."""
    env = _job(base, modelops_judge="true", **hyper)
    data = base / "input" / "data"
    if candidate is not None:
        (data / "candidate").mkdir(parents=True)
        shutil.copyfile(candidate, data / "candidate" / "model.tar.gz")
    if champion is not None:
        (data / "champion").mkdir(parents=True)
        shutil.copyfile(champion, data / "champion" / "model.tar.gz")
    return env


def _evaluation(env: dict[str, str]) -> dict[str, object]:
    return json.loads((container_paths(env).model_dir / "evaluation.json").read_text())  # type: ignore[no-any-return]


def _failure(env: dict[str, str]) -> str:
    return container_paths(env).failure_file.read_text()


def test_judge_scores_a_model_exactly_as_the_training_job_that_made_it(tmp_path):
    # Given a champion, and a candidate trained here against it (its evaluation is the built-in path's)
    old = _job(tmp_path / "old", seed=1)
    assert main(old) == 0
    champion = _tarball(container_paths(old).model_dir, tmp_path / "champion.tar.gz")
    built = _job(tmp_path / "built", seed=2)
    (tmp_path / "built" / "input" / "data" / "champion").mkdir(parents=True)
    shutil.copyfile(champion, tmp_path / "built" / "input" / "data" / "champion" / "model.tar.gz")
    assert main(built) == 0
    candidate = _tarball(container_paths(built).model_dir, tmp_path / "candidate.tar.gz")

    # When a judge job scores that candidate and that champion on the same data
    env = _judge_job(tmp_path / "judge", candidate, champion)
    (tmp_path / "judge" / "input" / "data" / "train" / "customers.csv").write_bytes(
        (tmp_path / "built" / "input" / "data" / "train" / "customers.csv").read_bytes()
    )
    assert main(env) == 0

    # Then its evaluation is the training job's, number for number
    assert _evaluation(env) == _evaluation(built)
    # And its model folder holds the evaluation and the drift baseline only: nothing that could
    # pass for a model; the baseline is the training job's, bin for bin (same split, same model)
    paths = container_paths(env)
    assert sorted(p.name for p in paths.model_dir.iterdir()) == ["baseline.json", "evaluation.json"]
    built_model = container_paths(built).model_dir
    assert (paths.model_dir / "baseline.json").read_bytes() == (built_model / "baseline.json").read_bytes()
    assert (paths.output_data_dir / "evaluation.json").read_bytes() == (
        paths.model_dir / "evaluation.json"
    ).read_bytes()


def test_judge_ignores_the_team_images_own_evaluation(tmp_path):
    # Given a team image's model/ whose own evaluation.json claims a score it does not have
    team = tmp_path / "team"
    _job(team)
    team_train(team)
    assert json.loads((team / "model" / "evaluation.json").read_text())["candidate"] == CLAIMED_SCORE
    candidate = _tarball(team / "model", tmp_path / "candidate.tar.gz")

    # When the judge scores it
    env = _judge_job(tmp_path / "judge", candidate)
    assert main(env) == 0

    # Then the verdict's numbers are the judge's, on the holdout
    evaluation = _evaluation(env)
    assert evaluation["metric"] == "auc"
    assert evaluation["candidate"] != CLAIMED_SCORE
    assert 0.5 < evaluation["candidate"] < 0.99  # type: ignore[operator]
    assert evaluation["champion"] is None
    assert evaluation["n_validation"] == pytest.approx(80, abs=2)


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda tmp: None, "channel 'candidate' holds no model.tar.gz"),
        (
            lambda tmp: _write(tmp / "bad.tar.gz", b"not a tarball"),
            "channel 'candidate': model.tar.gz is not a readable model.tar.gz",
        ),
        (lambda tmp: _no_metadata(tmp), "candidate model is unusable:"),
    ],
    ids=["missing", "not-a-tarball", "no-metadata"],
)
def test_a_missing_or_unusable_candidate_fails_in_one_line(tmp_path, make, expected):
    # Given a judge job whose candidate channel is empty or holds no usable model
    env = _judge_job(tmp_path / "judge", make(tmp_path))

    # When it runs
    assert main(env) == 1

    # Then the failure is one line naming the cause, and no evaluation is written
    reason = _failure(env)
    assert reason.count("\n") == 1
    assert expected in reason
    assert not (container_paths(env).model_dir / "evaluation.json").exists()


def test_a_candidate_of_other_columns_is_refused(tmp_path):
    # Given a team model trained on fewer columns than the model config lists
    team = tmp_path / "team"
    _job(team, feature_columns=json.dumps(["tenure_months", "support_calls"]))
    team_train(team)
    candidate = _tarball(team / "model", tmp_path / "candidate.tar.gz")

    # When the judge runs with the config's columns
    env = _judge_job(tmp_path / "judge", candidate)
    assert main(env) == 1

    # Then it names both column lists
    reason = _failure(env)
    assert "feature_columns ['tenure_months', 'support_calls'], the model config's are" in reason


def test_judge_mode_excludes_script_mode(tmp_path):
    env = _job(tmp_path / "ml", modelops_judge="true", entry_point="train.py")
    assert main(env) == 1
    assert "exclude each other" in _failure(env)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _no_metadata(tmp: Path) -> Path:
    folder = tmp / "model"
    folder.mkdir()
    (folder / "model.joblib").write_bytes(b"x")
    return _tarball(folder, tmp / "nometa.tar.gz")
