"""The drift baseline of a model version, and the live statistics the server keeps against it.

The training harness (train.py) writes `baseline.json` beside the model: for every feature, from
the training rows, either quantile bins (numeric: at most `BINS` bins between the deciles of the
non-missing values, which are values of the data; fewer when values repeat) or the categories seen (categorical), each with its
share of ALL training rows, and the share of missing values; for the model's answers, the
distribution of its predictions on the holdout (each class's share of predicted labels, or the
regression value's quantile bins).

Each value the server sees gets a *code* against that baseline, the same for every feature kind:
`1..k` for bin (or category) 1..k, `k + 1` for a missing value and, for a categorical feature,
`k + 2` for a category the training data never had. `LiveStats` counts codes per feature and
for the predictions; the server flushes the counts as EMF histograms (`Values` are codes,
`Counts` how often each occurred), one metric per feature, and the drift monitor asks CloudWatch
for the count of each code (`TC(code-0.5:code+0.5)`) over its window.

The hot path only appends references to the batch's rows and answers (`observe`); the binning
(numpy `searchsorted` per feature over everything observed) runs when the counts are drained by
the metrics thread. At most MAX_ROWS_PER_INTERVAL rows are kept per interval: under heavier
traffic the rest of the interval's batches are not counted (`skipped`), so the counts are a sample
(PSI compares shares) and the memory and the binning's CPU stay bounded.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from itertools import chain
from typing import Any

import numpy as np
from numpy.typing import NDArray

BASELINE_FILE = "baseline.json"
BASELINE_FORMAT = 1
#: Quantile bins per numeric feature (the deciles' edges); fewer when values repeat.
BINS = 10
#: Categories kept per categorical feature (most frequent first); rarer ones count as unseen.
MAX_CATEGORIES = 100
#: Rows counted per drain interval (per pod); batches beyond it in the interval are skipped.
MAX_ROWS_PER_INTERVAL = 10_000

Codes = NDArray[np.int64]


class BaselineError(ValueError):
    """A baseline document that cannot be used; the message names the field."""


def numeric_profile(values: NDArray[np.float64], bins: int = BINS) -> dict[str, Any]:
    """Quantile bin edges of the non-missing `values` and each bin's (and missing's) share of all
    values. A value equal to an edge belongs to the bin above it (`searchsorted(..., "right")`)."""
    n = len(values)
    present = values[~np.isnan(values)]
    if len(present):
        # the i/bins quantiles by the inverted CDF, in integers: values of the data, so a
        # discrete feature gets clean bins
        ordered, m = np.sort(present), len(present)
        edges = np.unique(ordered[[(i * m + bins - 1) // bins - 1 for i in range(1, bins)]])
    else:
        edges = np.empty(0)
    codes = np.searchsorted(edges, present, side="right")
    counts = np.bincount(codes, minlength=len(edges) + 1)
    return {
        "kind": "numeric",
        "edges": [float(e) for e in edges],
        "shares": [float(c) / n for c in counts] if n else [0.0] * len(counts),
        "missing_share": float(n - len(present)) / n if n else 0.0,
    }


def categorical_profile(values: Sequence[Any]) -> dict[str, Any]:
    """The categories of `values` (text; NaN or None is missing), most frequent first and at most
    MAX_CATEGORIES, with each one's share of all values and the share of missing values."""
    n = len(values)
    tally: dict[str, int] = {}
    missing = 0
    for value in values:
        if _is_missing(value):
            missing += 1
        else:
            tally[str(value)] = tally.get(str(value), 0) + 1
    kept = sorted(tally.items(), key=lambda item: (-item[1], item[0]))[:MAX_CATEGORIES]
    return {
        "kind": "categorical",
        "categories": [name for name, _ in kept],
        "shares": [count / n for _, count in kept] if n else [],
        "missing_share": missing / n if n else 0.0,
        "other_share": (n - missing - sum(c for _, c in kept)) / n if n else 0.0,
    }


