"""Script mode with a package of the team's own (requirements.txt): a Pipeline of regions.Regions,
which imports inflection, and a logistic regression on the tier data (tests/multiclass_data.py)."""

import csv
import json
import os
from pathlib import Path

import joblib
from regions import Regions
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

rows = []
for path in sorted(Path(os.environ["SM_CHANNEL_TRAIN"]).rglob("*.csv")):
    with path.open(newline="", encoding="utf-8") as handle:
        rows += list(csv.DictReader(handle))
features = json.loads(os.environ["MODELOPS_FEATURE_COLUMNS"])
label = os.environ["MODELOPS_LABEL_COLUMN"]
X = [[r[c] for c in features] for r in rows]
model = Pipeline([("regions", Regions()), ("model", LogisticRegression(max_iter=1000))])
model.fit(X, [r[label].strip() for r in rows])
joblib.dump(model, Path(os.environ["SM_MODEL_DIR"]) / "model.joblib")
print(f"trained on {len(rows)} rows")
