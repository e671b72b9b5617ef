"""A regression dataset shaped like a team's: flat prices with 7 feature columns, one of them a
categorical `district`, and about 2% of the cells empty in several columns (the shape of the
dataset that broke a first deploy: NaN in the smoke sample)."""

from __future__ import annotations

import csv
import random
from pathlib import Path

DISTRICTS = ("centre", "riverside", "harbour", "hills", "airport")
PRICE_FEATURES = ("area_m2", "rooms", "age_years", "distance_km", "floor", "has_lift", "district")
PRICE_LABEL = "price_k"
_DISTRICT_PREMIUM = {"centre": 1.35, "riverside": 1.2, "harbour": 1.1, "hills": 1.0, "airport": 0.8}


def generate_price_csv(path: str | Path, rows: int, seed: int, missing: float = 0.02) -> Path:
    """`rows` flats; the price (thousands) follows area, district, age, distance and lift, with noise."""
    rng = random.Random(seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow([*PRICE_FEATURES, PRICE_LABEL])
        for _ in range(rows):
            area = rng.uniform(25, 160)
            rooms = max(1, round(area / 28 + rng.gauss(0, 0.6)))
            age = rng.randint(0, 90)
            distance = rng.uniform(0.3, 25)
            floor = rng.randint(0, 12)
            lift = int(floor > 3 or rng.random() < 0.3)
            district = rng.choice(DISTRICTS)
            price = (
                area * 4.1 * _DISTRICT_PREMIUM[district] * (1 - 0.003 * age) * (1 - 0.012 * distance)
                + 15 * lift
                + rng.gauss(0, 18)
            )
            cells: list[str] = [
                f"{area:.1f}",
                str(rooms),
                str(age),
                f"{distance:.2f}",
                str(floor),
                str(lift),
                district,
            ]
            cells = ["" if rng.random() < missing else cell for cell in cells]
            writer.writerow([*cells, f"{price:.1f}"])
    return path
