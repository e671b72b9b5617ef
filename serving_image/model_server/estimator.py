"""What train and serve call on a scikit-learn estimator, typed (scikit-learn ships no type hints).

The estimator is a HistGradientBoostingClassifier for classification (binary or multiclass) and a
HistGradientBoostingRegressor for regression (train.py); a model with categorical columns is a
Pipeline whose first step encodes them (train.categorical_pipeline), fed an object matrix (text in
the categorical columns, NaN for missing); `scores` is the one place that picks the
method by task, so the rest of the code reads "the model's answer per row" whatever the task.
"""

from __future__ import annotations

from typing import Protocol, cast

import numpy as np
from numpy.typing import NDArray

# Rows x features, NaN for a missing value.
FloatMatrix = NDArray[np.float64]
# What an estimator takes: a FloatMatrix, or (categorical columns) an object matrix of floats and text.
Matrix = NDArray[np.float64] | NDArray[np.object_]
# One answer per row: P(positive label) or the predicted value.
Scores = NDArray[np.float64]
# Multiclass: one row of k class probabilities (the order of the model's classes) per example.
ClassProbabilities = NDArray[np.float64]
# Training labels: the class index 0..k-1 (int64) for classification, the value (float64) for regression.
Labels = NDArray[np.int64] | NDArray[np.float64]


class _Fitted(Protocol):
    n_features_in_: int

    def fit(self, X: Matrix, y: Labels) -> object: ...


class Classifier(_Fitted, Protocol):
    def predict_proba(self, X: Matrix) -> NDArray[np.float64]: ...


class Regressor(_Fitted, Protocol):
    def predict(self, X: Matrix) -> NDArray[np.float64]: ...


Estimator = Classifier | Regressor


def scores(estimator: Estimator, task: str, rows: Matrix) -> Scores | ClassProbabilities:
    """The model's answer per row: P(positive label) for binary classification (shape n), the k
    class probabilities for multiclass (shape n x k), the predicted value for regression (shape n)."""
    if task == "binary_classification":
        return cast(Classifier, estimator).predict_proba(rows)[:, 1]
    if task == "multiclass_classification":
        return cast(Classifier, estimator).predict_proba(rows)
    return cast(Regressor, estimator).predict(rows)
