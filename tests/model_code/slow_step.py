"""A team's pipeline step that takes its time (tests/team_models.py puts it in front of a model, and
in the artifact's code/ folder, so `serve` imports it from there when it unpickles the model)."""

from __future__ import annotations

import time
from typing import Any


def pause(X: Any, ms: int) -> Any:
    """X unchanged, `ms` milliseconds later: a slow model, as a test needs one."""
    time.sleep(ms / 1000.0)
    return X
