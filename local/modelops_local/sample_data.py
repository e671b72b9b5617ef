"""A deterministic synthetic churn dataset for the demo and the tests (columns of models/churn.yaml).

`drift` > 0 shifts the feature distributions and changes how features drive churn, so a model
trained before the drift scores worse on drifted data than one retrained on it: the demo's reason
to retrain. Same (rows, seed, drift) -> byte-identical file.
"""

from __future__ import annotations

import csv
import math
import random
from pathlib import Path

CHURN_FEATURES = (
    "tenure_months",
    "monthly_charges",
    "support_calls",
    "usage_gb",
    "contract_months",
    "late_payments",
)
CHURN_LABEL = "churned"


def churn_rows(rows: int, seed: int, drift: float = 0.0) -> list[dict[str, float | int]]:
    """`rows` customers as dicts of the feature columns plus `churned` (0 or 1)."""
    if rows < 0:
        raise ValueError(f"rows must be >= 0, got {rows}")
    if not 0.0 <= drift <= 1.0:
        raise ValueError(f"drift must be within [0, 1], got {drift}")
    rng = random.Random(seed)
    out: list[dict[str, float | int]] = []
    for _ in range(rows):
        tenure = rng.randint(1, 72)
        contract = rng.choice((1, 1, 12, 24))
        monthly = round(rng.uniform(20.0, 120.0) + 25.0 * drift, 2)
        support = min(12, int(rng.expovariate(1.0 / (1.2 + 1.5 * drift))))
        usage = round(max(0.0, rng.gauss(40.0 - 10.0 * drift, 15.0)), 1)
        late = min(6, int(rng.expovariate(1.0 / (0.5 + 0.8 * drift))))
        score = (
            0.2
            - 0.045 * tenure
            + 0.025 * (monthly - 70.0)
            + (0.45 + 0.4 * drift) * support
            - 0.06 * contract
            + (0.5 - 0.3 * drift) * late
            - 0.02 * (1.0 - 2.0 * drift) * (usage - 40.0)
            + 1.5 * drift * (monthly > 110.0)
        )
        churned = 1 if rng.random() < 1.0 / (1.0 + math.exp(-score)) else 0
        out.append(
            {
                "tenure_months": tenure,
                "monthly_charges": monthly,
                "support_calls": support,
                "usage_gb": usage,
                "contract_months": contract,
                "late_payments": late,
                CHURN_LABEL: churned,
            }
        )
    return out


def generate_churn_csv(path: str | Path, rows: int, seed: int, drift: float = 0.0) -> Path:
    """Write `rows` synthetic customers (header row first) to `path`; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*CHURN_FEATURES, CHURN_LABEL], lineterminator="\n")
        writer.writeheader()
        writer.writerows(churn_rows(rows, seed, drift))
    return path
