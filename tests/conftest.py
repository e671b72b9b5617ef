"""Test tiers follow the folder: tests/unit, tests/integration, tests/e2e (markers registered in
pyproject.toml and applied here, so `pytest -m unit` selects by folder)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = Path(str(item.fspath)).relative_to(ROOT / "tests").parts[0]
        if tier in {"unit", "integration", "e2e"}:
            item.add_marker(getattr(pytest.mark, tier))


def load_event(name: str) -> dict:
    """The sample events in events/ are the ones `sam local invoke` uses; tests load the same files."""
    return json.loads((EVENTS / name).read_text())