def prediction_profile(
    task: str, predictions: Any, classes: Sequence[str] | None, bins: int = BINS
) -> dict[str, Any]:
    """The distribution of the model's answers on the holdout: each class's share of predicted
    labels (classification), or quantile bins of the predicted value (regression)."""
    if task == "regression":
        return numeric_profile(np.asarray(predictions, dtype=np.float64), bins)
    assert classes is not None
    labels = predicted_classes(task, predictions)
    n = len(labels)
    counts = np.bincount(labels, minlength=len(classes))
    return {
        "kind": "classes",
        "classes": list(classes),
        "shares": [float(c) / n for c in counts] if n else [0.0] * len(classes),
        "missing_share": 0.0,
    }


def predicted_classes(task: str, predictions: Any) -> NDArray[np.int64]:
    """The predicted class index of each answer: P(positive) >= 0.5 for binary (as the server
    labels it), the most probable class for multiclass."""
    scores = np.asarray(predictions, dtype=np.float64)
    labels: NDArray[np.int64]
    if task == "binary_classification":
        labels = (scores >= 0.5).astype(np.int64)
    else:
        labels = np.argmax(scores.reshape(len(scores), -1), axis=1).astype(np.int64)
    return labels


def make_baseline(
    *,
    features: Any,
    feature_columns: Sequence[str],
    categorical_columns: Sequence[str],
    task: str,
    predictions: Any,
    classes: Sequence[str] | None,
    n_holdout: int,
) -> dict[str, Any]:
    """baseline.json's document from the training rows' features (a matrix, one column per
    feature: numbers with NaN, or text for a categorical column) and the holdout's predictions."""
    matrix = np.asarray(features)
    profiles = []
    for j, name in enumerate(feature_columns):
        column = matrix[:, j]
        if name in categorical_columns:
            profile = categorical_profile(list(column))
        else:
            profile = numeric_profile(np.asarray(column, dtype=np.float64))
        profiles.append({"name": name, **profile})
    return {
        "format": BASELINE_FORMAT,
        "n_rows": int(matrix.shape[0]),
        "n_holdout": int(n_holdout),
        "features": profiles,
        "prediction": {"name": "prediction", **prediction_profile(task, predictions, classes)},
    }


def summary(doc: dict[str, Any]) -> dict[str, Any]:
    """What a registry or run record keeps of a baseline: sizes, not the bins."""
    return {
        "format": doc.get("format"),
        "n_rows": doc.get("n_rows"),
        "n_holdout": doc.get("n_holdout"),
        "features": len(doc.get("features", [])),
        "prediction": doc.get("prediction", {}).get("kind"),
    }


def code_count(profile: dict[str, Any]) -> int:
    """How many codes a profile's values can take: its bins (or categories), missing and, for a
    categorical feature, unseen."""
    kind = profile.get("kind")
    if kind == "numeric":
        return len(profile["edges"]) + 2
    if kind == "categorical":
        return len(profile["categories"]) + 2
    if kind == "classes":
        return len(profile["classes"])
    raise BaselineError(f"{profile.get('name', '?')}: unknown profile kind {kind!r}")


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


class _Feature:
    """One feature's binning against its profile."""

    def __init__(self, profile: dict[str, Any]) -> None:
        self.name = str(profile["name"])
        self.kind = profile["kind"]
        self.size = code_count(profile)
        if self.kind == "numeric":
            self.edges = np.asarray(profile["edges"], dtype=np.float64)
            self.missing = len(self.edges) + 2
        else:
            self.index = {c: i + 1 for i, c in enumerate(profile["categories"])}
            self.missing = len(self.index) + 1
            self.unseen = len(self.index) + 2

    def codes(self, column: NDArray[Any]) -> Codes:
        if self.kind == "numeric":
            values = np.asarray(column, dtype=np.float64)
            codes = np.searchsorted(self.edges, values, side="right") + 1
            codes[np.isnan(values)] = self.missing
            return codes.astype(np.int64)
        index, missing, unseen = self.index, self.missing, self.unseen
        return np.fromiter(
            (missing if _is_missing(v) else index.get(str(v), unseen) for v in column),
            dtype=np.int64,
            count=len(column),
        )


