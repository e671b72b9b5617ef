"""check.json: holdout rows and the saved model's own answers, written by train.py for every model.

The image build checks any predictor it compiles (trees.py) against these answers before it ships
it, and `serve` checks the built library again before it uses it. The answers come from the model
as `serve` would load it from the model folder (artifact.load_model after save_model), so "equal
to the library" means equal to what the library path would have answered.

    {"rows": [[0.5, null, ...], ...], "expected": [0.93, ...]}

`rows`: null for a missing value (text in a categorical column); `expected`: per row P(positive
label) (binary), the k class probabilities in the order of `classes` (multiclass) or the value
(regression), as LoadedModel.predict gives them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only train.py writes it (with numpy); the build and `serve` only read it
    from model_server.artifact import LoadedModel
    from model_server.estimator import Matrix

CHECK_FILE = "check.json"
# Holdout rows stored for the check: enough to take most branches of a forest, small in the artifact.
CHECK_ROWS = 256

Answer = float | list[float]


class CheckError(ValueError):
    """check.json is missing or unusable; the message says why."""


def write_check(model_dir: Path, model: LoadedModel, holdout: Matrix) -> None:
    """Write check.json from the first CHECK_ROWS holdout rows and `model`'s answers to them."""
    sample = holdout[:CHECK_ROWS]
    rows = [[_cell(v) for v in row] for row in sample.tolist()]
    expected = model.predict(sample).tolist()
    doc = {"rows": rows, "expected": expected}
    (model_dir / CHECK_FILE).write_text(json.dumps(doc, separators=(",", ":")) + "\n", encoding="utf-8")


def _cell(value: Any) -> Any:
    if isinstance(value, str):
        return value
    number = float(value)
    return None if math.isnan(number) else number


def read_check(model_dir: Path) -> tuple[list[list[float]], list[Answer]]:
    """(rows with NaN for missing, expected answers) from a numeric model's check.json."""
    path = model_dir / CHECK_FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        rows = [[math.nan if v is None else float(v) for v in row] for row in doc["rows"]]
        expected: list[Answer] = [
            [float(p) for p in v] if isinstance(v, list) else float(v) for v in doc["expected"]
        ]
    except FileNotFoundError:
        raise CheckError(f"{path} not found (a model trained before check rows were stored?)") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckError(f"{path} is unusable: {type(exc).__name__}: {exc}") from None
    if not rows or len(rows) != len(expected):
        raise CheckError(f"{path} needs as many expected answers as rows, at least one")
    return rows, expected


def gap(got: list[Answer], want: list[Answer], *, relative: bool = False) -> float:
    """The largest absolute difference between two lists of answers (inf when their shapes differ
    or either holds NaN); `relative`: each difference divided by max(1, |wanted|), for a library
    that computes in float32, whose rounding grows with the size of the value."""
    if [_width(a) for a in got] != [_width(b) for b in want]:
        return math.inf
    worst = 0.0
    for a, b in zip(_flat(got), _flat(want), strict=True):
        if math.isnan(a) or math.isnan(b):
            return math.inf
        worst = max(worst, abs(a - b) / (max(1.0, abs(b)) if relative else 1.0))
    return worst


def _width(answer: Answer) -> int:
    return len(answer) if isinstance(answer, list) else -1


def _flat(answers: list[Answer]) -> list[float]:
    return [v for a in answers for v in (a if isinstance(a, list) else [a])]
