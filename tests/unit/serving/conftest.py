"""The serving image's package is not installed into the venv (it ships in its own image, with
PYTHONPATH=/opt/program there); these tests import it from serving_image/ the same way."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

SERVING_IMAGE = Path(__file__).resolve().parents[3] / "serving_image"
if str(SERVING_IMAGE) not in sys.path:
    sys.path.insert(0, str(SERVING_IMAGE))


@pytest.fixture(scope="session")
def demo_team_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo team's model (script mode, trained once per session by the real `train`: check.json,
    baseline.json); read-only: a test that changes it works on a copy."""
    from tests.team_models import demo_team_model

    return demo_team_model(tmp_path_factory.mktemp("demo-team") / "ml")