class LiveStats:
    """Counts of codes per feature and for the predictions since the last drain (thread-safe).

    `observe` is called on the event loop with each predicted batch; `drain` by the metrics
    thread. Counts are numpy arrays of `code_count` + 1 slots (slot 0 unused)."""

    def __init__(self, baseline: dict[str, Any], *, task: str) -> None:
        try:
            self.features = [_Feature(p) for p in baseline["features"]]
            prediction = baseline["prediction"]
            self.prediction_size = code_count(prediction)
        except (KeyError, TypeError) as exc:
            raise BaselineError(f"baseline document lacks {exc}") from None
        self.task = task
        self.prediction = prediction
        if prediction["kind"] == "numeric":
            self._prediction_edges = np.asarray(prediction["edges"], dtype=np.float64)
        self._lock = threading.Lock()
        self._pending_rows: list[Sequence[Sequence[Any]]] = []
        self._pending_answers: list[Sequence[Any]] = []
        self._pending = 0
        self.skipped = 0  # rows not counted this interval (over MAX_ROWS_PER_INTERVAL)
        self._reset()

    def _reset(self) -> None:
        self.counts = [np.zeros(f.size + 1, dtype=np.int64) for f in self.features]
        self.prediction_counts = np.zeros(self.prediction_size + 1, dtype=np.int64)
        self.rows = 0

    def observe(self, rows: Sequence[Sequence[Any]], answers: Sequence[Any]) -> None:
        """Remember one predicted batch (references only), unless the interval's sample is full."""
        with self._lock:
            if self._pending >= MAX_ROWS_PER_INTERVAL:
                self.skipped += len(rows)
                return
            self._pending_rows.append(rows)
            self._pending_answers.append(answers)
            self._pending += len(rows)

    def drain(self) -> tuple[int, list[tuple[str, Codes]], Codes]:
        """(rows, [(feature, counts)], prediction counts) since the last drain; resets them. The
        binning runs outside the lock, so `observe` never waits for it."""
        with self._lock:
            batches, answers = self._pending_rows, self._pending_answers
            self._pending_rows, self._pending_answers, self._pending = [], [], 0
            self.skipped = 0
        self._reset()
        self._fold(batches, answers)
        return (
            self.rows,
            [(f.name, c) for f, c in zip(self.features, self.counts, strict=True)],
            self.prediction_counts,
        )

    def _fold(self, batches: list[Sequence[Sequence[Any]]], answers: list[Sequence[Any]]) -> None:
        """Bin the batches' rows and answers into the counts."""
        if not batches:
            return
        rows = [row for batch in batches for row in batch]
        width = len(self.features)
        if all(f.kind == "numeric" for f in self.features):
            # one flat pass beats np.asarray's shape discovery on a list of lists
            flat = np.fromiter(chain.from_iterable(rows), dtype=np.float64, count=len(rows) * width)
            matrix: NDArray[Any] = flat.reshape(len(rows), width)
        else:
            matrix = np.empty((len(rows), width), dtype=object)
            matrix[:] = rows
        for j, (feature, counts) in enumerate(zip(self.features, self.counts, strict=True)):
            counts += np.bincount(feature.codes(matrix[:, j]), minlength=len(counts))
        answered = [a for batch in answers for a in batch]
        if self.prediction["kind"] == "numeric":
            values = np.asarray(answered, dtype=np.float64)
            codes = np.searchsorted(self._prediction_edges, values, side="right") + 1
            codes[np.isnan(values)] = len(self._prediction_edges) + 2
        else:
            codes = predicted_classes(self.task, answered) + 1
        self.prediction_counts += np.bincount(codes, minlength=len(self.prediction_counts))
        self.rows += len(rows)
