"""Class labels kept by name: a multiclass model (tiers named in words, a categorical column, empty
cells) and a yes/no binary model through `train` and `serve`'s answer, in-process."""

from __future__ import annotations

import asyncio
import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from model_server.artifact import load_model
from model_server.contract import container_paths, serve_settings
from model_server.emf import RequestMetrics
from model_server.server import ModelService
from model_server.train import main

from modelops_local.sample_data import CHURN_FEATURES, CHURN_LABEL, generate_churn_csv
from tests.multiclass_data import REGIONS, TIER_FEATURES, TIER_LABEL, TIERS, generate_tier_csv, tier_rows

TIER = {
    "label_column": TIER_LABEL,
    "feature_columns": json.dumps(list(TIER_FEATURES)),
    "categorical_columns": json.dumps(["region"]),
    "task": "multiclass_classification",
    "max_iter": "40",
    "max_depth": "4",
}


def _job(base: Path, hyper: dict[str, str], write_data, champion: Path | None = None) -> dict[str, str]:
    (base / "input" / "config").mkdir(parents=True)
    (base / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hyper))
    write_data(base / "input" / "data" / "train" / "data.csv")
    if champion is not None:
        channel = base / "input" / "data" / "champion"
        channel.mkdir(parents=True)
        for path in champion.iterdir():
            (channel / path.name).write_bytes(path.read_bytes())
    return {"SAGEMAKER_BASE_DIR": str(base), "TRAINING_JOB_NAME": "job"}


def _train(base: Path, hyper: dict[str, str], write_data, champion: Path | None = None) -> Path:
    env = _job(base, hyper, write_data, champion)
    assert main(env) == 0, container_paths(env).failure_file.read_text()
    return container_paths(env).model_dir


def _tiers(seed: int, rows: int = 900):
    return lambda path: generate_tier_csv(path, rows, seed)


def _matrix(rows: list[list[float | str | None]]) -> np.ndarray:
    out = np.empty((len(rows), len(rows[0])), dtype=object)
    out[:] = [[math.nan if v is None else v for v in row] for row in rows]
    return out


def _unseen_rows(n: int) -> list[list[float | str | None]]:
    """New customers as a client sends them: numbers, null for an empty cell, the region's text
    (every region, a missing one, one the model never saw)."""
    rows: list[list[float | str | None]] = []
    regions: list[str | None] = [*REGIONS, None, "antarctica"]
    for i, record in enumerate(tier_rows(n, seed=99)):
        row: list[float | str | None] = [
            None if record[c] == "" else float(record[c]) for c in TIER_FEATURES[:-1]
        ]
        rows.append([*row, regions[i % len(regions)]])
    return rows


def _invoke(model_dir: Path, rows: list) -> dict:
    settings = serve_settings({"MODELOPS_MODEL": "tiers", "MODELOPS_VERSION": "3"})
    metrics = RequestMetrics(namespace="ModelOps", model="tiers", variant="canary", version="3")
    service = ModelService(model_dir, settings, metrics)
    service.load()
    status, doc = asyncio.run(service.invoke(json.dumps({"instances": rows}).encode(), "application/json"))
    assert status == 200, doc
    return doc


@pytest.fixture(scope="module")
def tier_model(tmp_path_factory) -> Path:
    return _train(tmp_path_factory.mktemp("tiers"), TIER, _tiers(seed=5))


def test_a_multiclass_model_keeps_its_labels_and_is_judged_on_multiclass_metrics(tier_model):
    meta = json.loads((tier_model / "metadata.json").read_text())
    evaluation = json.loads((tier_model / "evaluation.json").read_text())

    assert meta["task"] == "multiclass_classification"
    assert meta["classes"] == list(TIERS)
    # The default objective of the task, and every multiclass metric, on the holdout
    assert evaluation["metric"] == "accuracy"
    assert set(evaluation["metrics"]) == {"accuracy", "macro_f1", "logloss"}
    assert evaluation["metrics"]["accuracy"] > 0.6 and evaluation["metrics"]["macro_f1"] > 0.6
    # One tree per class per iteration: no compiled forest, scikit-learn answers
    assert meta["forest_file"] is None


