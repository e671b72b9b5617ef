"""The linear Pipeline (algorithms._linear: SimpleImputer -> StandardScaler -> LogisticRegression or
Ridge) as plain Python arithmetic per row, for small batches.

scikit-learn pays a fixed cost of ~100-300 us per predict_proba call on a Pipeline (validation,
three transforms, array allocation) whatever the number of rows, while the model itself is one dot
product: ~2-4 us a row in Python over 20 features. `serve` uses this for batches below the
Predictor's crossover and scikit-learn above it, as it does with the Python forest.

It is built from the fitted estimator when `serve` loads it, for exactly the steps above and
nothing else (an unknown step or setting: None, and scikit-learn answers every batch), and used
only if it reproduces check.json's answers (the model's own, written by train.py) within
TOLERANCE. The arithmetic is the Pipeline's: the missing cell takes the imputer's statistic, then
(x - mean) / scale, then the dot product with the coefficients plus the intercept, then the
logistic link (binary), the softmax (multiclass) or nothing (regression); only the order of the
additions in the dot product differs from BLAS (~1e-16).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from model_server.checkrows import Answer, CheckError, gap, read_check

TOLERANCE = 1e-6


@dataclass(frozen=True)
class LinearPipeline:
    fill: tuple[float, ...]  # the imputer's statistic per column
    shift: tuple[float, ...]  # the scaler's mean (0 without centring)
    scale: tuple[float, ...]  # the scaler's scale (1 without scaling)
    weights: tuple[tuple[float, ...], ...]  # per output: one coefficient per column
    intercepts: tuple[float, ...]
    link: str  # logistic (binary: P(positive)), softmax (multiclass), identity (regression)

    @property
    def n_features(self) -> int:
        return len(self.fill)

    def predict_rows(self, rows: Sequence[Sequence[float]]) -> list[Answer]:
        answers: list[Answer] = []
        columns = tuple(zip(self.fill, self.shift, self.scale, strict=True))
        for row in rows:
            z = [(f if x != x else x) - m for x, (f, m, _) in zip(row, columns, strict=True)]
            z = [v / s for v, (_, _, s) in zip(z, columns, strict=True)]
            scores = [
                sum(v * w for v, w in zip(z, ws, strict=True)) + b
                for ws, b in zip(self.weights, self.intercepts, strict=True)
            ]
            if self.link == "logistic":
                answers.append(_expit(scores[0]))
            elif self.link == "softmax":
                top = max(scores)
                exps = [math.exp(s - top) for s in scores]
                total = sum(exps)
                answers.append([e / total for e in exps])
            else:
                answers.append(scores[0])
        return answers


def _expit(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def from_estimator(estimator: Any, task: str) -> LinearPipeline | None:
    """The LinearPipeline of a fitted Pipeline(SimpleImputer, StandardScaler, LogisticRegression |
    Ridge) as algorithms.py builds it; None for anything else."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    if type(estimator) is not Pipeline or len(estimator.steps) != 3:
        return None
    imputer, scaler, model = (step for _, step in estimator.steps)
    if type(imputer) is not SimpleImputer or type(scaler) is not StandardScaler:
        return None
    missing = imputer.missing_values
    if imputer.add_indicator or not (isinstance(missing, float) and math.isnan(missing)):
        return None
    n = int(imputer.n_features_in_)
    if len(imputer.statistics_) != n or scaler.n_features_in_ != n:
        return None
    fill = tuple(float(v) for v in imputer.statistics_)
    if not all(math.isfinite(v) for v in fill):
        return None  # a column empty in training without keep_empty_features: dropped, not imputed
    shift = tuple(float(v) for v in scaler.mean_) if scaler.with_mean else (0.0,) * n
    scale = tuple(float(v) for v in scaler.scale_) if scaler.with_std else (1.0,) * n
    if task == "regression" and type(model) is Ridge and getattr(model.coef_, "ndim", 0) == 1:
        weights: tuple[tuple[float, ...], ...] = (tuple(float(v) for v in model.coef_),)
        intercepts: tuple[float, ...] = (float(model.intercept_),)
        link = "identity"
    elif task != "regression" and type(model) is LogisticRegression:
        weights = tuple(tuple(float(v) for v in row) for row in model.coef_)
        intercepts = tuple(float(v) for v in model.intercept_)
        binary = len(model.classes_) == 2
        if (task == "binary_classification") != binary or len(weights) != (
            1 if binary else len(model.classes_)
        ):
            return None
        link = "logistic" if binary else "softmax"
    else:
        return None
    if any(len(ws) != n for ws in weights):
        return None
    return LinearPipeline(fill, shift, scale, weights, intercepts, link)


def checked(estimator: Any, task: str, model_dir: Any) -> tuple[LinearPipeline | None, str]:
    """(the LinearPipeline if it reproduces check.json within TOLERANCE, else None; what happened)."""
    linear = from_estimator(estimator, task)
    if linear is None:
        return None, "not the linear Pipeline (imputer, scaler, logistic regression or ridge)"
    try:
        rows, expected = read_check(model_dir)
    except CheckError as exc:
        return None, str(exc)
    if any(len(row) != linear.n_features for row in rows):
        return None, "check.json's rows do not have the model's features"
    worst = gap(linear.predict_rows(rows), expected)
    if not worst <= TOLERANCE:
        return None, f"differs from the model by {worst:.3g} on check.json's rows (limit {TOLERANCE:g})"
    return linear, f"max |difference| {worst:.3g} to the model on {len(rows)} check rows"
