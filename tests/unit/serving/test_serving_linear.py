"""The linear Pipeline as per-row arithmetic (model_server/linear.py): the Pipeline's own answers,
only for the Pipeline it knows, only after check.json agrees."""

from __future__ import annotations

import json

import numpy as np
import pytest
from model_server import linear
from model_server.algorithms import build_estimator
from sklearn.datasets import make_classification, make_regression
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from tests.serving_models import tree_model_folder


def _rows(task: str) -> tuple[np.ndarray, np.ndarray]:
    if task == "regression":
        X, y = make_regression(n_samples=600, n_features=7, noise=3.0, random_state=3)
    else:
        k = 2 if task == "binary_classification" else 4
        X, y = make_classification(n_samples=600, n_features=7, n_informative=5, n_classes=k, random_state=3)
    X[np.random.default_rng(3).random(X.shape) < 0.1] = np.nan
    X[:, 2] *= 1000.0  # columns of different scales: the scaler matters
    return X, y


@pytest.mark.parametrize("task", ["binary_classification", "multiclass_classification", "regression"])
def test_the_arithmetic_equals_the_pipelines_answers_missing_values_included(task):
    # Given the linear Pipeline as train builds it, fitted on rows with missing cells
    X, y = _rows(task)
    pipeline = build_estimator("linear", task, {}, seed=0)
    pipeline.fit(X[:400], y[:400])
    fast = linear.from_estimator(pipeline, task)
    assert fast is not None

    # When it answers held-out rows one at a time and all together
    held = X[400:]
    got = np.asarray(fast.predict_rows(held.tolist()))
    one = [fast.predict_rows([row])[0] for row in held[:20].tolist()]

    # Then it gives the Pipeline's answers: P(positive), the k probabilities, the value
    if task == "binary_classification":
        want = pipeline.predict_proba(held)[:, 1]
    elif task == "multiclass_classification":
        want = pipeline.predict_proba(held)
    else:
        want = pipeline.predict(held)
    assert np.isnan(held).any(axis=1).sum() > 50
    assert np.abs(got - want).max() <= 1e-12 * max(1.0, np.abs(want).max())
    assert np.asarray(one) == pytest.approx(got[:20], abs=0)


def test_pipelines_it_does_not_know_are_left_to_scikit_learn():
    X, y = _rows("binary_classification")
    other_scaler = Pipeline([("i", SimpleImputer()), ("s", MinMaxScaler()), ("m", LogisticRegression())])
    indicator = Pipeline(
        [("i", SimpleImputer(add_indicator=True)), ("s", StandardScaler()), ("m", LogisticRegression())]
    )
    for pipeline in (other_scaler, indicator):
        pipeline.fit(X, y)
        assert linear.from_estimator(pipeline, "binary_classification") is None
    # a classifier is not taken for a regression model's task, nor the reverse
    fitted = build_estimator("linear", "binary_classification", {}, seed=0).fit(X, y)
    assert linear.from_estimator(fitted, "regression") is None
    assert linear.from_estimator(fitted, "multiclass_classification") is None


def test_it_is_used_only_when_check_json_agrees(tmp_path):
    # Given a trained linear model folder with check.json (train.py's)
    folder, _ = tree_model_folder(tmp_path / "m", "linear", "binary_classification")
    from model_server.artifact import load_model

    estimator = load_model(folder).estimator
    fast, how = linear.checked(estimator, "binary_classification", folder)
    assert fast is not None and "max |difference|" in how
    # When check.json's answers are not the model's, it is not used, and says why
    check = json.loads((folder / "check.json").read_text())
    check["expected"][0] += 1e-3
    (folder / "check.json").write_text(json.dumps(check))
    fast, how = linear.checked(estimator, "binary_classification", folder)
    assert fast is None and "differs from the model by 0.001" in how
