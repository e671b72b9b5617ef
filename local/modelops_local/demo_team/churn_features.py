"""The demo team's feature engineering, imported by train.py at training and, through the model
artifact's code/ folder, by `serve` when it unpickles the model.

It has the bug the demo's third version ships: `math.log` of a tenure of 0 months raises
"math domain error". The training data has no such customer (everyone has at least a month), so
the model trains, is judged better than the champion and passes the smoke test; live traffic has
new customers, and the canary answers 500 for every one of them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def add_log_tenure(X: Any, column: int) -> Any:
    """The features plus log(tenure): churn falls fast over the first months, then flattens."""
    X = np.asarray(X, dtype=np.float64)
    log_tenure = [math.nan if math.isnan(t) else math.log(t) for t in X[:, column]]
    return np.column_stack([X, log_tenure])
