"""A multiclass dataset shaped like a team's: customer tiers named in words (gold, silver, bronze),
numeric features with empty cells, and a categorical `region` column (a few cells empty). The tier
follows a noisy spend score, so a model can learn it but not perfectly."""

from __future__ import annotations

import csv
import math
import random
from pathlib import Path

TIERS = ("bronze", "gold", "silver")  # the model's class order: alphabetical, as train orders text labels
REGIONS = ("north", "south", "east", "west")
TIER_NUMERIC = ("monthly_spend", "orders", "tenure_months", "returns")
TIER_FEATURES = (*TIER_NUMERIC, "region")
TIER_LABEL = "tier"
# Spend per region: the same behaviour earns a higher tier in some regions than in others.
_REGION_BONUS = {"north": 0.6, "south": -0.4, "east": 0.0, "west": 0.2}


def tier_rows(rows: int, seed: int, missing: float = 0.03) -> list[dict[str, str]]:
    """`rows` customers as CSV cells (text; "" for a missing value)."""
    rng = random.Random(seed)
    out = []
    for _ in range(rows):
        spend = rng.lognormvariate(4.0, 0.6)
        orders = max(0, round(rng.gauss(spend / 12, 2)))
        tenure = rng.randint(1, 72)
        returns = max(0, round(rng.gauss(orders * 0.1, 1)))
        region = rng.choice(REGIONS)
        score = math.log(spend) + 0.015 * tenure - 0.12 * returns + _REGION_BONUS[region] + rng.gauss(0, 0.35)
        tier = "gold" if score > 4.9 else "silver" if score > 4.2 else "bronze"
        cells = {
            "monthly_spend": f"{spend:.2f}",
            "orders": str(orders),
            "tenure_months": str(tenure),
            "returns": str(returns),
            "region": region,
        }
        for column in TIER_FEATURES:
            if rng.random() < missing:
                cells[column] = ""
        out.append({**cells, TIER_LABEL: tier})
    return out


def generate_tier_csv(path: str | Path, rows: int, seed: int, missing: float = 0.03) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*TIER_FEATURES, TIER_LABEL], lineterminator="\n")
        writer.writeheader()
        writer.writerows(tier_rows(rows, seed, missing))
    return path
