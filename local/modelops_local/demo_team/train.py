"""The demo team's training script (script mode: README "Script mode"): HistGradientBoosting behind
the team's own feature step (churn_features.py), saved as one scikit-learn Pipeline."""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
from pathlib import Path

import joblib
import numpy as np
from churn_features import add_log_tenure
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max_iter", type=int, default=100)
    parser.add_argument("--learning_rate", type=float, default=0.1)
    parser.add_argument("--max_depth", type=int, default=None)
    args, _ = parser.parse_known_args()

    label = os.environ["MODELOPS_LABEL_COLUMN"]
    features = json.loads(os.environ["MODELOPS_FEATURE_COLUMNS"])
    rows, labels = [], []
    for path in sorted(Path(os.environ["SM_CHANNEL_TRAIN"]).rglob("*.csv")):
        with path.open(newline="", encoding="utf-8") as handle:
            for record in csv.DictReader(handle):
                rows.append([float(record[c]) if record[c].strip() else math.nan for c in features])
                labels.append(record[label].strip())
    pipeline = Pipeline(
        [
            (
                "log_tenure",
                FunctionTransformer(add_log_tenure, kw_args={"column": features.index("tenure_months")}),
            ),
            (
                "model",
                HistGradientBoostingClassifier(
                    max_iter=args.max_iter,
                    learning_rate=args.learning_rate,
                    max_depth=args.max_depth,
                    early_stopping=False,
                    random_state=int(os.environ.get("MODELOPS_SEED", "0")),
                ),
            ),
        ]
    )
    pipeline.fit(np.asarray(rows), np.asarray(labels))
    print(f"trained on {len(labels)} customers")
    joblib.dump(pipeline, Path(os.environ["SM_MODEL_DIR"]) / "model.joblib")


if __name__ == "__main__":
    main()
