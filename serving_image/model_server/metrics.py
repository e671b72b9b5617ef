"""Evaluation metrics on the holdout, by task. Higher is better except rmse, mae and logloss."""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

from model_server.estimator import ClassProbabilities, Labels, Scores

LOWER_IS_BETTER = {"rmse", "mae", "logloss"}


def classification_metrics(y_true: Labels, positive_proba: Scores) -> dict[str, float]:
    """auc, accuracy, f1, precision, recall (threshold 0.5) and logloss for 0/1 labels and P(label == 1)."""
    proba = np.clip(positive_proba.astype(np.float64), 1e-15, 1 - 1e-15)
    predicted = (proba >= 0.5).astype(int)
    return {
        "auc": float(skm.roc_auc_score(y_true, proba)),
        "accuracy": float(skm.accuracy_score(y_true, predicted)),
        "f1": float(skm.f1_score(y_true, predicted, zero_division=0)),
        "precision": float(skm.precision_score(y_true, predicted, zero_division=0)),
        "recall": float(skm.recall_score(y_true, predicted, zero_division=0)),
        "logloss": float(skm.log_loss(y_true, proba, labels=[0, 1])),
    }


def regression_metrics(y_true: Labels, predicted: Scores) -> dict[str, float]:
    """rmse, mae and r2."""
    return {
        "rmse": float(np.sqrt(skm.mean_squared_error(y_true, predicted))),
        "mae": float(skm.mean_absolute_error(y_true, predicted)),
        "r2": float(skm.r2_score(y_true, predicted)),
    }


def multiclass_metrics(y_true: Labels, proba: ClassProbabilities) -> dict[str, float]:
    """accuracy, macro_f1 (each class weighs the same, however rare) and logloss for labels 0..k-1
    and one row of k class probabilities per example; the predicted class is the most probable."""
    k = proba.shape[1]
    predicted = np.argmax(proba, axis=1)
    return {
        "accuracy": float(skm.accuracy_score(y_true, predicted)),
        "macro_f1": float(
            skm.f1_score(y_true, predicted, average="macro", labels=list(range(k)), zero_division=0)
        ),
        "logloss": float(skm.log_loss(y_true, proba, labels=list(range(k)))),
    }
