"""Readiness warm-up: before `/ping` answers 200, the model's check rows take a request's path.

A pod takes traffic once its readiness probe passes (Kubernetes; SageMaker hosting waits for
`/ping` the same way), and a canary's first requests are its smoke test and the first of its bake
window, which the canary analysis compares with the warm stable's p99. So the work a fresh process
would otherwise do on those requests is done here, in the loader thread, while `/ping` still says
503: check.json's rows (train.py writes them for every model) are encoded as request bodies,
parsed by inputs.parse_rows, predicted one row at a time and then as one batch by the real
Predictor (native, compiled forest or the model's library, whichever a request of that size gets),
and turned into the response document. Nothing is counted: no request metrics, no drift statistics.

It is bounded by `SERVE_WARMUP_SECONDS` (0 switches it off) and never decides readiness: a model
that fails on check rows is still served (the smoke test and the canary analysis judge it; the
warm-up goes on with the next row), and the log says what the warm-up did, the first failure and
what stopped it early.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from model_server.checkrows import CHECK_FILE
from model_server.inputs import parse_rows
from model_server.predictor import Predictor, answer

log = logging.getLogger("model_server.warmup")
#: Rows sent one at a time (most requests carry one row); then all of them as one batch.
SINGLE_ROWS = 64
JSON = "application/json"


@dataclass(frozen=True)
class WarmUp:
    """What the warm-up did: requests and rows through the path, in how long, how many requests
    the model failed (and the first such error), and why it ended early (switched off, budget
    spent, no check rows), if it did."""

    requests: int
    rows: int
    seconds: float
    stopped: str | None = None
    failed: int = 0
    first_error: str | None = None


def check_bodies(model_dir: Path) -> list[bytes]:
    """Request bodies from check.json's rows: SINGLE_ROWS one-row bodies, then one body of all the
    rows; [] when there are no usable check rows (the warm-up then says so and does nothing)."""
    doc = orjson.loads((model_dir / CHECK_FILE).read_bytes())
    rows = doc.get("rows") if isinstance(doc, dict) else None
    if not isinstance(rows, list) or not rows:
        return []
    singles = [orjson.dumps({"instances": [row]}) for row in rows[:SINGLE_ROWS]]
    return [*singles, orjson.dumps({"instances": rows})]


def warm_up(
    predictor: Predictor,
    model_dir: Path,
    budget_seconds: float,
    clock: Callable[[], float] = time.monotonic,
) -> WarmUp:
    """Run check.json's rows through parse, predict and answer until done or `budget_seconds`
    are spent; never raises for the model's sake (see the module docstring)."""
    started = clock()
    if budget_seconds <= 0:
        return WarmUp(0, 0, 0.0, "switched off (SERVE_WARMUP_SECONDS=0)")
    try:
        bodies = check_bodies(model_dir)
    except (OSError, orjson.JSONDecodeError) as exc:
        return WarmUp(0, 0, clock() - started, f"no check rows: {CHECK_FILE}: {exc}")
    if not bodies:
        return WarmUp(0, 0, clock() - started, f"no check rows in {CHECK_FILE}")
    meta = predictor.metadata
    requests = rows = failed = 0
    first_error = stopped = None
    for body in bodies:
        if clock() - started >= budget_seconds:
            stopped = f"budget of {budget_seconds:g}s spent"
            break
        requests += 1
        try:
            parsed = parse_rows(body, JSON, meta.feature_columns, meta.categorical_columns)
            document: dict[str, Any] = answer(meta, predictor.predict_rows(parsed))
            orjson.dumps(document)
        except Exception as exc:  # the model's own failure: the smoke test and the canary judge it
            failed += 1
            first_error = first_error or f"{type(exc).__name__}: {exc}"
            continue
        rows += len(parsed)
    return WarmUp(requests, rows, clock() - started, stopped, failed, first_error)
