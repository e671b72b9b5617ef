"""Test tiers follow the folder: tests/unit, tests/integration, tests/e2e (markers registered in
pyproject.toml and applied here, so `pytest -m unit` selects by folder)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"


TIER_ORDER = {"unit": 0, "integration": 1, "e2e": 2}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its tier and run the tiers fastest first (unit, integration, e2e), so a
    broken unit fails the run early and the e2e session's local runtime starts after the rest."""
    for item in items:
        tier = Path(str(item.fspath)).relative_to(ROOT / "tests").parts[0]
        if tier in TIER_ORDER:
            item.add_marker(getattr(pytest.mark, tier))
    items.sort(
        key=lambda item: TIER_ORDER.get(Path(str(item.fspath)).relative_to(ROOT / "tests").parts[0], 1)
    )


def load_event(name: str) -> dict:
    """The sample events in events/ are the ones `sam local invoke` uses; tests load the same files."""
    return json.loads((EVENTS / name).read_text())
