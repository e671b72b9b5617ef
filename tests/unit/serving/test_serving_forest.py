"""The compiled forest (model_server/forest.py) reproduces scikit-learn's HistGradientBoosting."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
from model_server.forest import ForestError, compile_forest, export_forest, verify_forest
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

from tests.serving_models import tiny_forest_doc


@pytest.fixture(scope="module")
def classifier_data():
    X, y = make_classification(n_samples=3000, n_features=8, n_informative=5, random_state=3)
    # Missing values in training, so some nodes send NaN left and others right
    rng = np.random.default_rng(3)
    X[rng.random(X.shape) < 0.08] = np.nan
    model = HistGradientBoostingClassifier(max_iter=40, random_state=0).fit(X[:2400], y[:2400])
    return model, X[2400:]


def test_classifier_probabilities_equal_scikit_learns_including_missing_values(classifier_data):
    # Given a classifier trained on data with missing values
    model, holdout = classifier_data
    doc, why = export_forest(model)
    assert why == "" and doc is not None
    nodes = [
        m for t in doc["trees"] for m, leaf in zip(t["missing_left"], t["is_leaf"], strict=True) if not leaf
    ]
    assert any(nodes) and not all(nodes), "the fixture should route NaN both ways"

    # When the exported document (through JSON, as it ships) is compiled
    forest = compile_forest(json.loads(json.dumps(doc)))
    got = forest.predict_rows(holdout.tolist())

    # Then every probability equals predict_proba's, rows with NaN included
    want = model.predict_proba(holdout)[:, 1]
    assert np.isnan(holdout).any(axis=1).sum() > 100
    assert np.max(np.abs(np.asarray(got) - want)) <= 1e-12
    assert forest.n_trees == 40 and forest.link == "logistic"


def test_regression_predictions_equal_scikit_learns():
    X, y = make_regression(n_samples=2000, n_features=5, noise=3.0, random_state=1)
    X[::9, 2] = np.nan
    model = HistGradientBoostingRegressor(max_iter=30, random_state=0).fit(X[:1500], y[:1500])
    doc, _ = export_forest(model)
    assert doc is not None
    assert verify_forest(doc, model.predict, X[1500:]) <= 1e-9


def test_a_single_feature_model_compiles():
    X, y = make_regression(n_samples=500, n_features=1, random_state=2)
    model = HistGradientBoostingRegressor(max_iter=5).fit(X, y)
    doc, _ = export_forest(model)
    assert doc is not None
    assert verify_forest(doc, model.predict, X[:50]) <= 1e-9


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (
            lambda: HistGradientBoostingClassifier(max_iter=3).fit(
                *make_classification(n_samples=300, n_classes=3, n_informative=4, random_state=0)
            ),
            "one tree per iteration",
        ),
        (
            lambda: HistGradientBoostingRegressor(max_iter=3, loss="poisson").fit(
                np.arange(200.0).reshape(-1, 1), np.arange(200.0) % 7 + 1
            ),
            "loss HalfPoissonLoss",
        ),
        (
            lambda: HistGradientBoostingRegressor(max_iter=3, categorical_features=[0]).fit(
                np.tile([[0.0], [1.0], [2.0]], (100, 1)), np.tile([1.0, 5.0, 2.0], 100)
            ),
            "categorical splits",
        ),
        (lambda: object(), "not a fitted HistGradientBoosting model"),
    ],
)
def test_models_it_cannot_reproduce_are_not_exported(make, reason):
    doc, why = export_forest(make())
    assert doc is None
    assert reason in why


_tiny_doc = tiny_forest_doc


def test_the_tiny_forest_routes_values_and_missing_values_as_documented():
    forest = compile_forest(_tiny_doc())
    assert forest.predict_rows([[0.5, 9], [0.6, 9], [math.nan, 9], [-3, 0]]) == [-0.75, 2.25, -0.75, -0.75]


def test_the_logistic_link_does_not_overflow_on_extreme_scores():
    doc = _tiny_doc()
    doc["link"] = "logistic"
    doc["trees"][0]["value"] = [0.0, -1000.0, 1000.0]
    assert compile_forest(doc).predict_rows([[0.0, 0.0], [1.0, 0.0]]) == [0.0, 1.0]


def _broken(path: str, value) -> dict:
    doc = copy.deepcopy(_tiny_doc())
    target = doc
    *parents, last = path.split(".")
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    target[int(last) if last.isdigit() else last] = value
    return doc


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"format": "something/else"}, "not a modelops.forest/1 document"),
        (_broken("link", "softmax"), "link 'softmax'"),
        (_broken("n_features", 0), "n_features must be at least 1"),
        (_broken("trees.0.left", [5, 0, 0]), "tree 0: child index 5 is outside 0..2"),
        (_broken("trees.0.feature", [7, 0, 0]), "tree 0: feature index 7 is outside 0..1"),
        (_broken("trees.0.value", [0.0, 1.0]), "tree 0: node arrays are empty or of different lengths"),
        (_broken("trees.0.is_leaf", [False, False, True]), "tree 0: the children links form a cycle"),
        (_broken("trees.0", {"feature": []}), "tree 0: needs feature"),
    ],
)
def test_a_malformed_document_is_refused_with_the_field_at_fault(doc, message):
    with pytest.raises(ForestError) as caught:
        compile_forest(doc)
    assert message in str(caught.value)
