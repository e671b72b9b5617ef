"""Test tiers follow the folder: tests/unit, tests/integration, tests/e2e (markers registered in
pyproject.toml and applied here, so `pytest -m unit` selects by folder)."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import settings

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"


TIER_ORDER = {"unit": 0, "integration": 1, "e2e": 2}

# Property tests (hypothesis) are bounded and deterministic by default: the same examples on every
# run (derandomize), no example database written into the tree, and a deadline loose enough for a
# busy 2-core CI machine. HYPOTHESIS_PROFILE=explore searches harder and at random.
settings.register_profile(
    "ci", max_examples=150, deadline=timedelta(seconds=2), derandomize=True, database=None, print_blob=True
)
settings.register_profile("explore", max_examples=2000, deadline=None, derandomize=False, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


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


@pytest.fixture
def offline_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials in us-east-1 and no AWS_ENDPOINT_URL: boto3 clients in the test talk to
    moto's in-process mock (or fail), never to a real account or a running local stack."""
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
