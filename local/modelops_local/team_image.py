"""A stand-in for a training image of a team's own (`training.image`), for the test bench only.

SageMaker runs a bring-your-own image as `docker run <image> train`; this module is such a `train`
program: it follows the container contract (SAGEMAKER_BASE_DIR, hyperparameters.json, channel
`train`), fits a model with code that is not modelops' (a scikit-learn Pipeline: imputer and
logistic regression, on every row it is given) and writes model/ per the README's model-artifact
contract: model.joblib, metadata.json and an evaluation.json of its own. That evaluation LIES
(`candidate` CLAIMED_SCORE whatever the data), as a team's own evaluator might be wrong: the
workflow must judge the model with its own judge job and never read this file's numbers.

The local runtime runs it for an image registered with `modelops_local.sagemaker_runner`'s
`image_programs` (tests register one; `TEAM_IMAGE` is the URI they use). Binary classification and
regression on numeric columns only: enough to stand for "another image", nothing more.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
from pathlib import Path

import joblib
import numpy as np
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline

#: The image URI tests register for this program.
TEAM_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/team-churn-trainer:1"
#: What this image's own evaluation.json claims, whatever the model is worth.
CLAIMED_SCORE = 0.99


def train(base: Path) -> None:
    """Fit on every CSV row of channel `train` and write model/ (model, metadata, own evaluation)."""
    hyper = json.loads((base / "input" / "config" / "hyperparameters.json").read_text())
    label = hyper["label_column"]
    features = json.loads(hyper["feature_columns"])
    task = hyper.get("task", "binary_classification")
    metric = hyper.get("objective_metric", "auc")
    rows: list[dict[str, str]] = []
    for path in sorted((base / "input" / "data" / "train").rglob("*.csv")):
        with path.open(newline="", encoding="utf-8") as handle:
            rows += list(csv.DictReader(handle))
    x = np.asarray([[_number(r[c]) for c in features] for r in rows], dtype=np.float64)
    labels = [r[label].strip() for r in rows]
    if task == "regression":
        model = Pipeline([("impute", SimpleImputer()), ("fit", LinearRegression())])
        model.fit(x, np.asarray([float(v) for v in labels]))
        classes = None
    else:
        model = Pipeline([("impute", SimpleImputer()), ("fit", LogisticRegression(max_iter=500))])
        model.fit(x, np.asarray(labels))
        classes = [str(c) for c in model.classes_]
    out = base / "model"
    out.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, out / "model.joblib")
    metadata = {
        "task": task,
        "label_column": label,
        "feature_columns": features,
        "objective_metric": metric,
        "classes": classes,
        "format": "sklearn",
        "model_file": "model.joblib",
        "algorithm": "team_logistic_regression",
    }
    (out / "metadata.json").write_text(json.dumps(metadata))
    claimed = {"metric": metric, "candidate": CLAIMED_SCORE, "champion": None, "n_validation": len(rows)}
    (out / "evaluation.json").write_text(json.dumps(claimed))
    print(f"validation:{metric}={CLAIMED_SCORE}", flush=True)


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def main() -> int:
    train(Path(os.environ.get("SAGEMAKER_BASE_DIR", "/opt/ml")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
