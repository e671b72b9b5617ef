"""The serving image's package is not installed into the venv (it ships in its own image, with
PYTHONPATH=/opt/program there); the drift loop's tests build the pods' EMF lines with it, importing
it from serving_image/ as tests/unit/serving does."""

from __future__ import annotations

import sys
from pathlib import Path

SERVING_IMAGE = Path(__file__).resolve().parents[3] / "serving_image"
if str(SERVING_IMAGE) not in sys.path:
    sys.path.insert(0, str(SERVING_IMAGE))
