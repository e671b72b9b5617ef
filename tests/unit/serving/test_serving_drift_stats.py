"""The drift baseline the harness writes and the live statistics the server keeps against it,
checked against hand-computed bins, shares and counts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from model_server.baseline import (
    BaselineError,
    LiveStats,
    categorical_profile,
    make_baseline,
    numeric_profile,
    prediction_profile,
)
from model_server.emf import RequestMetrics

NAN = math.nan


def test_numeric_profile_has_decile_edges_and_shares_of_all_rows():
    # Given 1..10 and two missing values (12 rows)
    values = np.array([*range(1, 11), NAN, NAN], dtype=np.float64)

    # When profiled into (at most) 10 quantile bins
    profile = numeric_profile(values)

    # Then the edges are the deciles 1, 2, ..., 9 of the present values (values of the data); an
    # edge's value belongs to the bin above it, so 1..8 are alone in theirs (1/12 of all rows
    # each), 9 and 10 share the last, and 2/12 are missing
    assert profile["edges"] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    assert profile["shares"] == pytest.approx([0.0] + [1 / 12] * 8 + [2 / 12])
    assert profile["missing_share"] == pytest.approx(2 / 12)


def test_numeric_profile_merges_repeated_edges():
    # Given a feature with two values only: 0 (x7) and 1 (x3)
    profile = numeric_profile(np.array([0.0] * 7 + [1.0] * 3))

    # Then the deciles collapse to the edges 0 and 1: bins (-inf, 0), [0, 1), [1, inf)
    assert profile["edges"] == [0.0, 1.0]
    assert profile["shares"] == pytest.approx([0.0, 0.7, 0.3])
    assert profile["missing_share"] == 0.0


def test_categorical_profile_orders_by_frequency():
    profile = categorical_profile(["b", "a", "b", None, "c", "b", NAN, "a"])
    assert profile["categories"] == ["b", "a", "c"]
    assert profile["shares"] == pytest.approx([3 / 8, 2 / 8, 1 / 8])
    assert profile["missing_share"] == pytest.approx(2 / 8)


def test_prediction_profile_counts_predicted_labels():
    binary = prediction_profile("binary_classification", [0.2, 0.5, 0.9, 0.1], ("no", "yes"))
    assert binary == {"kind": "classes", "classes": ["no", "yes"], "shares": [0.5, 0.5], "missing_share": 0.0}
    multi = prediction_profile(
        "multiclass_classification", [[0.1, 0.8, 0.1], [0.7, 0.2, 0.1]], ("a", "b", "c")
    )
    assert multi["shares"] == [0.5, 0.5, 0.0]


def _baseline() -> dict:
    # edges for x: [0, 10] -> bins (-inf,0) [0,10) [10,inf); plan: basic, plus
    features = np.array([[-1.0, "basic"], [5.0, "basic"], [5.0, "plus"], [20.0, NAN]], dtype=object)
    doc = make_baseline(
        features=features,
        feature_columns=["x", "plan"],
        categorical_columns=["plan"],
        task="binary_classification",
        predictions=[0.1, 0.9],
        classes=("0", "1"),
        n_holdout=2,
    )
    doc["features"][0]["edges"] = [0.0, 10.0]  # hand-set edges for the counts below
    return doc


def test_live_stats_count_codes_per_feature_and_prediction():
    # Given a baseline with x's edges [0, 10] and plan's categories [basic, plus]
    stats = LiveStats(_baseline(), task="binary_classification")

    # When two batches are observed: bins of x are codes 1..3, missing 4; plan: basic 1, plus 2,
    # missing 3, unseen 4; predictions: class "0" code 1, class "1" code 2
    stats.observe([[-5.0, "basic"], [0.0, "gold"], [9.99, NAN]], [0.2, 0.7, 0.5])
    stats.observe([[10.0, "plus"], [NAN, "basic"]], [0.1, 0.4])
    rows, features, predictions = stats.drain()

    # Then: x: -5 -> 1; 0 -> 2 (an edge belongs to the bin above); 9.99 -> 2; 10 -> 3; NaN -> 4
    assert rows == 5
    (x_name, x), (plan_name, plan) = features
    assert (x_name, x.tolist()) == ("x", [0, 1, 2, 1, 1])
    assert (plan_name, plan.tolist()) == ("plan", [0, 2, 1, 1, 1])
    assert predictions.tolist() == [0, 3, 2]
    # and a drain resets the counts
    assert stats.drain()[0] == 0


def test_emf_carries_one_histogram_per_feature_and_one_for_predictions():
    # Given request metrics with live statistics on a numeric-only baseline
    doc = _baseline()
    doc["features"] = doc["features"][:1]
    metrics = RequestMetrics(
        namespace="ModelOps", model="churn", variant="stable", version="7", clock=lambda: 1.0
    )
    metrics.stats = LiveStats(doc, task="binary_classification")
    metrics.record(200, 1.0)
    metrics.stats.observe([[1.0], [2.0], [50.0]], [0.9, 0.8, 0.1])

    # When drained
    documents = metrics.drain()

    # Then after the request document come the feature's and the predictions' histograms
    feature, prediction = documents[1:]
    assert feature["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Model", "Variant", "Feature"]]
    assert feature["Feature"] == "x"
    assert feature["FeatureBins"] == {
        "Values": [2.0, 3.0],
        "Counts": [2, 1],
        "Max": 3.0,
        "Min": 2.0,
        "Count": 3,
        "Sum": 7.0,
    }
    assert prediction["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Model", "Variant"]]
    assert prediction["PredictionBins"]["Values"] == [1.0, 2.0]
    assert prediction["PredictionBins"]["Counts"] == [1, 2]


def test_regression_predictions_are_binned_on_the_holdout_quantiles():
    doc = make_baseline(
        features=np.array([[1.0], [2.0], [3.0], [4.0]]),
        feature_columns=["x"],
        categorical_columns=[],
        task="regression",
        predictions=[10.0, 20.0, 30.0],
        classes=None,
        n_holdout=3,
    )
    stats = LiveStats(doc, task="regression")
    stats.observe([[1.0], [1.0]], [5.0, 100.0])
    _, _, predictions = stats.drain()
    edges = doc["prediction"]["edges"]
    assert predictions[1] == 1 and predictions[len(edges) + 1] == 1


def test_a_baseline_without_features_is_refused():
    with pytest.raises(BaselineError, match="features"):
        LiveStats({"prediction": {}}, task="regression")


def test_an_interval_counts_a_bounded_sample(monkeypatch):
    # Given a cap of 3 rows per interval
    import model_server.baseline as baseline_module

    monkeypatch.setattr(baseline_module, "MAX_ROWS_PER_INTERVAL", 3)
    doc = _baseline()
    doc["features"] = doc["features"][:1]
    stats = LiveStats(doc, task="binary_classification")

    # When four one-row batches arrive in one interval
    for value in (-5.0, 5.0, 50.0, 50.0):
        stats.observe([[value]], [0.9])

    # Then the first three are counted and the fourth skipped; the next interval starts afresh
    assert stats.skipped == 1
    rows, [(_, x)], _ = stats.drain()
    assert rows == 3 and x.tolist() == [0, 1, 1, 1, 0]
    stats.observe([[5.0]], [0.1])
    assert stats.skipped == 0 and stats.drain()[0] == 1
