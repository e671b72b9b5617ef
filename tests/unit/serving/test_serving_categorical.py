"""Categorical string features through `train` and the serving code (parse, predict), in-process."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from model_server.artifact import load_model
from model_server.contract import container_paths
from model_server.errors import BadRequestError, HyperparameterError
from model_server.hyperparameters import parse_hyperparameters
from model_server.inputs import parse_rows
from model_server.predictor import Predictor
from model_server.train import main

from modelops_local.sample_data import CHURN_FEATURES, CHURN_LABEL, churn_rows, generate_churn_csv
from tests.categorical_data import PLAN_FEATURES, PLANS, generate_churn_with_plan_csv

PLAN = {
    "label_column": CHURN_LABEL,
    "feature_columns": json.dumps(list(PLAN_FEATURES)),
    "categorical_columns": json.dumps(["plan"]),
    "max_iter": "30",
    "max_depth": "3",
}


def _train(base: Path, hyper: dict[str, str], *, plan: bool = True, champion: Path | None = None) -> Path:
    """Run `train` on a churn CSV (with the `plan` column or without); returns the model folder."""
    (base / "input" / "config").mkdir(parents=True)
    (base / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hyper))
    data = base / "input" / "data" / "train" / "customers.csv"
    if plan:
        generate_churn_with_plan_csv(data, 600, seed=4)
    else:
        generate_churn_csv(data, 600, seed=4)
    if champion is not None:
        channel = base / "input" / "data" / "champion"
        channel.mkdir(parents=True)
        for path in champion.iterdir():
            (channel / path.name).write_bytes(path.read_bytes())
    env = {"SAGEMAKER_BASE_DIR": str(base), "TRAINING_JOB_NAME": "job"}
    assert main(env) == 0, container_paths(env).failure_file.read_text()
    return container_paths(env).model_dir


def _holdout(n: int) -> list[list[float | str | None]]:
    """Unseen customers: every plan, a missing plan, an unseen plan, a missing number."""
    choices: list[str | None] = [*PLANS, None, "enterprise"]
    rows: list[list[float | str | None]] = []
    for i, r in enumerate(churn_rows(n, seed=77)):
        row: list[float | str | None] = [float(r[f]) for f in CHURN_FEATURES]
        if i % 7 == 0:
            row[1] = None
        rows.append([*row, choices[i % len(choices)]])
    return rows


def _matrix(rows: list[list[float | str | None]]) -> np.ndarray:
    """What the pipeline itself takes: an object matrix, NaN for a missing value."""
    out = np.empty((len(rows), len(rows[0])), dtype=object)
    out[:] = [[math.nan if v is None else v for v in row] for row in rows]
    return out


@pytest.fixture(scope="module")
def plan_model(tmp_path_factory) -> Path:
    return _train(tmp_path_factory.mktemp("plan"), PLAN)


def test_a_categorical_column_is_trained_as_one_and_recorded_in_the_metadata(plan_model):
    # Given a model trained with `plan` declared categorical
    meta = json.loads((plan_model / "metadata.json").read_text())
    model = load_model(plan_model)

    # Then the metadata names it, says why there is no compiled predictor, and ships none
    assert meta["categorical_columns"] == ["plan"]
    assert "categorical columns ['plan']" in meta["compiled_skipped"]
    assert meta["forest_file"] is None and not (plan_model / "forest.json").exists()
    # And the estimator is HistGradientBoosting splitting on `plan` as a category, behind an encoder
    hgb = model.estimator[-1]
    assert type(hgb).__name__ == "HistGradientBoostingClassifier"
    assert hgb.is_categorical_.tolist() == [True] + [False] * len(CHURN_FEATURES)
    encoder = model.estimator[0].named_transformers_["categorical"]
    assert list(encoder.categories_[0])[:3] == list(PLANS)
    # And plan matters: premium customers are predicted less likely to churn than basic ones
    base = [float(v) for v in churn_rows(1, seed=3)[0].values()][: len(CHURN_FEATURES)]
    basic, premium = model.predict(_matrix([[*base, "basic"], [*base, "premium"]]))
    assert premium < basic


@pytest.mark.parametrize("how", ["json lists", "json objects", "csv"])
def test_served_answers_equal_the_pipelines_own_predict_proba(plan_model, how):
    # Given the trained model behind the server's predictor, and unseen rows with missing values
    # and a category the model never saw
    model = load_model(plan_model)
    predictor = Predictor(model.metadata, estimator=model.estimator)
    rows = _holdout(70)
    if how == "json lists":
        body, kind = json.dumps({"instances": rows}).encode(), "application/json"
    elif how == "json objects":
        instances = [dict(zip(PLAN_FEATURES, row, strict=True)) for row in rows]
        body, kind = json.dumps({"instances": instances}).encode(), "application/json"
    else:
        text = "".join(",".join("" if v is None else str(v) for v in row) + "\n" for row in rows)
        body, kind = text.encode(), "text/csv"

    # When the body is parsed and predicted as serve does
    parsed = parse_rows(body, kind, PLAN_FEATURES, model.metadata.categorical_columns)
    got = np.asarray(predictor.predict_rows(parsed))

    # Then every answer equals the pipeline's predict_proba within 1e-6
    want = model.estimator.predict_proba(_matrix(rows))[:, 1]
    assert np.max(np.abs(got - want)) <= 1e-6
    # And an unseen category is answered, as a missing one is
    unseen = next(r for r in rows if r[-1] == "enterprise")
    pair = json.dumps([unseen, [*unseen[:-1], None]]).encode()
    answers = predictor.predict_rows(parse_rows(pair, "application/json", PLAN_FEATURES, ["plan"]))
    assert answers[0] == answers[1] == pytest.approx(got[rows.index(unseen)], abs=1e-12)


def test_a_regression_model_with_a_categorical_column_equals_its_predict(tmp_path):
    # Given a regression on tenure with `plan` as a categorical feature
    hyper = {
        **PLAN,
        "label_column": "tenure_months",
        "feature_columns": json.dumps([f for f in PLAN_FEATURES if f != "tenure_months"] + [CHURN_LABEL]),
        "task": "regression",
    }
    model_dir = _train(tmp_path / "ml", hyper)
    model = load_model(model_dir)
    rows = [[*r[1:], 1.0] for r in _holdout(40)]
    rows[0][-2] = "  "  # blank: missing

    # When predicted through the server's parser and predictor
    features = model.metadata.feature_columns
    parsed = parse_rows(json.dumps(rows).encode(), "application/json", features, ["plan"])
    got = Predictor(model.metadata, estimator=model.estimator).predict_rows(parsed)

    # Then the answers equal the pipeline's predict within 1e-6
    rows[0][-2] = None
    want = model.estimator.predict(_matrix(rows))
    assert np.max(np.abs(np.asarray(got) - want)) <= 1e-6


@pytest.mark.parametrize(
    ("body", "kind", "message"),
    [
        (
            b'[[1, 2, 3, "x", 5, 6, "basic"]]',
            "application/json",
            "instance 0 feature 'usage_gb' is not a number: 'x'",
        ),
        (
            b'[{"tenure_months": "ten", "monthly_charges": 1, "support_calls": 1, "usage_gb": 1,'
            b' "contract_months": 1, "late_payments": 1, "plan": "basic"}]',
            "application/json",
            "instance 0 feature 'tenure_months' is not a number: 'ten'",
        ),
        (
            b"[[1, 2, 3, 4, 5, 6, 1]]",
            "application/json",
            "instance 0 feature 'plan' is categorical: send its category as a string (or null), not 1",
        ),
        (b"1,2,3,gold,5,6,basic\n", "text/csv", "CSV line 1 feature 'usage_gb' is not a number: 'gold'"),
    ],
)
def test_text_for_a_numeric_feature_is_still_a_400_naming_it(body, kind, message):
    with pytest.raises(BadRequestError) as err:
        parse_rows(body, kind, PLAN_FEATURES, ["plan"])
    assert err.value.status == 400 and err.value.message == message


def test_numeric_only_parsing_is_unchanged():
    # Given a model without categorical columns  When a row with a string is sent  Then 400 as before
    with pytest.raises(BadRequestError, match="instance 0 feature 'plan' is not a number: 'basic'"):
        parse_rows(b'[[1, 2, 3, 4, 5, 6, "basic"]]', "application/json", PLAN_FEATURES)
    # And numbers come back as the same list of floats
    assert parse_rows(b"[[1, 2.5]]", "application/json", ["a", "b"]) == [[1, 2.5]]


def test_categorical_columns_must_be_features():
    with pytest.raises(
        HyperparameterError, match=r"categorical_columns \['plan'\] are not among feature_columns"
    ):
        parse_hyperparameters({**PLAN, "feature_columns": json.dumps(list(CHURN_FEATURES))})
    with pytest.raises(HyperparameterError, match=r"categorical_columns lists \['plan'\] more than once"):
        parse_hyperparameters({**PLAN, "categorical_columns": '["plan", "plan"]'})


@pytest.mark.parametrize(("champion_plan", "candidate_plan"), [(False, True), (True, True), (True, False)])
def test_the_champion_is_judged_on_the_same_holdout_with_or_without_categoricals(
    tmp_path, champion_plan, candidate_plan
):
    # Given a champion trained with or without `plan`, and a candidate with or without it
    numeric = {**PLAN, "feature_columns": json.dumps(list(CHURN_FEATURES))}
    del numeric["categorical_columns"]
    champion = _train(tmp_path / "champion", PLAN if champion_plan else numeric)
    # When the candidate trains on data that has the plan column, with the champion's artifact
    candidate = _train(tmp_path / "candidate", PLAN if candidate_plan else numeric, champion=champion)
    evaluation = json.loads((candidate / "evaluation.json").read_text())
    # Then the champion is scored on the candidate's holdout (not skipped)
    assert "champion_skipped" not in evaluation, evaluation.get("champion_skipped")
    assert 0.5 < evaluation["champion"] <= 1.0
