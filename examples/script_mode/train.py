"""A team's own training script for modelops' script mode (README: "Script mode").

modelops runs it as SageMaker's framework containers run a script: `python train.py --C 1.0 ...`
(one `--name value` per training.hyperparameters entry) with the training rows in SM_CHANNEL_TRAIN
(CSV files with their header; the holdout is kept back by modelops) and SM_MODEL_DIR to save the
model in. The dataset's columns come as MODELOPS_* variables, so the script fits any model config.

It saves one scikit-learn Pipeline as model.joblib. The model is called with a 2-D array whose
columns are data.schema.feature_columns in that order: floats (NaN when missing) for numeric
columns, text (NaN when missing) for categorical ones, so the Pipeline picks columns by INDEX.
Only numpy, scikit-learn, joblib, xgboost and lightgbm are installed (no pandas).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
from pathlib import Path

import joblib
import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler


def read_rows(channel: Path, label: str, features: list[str], categorical: set[str]):
    """Every CSV under the channel: the feature matrix (object dtype) and the labels as text."""
    rows, labels = [], []
    for path in sorted(channel.rglob("*.csv")):
        with path.open(newline="", encoding="utf-8") as handle:
            for record in csv.DictReader(handle):
                cells = []
                for column in features:
                    text = (record[column] or "").strip()
                    if not text:
                        cells.append(math.nan)
                    else:
                        cells.append(text if column in categorical else float(text))
                rows.append(cells)
                labels.append(record[label].strip())
    matrix = np.empty((len(rows), len(features)), dtype=object)
    matrix[:] = rows
    return matrix, np.asarray(labels)


def build_pipeline(features: list[str], categorical: set[str], C: float, max_iter: int) -> Pipeline:
    numeric_idx = [i for i, c in enumerate(features) if c not in categorical]
    categorical_idx = [i for i, c in enumerate(features) if c in categorical]
    numeric = Pipeline([("impute", SimpleImputer(strategy="mean")), ("scale", StandardScaler())])
    categories = Pipeline(
        [
            ("impute", SimpleImputer(strategy="constant", fill_value="(missing)")),
            ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]
    )
    columns = ColumnTransformer(
        [("numeric", numeric, numeric_idx), ("categorical", categories, categorical_idx)],
        sparse_threshold=0,
    )
    return Pipeline([("columns", columns), ("model", LogisticRegression(C=C, max_iter=max_iter))])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--C", type=float, default=1.0)
    parser.add_argument("--max_iter", type=int, default=1000)
    args, _ = parser.parse_known_args()  # other hyperparameters are not this script's

    label = os.environ["MODELOPS_LABEL_COLUMN"]
    features = json.loads(os.environ["MODELOPS_FEATURE_COLUMNS"])
    categorical = set(json.loads(os.environ.get("MODELOPS_CATEGORICAL_COLUMNS", "[]")))
    X, y = read_rows(Path(os.environ["SM_CHANNEL_TRAIN"]), label, features, categorical)
    print(f"training on {len(y)} rows, {len(features)} features ({sorted(categorical)} categorical)")

    pipeline = build_pipeline(features, categorical, args.C, args.max_iter)
    pipeline.fit(X, y)  # text labels: classes_ is their sorted order, which modelops reads back
    joblib.dump(pipeline, Path(os.environ["SM_MODEL_DIR"]) / "model.joblib")


if __name__ == "__main__":
    main()