def test_served_answers_name_the_class_and_equal_predict_proba(tier_model):
    rows = _unseen_rows(60)

    doc = _invoke(tier_model, rows)

    model = load_model(tier_model)
    want = model.estimator.predict_proba(_matrix(rows))
    assert doc["classes"] == list(TIERS)
    assert np.max(np.abs(np.asarray(doc["probabilities"]) - want)) <= 1e-6
    assert doc["predictions"] == [TIERS[i] for i in np.argmax(want, axis=1)]
    assert set(doc["predictions"]) == set(TIERS)  # a real classifier, not one answer for all
    assert doc["model_version"] == "3"


def test_a_yes_no_label_is_answered_yes_or_no(tmp_path):
    def yes_no(path: Path) -> None:
        generate_churn_csv(path, 500, seed=8)
        with path.open(encoding="utf-8", newline="") as handle:
            records = list(csv.DictReader(handle))
        for record in records:
            record[CHURN_LABEL] = {"1": "yes", "0": "no"}[record[CHURN_LABEL]]
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(records[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows(records)

    hyper = {
        "label_column": CHURN_LABEL,
        "feature_columns": json.dumps(list(CHURN_FEATURES)),
        "max_iter": "20",
    }
    model_dir = _train(tmp_path, hyper, yes_no)
    rows = [[float(i % 7), 50.0 + i, 1.0, float(i), None, 0.0][: len(CHURN_FEATURES)] for i in range(40)]

    doc = _invoke(model_dir, rows)

    # yes is the positive class (its probability second), answered by name
    assert doc["classes"] == ["no", "yes"]
    positive = load_model(model_dir).estimator.predict_proba(_matrix(rows))[:, 1]
    assert doc["predictions"] == ["yes" if p > 0.5 else "no" for p in positive]
    assert np.max(np.abs(np.asarray(doc["probabilities"])[:, 1] - positive)) <= 1e-6


def test_the_champion_is_judged_by_its_own_class_order_on_the_same_holdout(tier_model, tmp_path):
    candidate = _train(tmp_path, {**TIER, "max_iter": "60"}, _tiers(seed=6), champion=tier_model)
    evaluation = json.loads((candidate / "evaluation.json").read_text())
    assert evaluation["champion"] is not None and 0.5 < evaluation["champion"] <= 1.0
    assert "champion_skipped" not in evaluation


def _with_platinum(path: Path) -> None:
    generate_tier_csv(path, 900, seed=7)
    with path.open("a", encoding="utf-8") as handle:
        for i in range(12):
            handle.write(f"{900 + i}.5,{60 + i},70,0,north,platinum\n")


def test_class_labels_that_change_between_versions_fail_training_with_the_change_named(tier_model, tmp_path):
    env = _job(tmp_path, TIER, _with_platinum, champion=tier_model)

    assert main(env) == 1

    failure = container_paths(env).failure_file.read_text()
    assert "class labels changed" in failure and "new ['platinum']" in failure
    assert "allow_class_change" in failure
    assert not (container_paths(env).model_dir / "metadata.json").exists()


def test_allow_class_change_trains_the_new_classes_without_comparing(tier_model, tmp_path):
    model_dir = _train(tmp_path, {**TIER, "allow_class_change": "true"}, _with_platinum, champion=tier_model)
    evaluation = json.loads((model_dir / "evaluation.json").read_text())
    assert json.loads((model_dir / "metadata.json").read_text())["classes"] == [
        *TIERS[:2],
        "platinum",
        TIERS[2],
    ]
    assert evaluation["champion"] is None
    assert "new ['platinum']" in evaluation["champion_skipped"]


@pytest.mark.parametrize(
    ("task", "extra", "message"),
    [
        (
            "binary_classification",
            "",
            "has 3 distinct values ['bronze', 'gold', 'silver']; binary_classification needs exactly 2",
        ),
        (
            "multiclass_classification",
            "diamond",
            "has 2 rows of class 'diamond'; training needs at least 4 of each",
        ),
    ],
)
def test_labels_a_task_cannot_train_on_are_refused_by_name(tmp_path, task, extra, message):
    def data(path: Path) -> None:
        generate_tier_csv(path, 300, seed=2)
        with path.open("a", encoding="utf-8") as handle:
            for _ in range(2 if extra else 0):
                handle.write(f"10,1,2,0,east,{extra}\n")

    env = _job(tmp_path, {**TIER, "task": task}, data)
    assert main(env) == 1
    assert message in container_paths(env).failure_file.read_text()
