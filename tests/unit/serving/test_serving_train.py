"""The `train` program under the SageMaker container contract, run in-process on generated data."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pytest
from model_server.contract import container_paths
from model_server.train import main
from modelops.evaluation import read_evaluation_from_tarball

from modelops_local.sample_data import CHURN_FEATURES, CHURN_LABEL, generate_churn_csv

HYPER = {
    "label_column": CHURN_LABEL,
    "feature_columns": json.dumps(list(CHURN_FEATURES)),
    "task": "binary_classification",
    "objective_metric": "auc",
    "max_iter": "20",
    "learning_rate": "0.2",
    "max_depth": "3",
}


def _job(base: Path, rows: int = 400, seed: int = 1, drift: float = 0.0, **hyper: str) -> dict[str, str]:
    """A SageMaker-style base dir with hyperparameters and a train channel; returns the env."""
    config = base / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps({**HYPER, **hyper}))
    generate_churn_csv(base / "input" / "data" / "train" / "customers.csv", rows, seed, drift)
    return {"SAGEMAKER_BASE_DIR": str(base), "TRAINING_JOB_NAME": "churn-job-1"}


def _tarball(model_dir: Path, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(dest, "w:gz") as tar:
        for path in sorted(model_dir.iterdir()):
            tar.add(path, arcname=path.name)
    return dest


def test_training_writes_model_metadata_and_evaluation(tmp_path, capsys):
    # Given a training channel with a churn CSV and the pipeline's hyperparameters
    env = _job(tmp_path / "ml")

    # When train runs
    code = main(env)

    # Then it succeeds and writes the model folder and a copy of evaluation.json in output/data
    assert code == 0
    paths = container_paths(env)
    assert {p.name for p in paths.model_dir.iterdir()} == {
        "model.joblib",
        "metadata.json",
        "evaluation.json",
        "forest.json",
        "check.json",
        "baseline.json",
    }
    # baseline.json: every feature profiled on the 80% training rows, predictions on the holdout
    baseline = json.loads((paths.model_dir / "baseline.json").read_text())
    assert [f["name"] for f in baseline["features"]] == list(CHURN_FEATURES)
    assert all(sum(f["shares"]) + f["missing_share"] == pytest.approx(1.0) for f in baseline["features"])
    assert baseline["prediction"]["kind"] == "classes"
    assert baseline["n_rows"] + baseline["n_holdout"] == 400
    # check.json: holdout rows (null for missing) with the saved model's answers, for the image build
    check = json.loads((paths.model_dir / "check.json").read_text())
    assert len(check["rows"]) == len(check["expected"]) > 0
    assert all(len(row) == len(CHURN_FEATURES) for row in check["rows"])
    evaluation = json.loads((paths.model_dir / "evaluation.json").read_text())
    assert evaluation["metric"] == "auc"
    assert 0.5 < evaluation["candidate"] <= 1.0
    assert evaluation["champion"] is None
    assert evaluation["n_train"] + evaluation["n_validation"] == 400
    assert evaluation["n_validation"] == pytest.approx(80, abs=2)
    assert (paths.output_data_dir / "evaluation.json").read_text() == (
        paths.model_dir / "evaluation.json"
    ).read_text()
    # And the metadata carries what serving needs
    meta = json.loads((paths.model_dir / "metadata.json").read_text())
    assert meta["feature_columns"] == list(CHURN_FEATURES)
    assert meta["label_column"] == CHURN_LABEL
    assert meta["classes"] == ["0", "1"]
    assert meta["training_rows"] == 400
    assert meta["training_job"] == "churn-job-1"
    assert meta["sklearn_version"]
    # And the compiled predictor ships, checked against the estimator on the holdout
    assert meta["forest_file"] == "forest.json"
    assert 0 <= meta["forest_max_abs_diff"] <= 1e-9
    # And SageMaker MetricDefinitions can scrape the objective from stdout
    assert f"validation:auc={evaluation['candidate']:.6f}" in capsys.readouterr().out.splitlines()
    assert not paths.failure_file.exists()


def test_the_pipeline_reads_the_evaluation_from_the_packed_model(tmp_path):
    # Given a trained model packed as SageMaker packs model/
    env = _job(tmp_path / "ml")
    assert main(env) == 0
    archive = _tarball(container_paths(env).model_dir, tmp_path / "model.tar.gz")

    # When the workflow's evaluation step parses it
    evaluation = read_evaluation_from_tarball(archive.read_bytes(), source="s3://bucket/model.tar.gz")

    # Then it finds the metric and the candidate's score
    assert evaluation.metric == "auc"
    assert evaluation.champion is None
    assert evaluation.n_validation > 0


def test_same_data_and_seed_give_the_same_evaluation(tmp_path):
    # Given two identical jobs
    first, second = _job(tmp_path / "a"), _job(tmp_path / "b")

    # When both train
    assert main(first) == 0 and main(second) == 0

    # Then the split and the scores are identical
    read = lambda env: json.loads((container_paths(env).model_dir / "evaluation.json").read_text())  # noqa: E731
    assert read(first) == read(second)


def test_champion_is_scored_on_the_same_holdout(tmp_path):
    # Given a champion trained before the data drifted, passed as the champion channel
    old = _job(tmp_path / "old", seed=1)
    assert main(old) == 0
    new = _job(tmp_path / "new", seed=2, drift=1.0)
    _tarball(
        container_paths(old).model_dir, tmp_path / "new" / "input" / "data" / "champion" / "model.tar.gz"
    )

    # When the candidate trains on the drifted data
    assert main(new) == 0

    # Then both are scored on the new holdout, and the retrained candidate wins
    evaluation = json.loads((container_paths(new).model_dir / "evaluation.json").read_text())
    assert evaluation["champion"] is not None
    assert evaluation["candidate"] > evaluation["champion"]
    assert evaluation["champion_metrics"]["auc"] == evaluation["champion"]


def test_champion_with_other_columns_is_reported_not_compared(tmp_path):
    # Given a champion trained on a column the new data no longer has
    old = _job(tmp_path / "old")
    assert main(old) == 0
    new = _job(tmp_path / "new", feature_columns=json.dumps(list(CHURN_FEATURES[:3])))
    csv_path = tmp_path / "new" / "input" / "data" / "train" / "customers.csv"
    lines = csv_path.read_text().splitlines()
    header = lines[0].split(",")
    keep = [header.index(c) for c in [*CHURN_FEATURES[:3], CHURN_LABEL]]
    csv_path.write_text("\n".join(",".join(line.split(",")[i] for i in keep) for line in lines) + "\n")
    _tarball(
        container_paths(old).model_dir, tmp_path / "new" / "input" / "data" / "champion" / "model.tar.gz"
    )

    # When the candidate trains
    assert main(new) == 0

    # Then the evaluation says why the champion was not compared
    evaluation = json.loads((container_paths(new).model_dir / "evaluation.json").read_text())
    assert evaluation["champion"] is None
    assert "usage_gb" in evaluation["champion_skipped"]


def test_missing_label_column_writes_the_failure_file(tmp_path):
    # Given hyperparameters naming a label column the CSV lacks
    env = _job(tmp_path / "ml", label_column="cancelled")

    # When train runs
    code = main(env)

    # Then it exits non-zero with a one-line reason naming the column and the file
    assert code == 1
    reason = container_paths(env).failure_file.read_text()
    assert reason.count("\n") == 1
    assert "label column 'cancelled' not found in customers.csv" in reason
    assert not (container_paths(env).model_dir / "model.joblib").exists()


@pytest.mark.parametrize(
    ("hyper", "expected"),
    [
        (
            {"feature_columns": "tenure_months,usage_gb"},
            "feature_columns='tenure_months,usage_gb' is not a JSON list",
        ),
        (
            {"objective_metric": "rmse"},
            "objective_metric='rmse' does not apply to task binary_classification",
        ),
        ({"task": "multiclass"}, "task='multiclass' is not supported"),
        ({"max_iter": "ten"}, "max_iter='ten' is not a number"),
        (
            {"feature_columns": json.dumps([*CHURN_FEATURES, "region"])},
            "feature columns ['region'] not found in customers.csv",
        ),
    ],
)
def test_bad_hyperparameters_fail_with_the_field_named(tmp_path, hyper, expected):
    # Given one bad hyperparameter
    env = _job(tmp_path / "ml", **hyper)

    # When train runs
    assert main(env) == 1

    # Then the failure reason names it
    assert expected in container_paths(env).failure_file.read_text()


def test_non_numeric_feature_names_file_line_and_column(tmp_path):
    # Given a CSV with text in a numeric column on line 3
    env = _job(tmp_path / "ml")
    csv_path = tmp_path / "ml" / "input" / "data" / "train" / "customers.csv"
    lines = csv_path.read_text().splitlines()
    cells = lines[2].split(",")
    cells[1] = "n/a"
    lines[2] = ",".join(cells)
    csv_path.write_text("\n".join(lines) + "\n")

    # When train runs
    assert main(env) == 1

    # Then the reason points at the cell
    assert "customers.csv line 3: column 'monthly_charges' is not a number: 'n/a'" in (
        container_paths(env).failure_file.read_text()
    )


def test_a_label_with_three_values_is_refused_for_binary_classification(tmp_path):
    # Given a label column with a third value
    env = _job(tmp_path / "ml")
    csv_path = tmp_path / "ml" / "input" / "data" / "train" / "customers.csv"
    text = csv_path.read_text().splitlines()
    text[1] = text[1].rsplit(",", 1)[0] + ",2"
    csv_path.write_text("\n".join(text) + "\n")

    # When train runs
    assert main(env) == 1

    # Then the reason says how many values and what is needed
    assert "has 3 distinct values ['0', '1', '2']; binary_classification needs exactly 2" in (
        container_paths(env).failure_file.read_text()
    )


def test_regression_reports_rmse(tmp_path, capsys):
    # Given a regression target (monthly charges from the other columns)
    env = _job(
        tmp_path / "ml",
        task="regression",
        objective_metric="rmse",
        label_column="monthly_charges",
        feature_columns=json.dumps(
            ["tenure_months", "support_calls", "usage_gb", "contract_months", CHURN_LABEL]
        ),
    )

    # When train runs
    assert main(env) == 0

    # Then evaluation.json uses rmse and metadata has no classes
    paths = container_paths(env)
    evaluation = json.loads((paths.model_dir / "evaluation.json").read_text())
    assert evaluation["metric"] == "rmse" and evaluation["candidate"] > 0
    assert json.loads((paths.model_dir / "metadata.json").read_text())["classes"] is None
    assert "validation:rmse=" in capsys.readouterr().out


def test_empty_train_channel_names_the_channel(tmp_path):
    # Given no CSV in the train channel
    env = _job(tmp_path / "ml")
    shutil.rmtree(tmp_path / "ml" / "input" / "data" / "train")
    (tmp_path / "ml" / "input" / "data" / "train").mkdir()
    (tmp_path / "ml" / "input" / "data" / "train" / "notes.txt").write_text("x")

    # When train runs
    assert main(env) == 1

    # Then the failure says which channel and what it found
    assert "channel 'train' has no .csv files" in container_paths(env).failure_file.read_text()


def test_every_metric_the_model_config_accepts_is_one_train_computes():
    # A model config that validates must not fail training on its objective metric.
    from model_server.hyperparameters import TASK_METRICS as TRAINED
    from modelops.config import TASK_METRICS as ACCEPTED

    assert ACCEPTED == TRAINED
