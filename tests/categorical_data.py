"""Churn data with a categorical column: `plan` (basic, plus, premium; a few cells empty), drawn
so that it is correlated with churn. Built on modelops_local.sample_data.generate_churn_csv."""

from __future__ import annotations

import csv
import random
from pathlib import Path

from modelops_local.sample_data import CHURN_FEATURES, CHURN_LABEL, generate_churn_csv

PLANS = ("basic", "plus", "premium")
PLAN_FEATURES = (*CHURN_FEATURES, "plan")
# P(plan) for customers who churn and for those who stay: premium customers rarely leave.
_WEIGHTS = {"1": (0.65, 0.25, 0.10), "0": (0.20, 0.35, 0.45)}


def generate_churn_with_plan_csv(path: str | Path, rows: int, seed: int, missing: float = 0.05) -> Path:
    """generate_churn_csv's customers plus a `plan` column (empty in about `missing` of the rows)."""
    path = generate_churn_csv(path, rows, seed)
    with path.open(encoding="utf-8", newline="") as handle:
        records = list(csv.DictReader(handle))
    rng = random.Random(seed + 1)
    for record in records:
        plan = rng.choices(PLANS, weights=_WEIGHTS[record[CHURN_LABEL]])[0]
        record["plan"] = "" if rng.random() < missing else plan
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*PLAN_FEATURES, CHURN_LABEL], lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
    return path
