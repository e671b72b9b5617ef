"""Candidate versus champion: is the new model better enough to canary?

The training job evaluates the candidate AND the champion on the same holdout (the champion's
artifact is passed as a second channel), so the comparison is apples to apples. The file it
writes, `evaluation.json` inside model.tar.gz, is parsed here.
"""

from __future__ import annotations

import io
import json
import math
import tarfile
from dataclasses import asdict, dataclass
from typing import Any, Literal

from modelops.config import Objective
from modelops.errors import EvaluationError

EVALUATION_FILE = "evaluation.json"
MAX_ARTIFACT_BYTES = 2 * 1024 * 1024 * 1024


@dataclass(frozen=True)
class Evaluation:
    metric: str
    candidate: float
    champion: float | None
    n_validation: int


@dataclass(frozen=True)
class Verdict:
    decision: Literal["better", "not_better"]
    metric: str
    candidate: float
    champion: float | None
    improvement: float | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_evaluation_from_tarball(data: bytes, *, source: str) -> Evaluation:
    """Find evaluation.json in a model.tar.gz and parse it; EvaluationError names what is wrong."""
    raw = read_tarball_member(data, EVALUATION_FILE, source=source)
    if raw is None:
        raise EvaluationError(f"{source}: no {EVALUATION_FILE} in the model artifact")
    return parse_evaluation(raw, source=f"{source}/{EVALUATION_FILE}")


def read_tarball_member(data: bytes, name: str, *, source: str) -> bytes | None:
    """The bytes of the file `name` at the top of a model.tar.gz; None when it has none;
    EvaluationError when the archive cannot be read."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            member = next((m for m in tar.getmembers() if m.name.lstrip("./") == name), None)
            if member is None or not member.isfile():
                return None
            handle = tar.extractfile(member)
            assert handle is not None
            return handle.read()
    except tarfile.TarError as exc:
        raise EvaluationError(f"{source}: not a readable model.tar.gz: {exc}") from None


def parse_evaluation(raw: bytes, *, source: str) -> Evaluation:
    try:
        doc = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EvaluationError(f"{source}: not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise EvaluationError(f"{source}: expected a JSON object")
    metric = doc.get("metric")
    if not isinstance(metric, str) or not metric:
        raise EvaluationError(f"{source}: field 'metric' missing or not a string")
    candidate = _finite(doc.get("candidate"), field="candidate", source=source)
    champion_raw = doc.get("champion")
    champion = None if champion_raw is None else _finite(champion_raw, field="champion", source=source)
    n_validation = doc.get("n_validation", 0)
    if not isinstance(n_validation, int) or n_validation < 0:
        raise EvaluationError(f"{source}: field 'n_validation' must be a non-negative integer")
    return Evaluation(metric=metric, candidate=candidate, champion=champion, n_validation=n_validation)


def _finite(value: Any, *, field: str, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise EvaluationError(f"{source}: field {field!r} must be a finite number, got {value!r}")
    return float(value)


def judge(evaluation: Evaluation, objective: Objective) -> Verdict:
    """Better when the candidate beats the champion by at least `min_improvement` in the metric's direction.

    With no champion (first version) the candidate is better by definition.
    """
    if evaluation.metric != objective.metric:
        raise EvaluationError(
            f"evaluation reports metric {evaluation.metric!r} but the model's objective is {objective.metric!r}"
        )
    if evaluation.champion is None:
        return Verdict(
            "better", evaluation.metric, evaluation.candidate, None, None, "no champion yet: first version"
        )
    delta = evaluation.candidate - evaluation.champion
    improvement = delta if objective.maximize else -delta
    direction = "higher" if objective.maximize else "lower"
    # Strictly better, and by at least the configured margin: a tie never replaces the champion.
    if improvement > 0 and improvement >= objective.min_improvement:
        reason = (
            f"{evaluation.metric} {evaluation.candidate:.4f} vs champion {evaluation.champion:.4f}: "
            f"{improvement:+.4f} ({direction} is better, need >= {objective.min_improvement})"
        )
        return Verdict(
            "better", evaluation.metric, evaluation.candidate, evaluation.champion, improvement, reason
        )
    reason = (
        f"{evaluation.metric} {evaluation.candidate:.4f} vs champion {evaluation.champion:.4f}: "
        f"improvement {improvement:+.4f} is below the required {objective.min_improvement} ({direction} is better)"
    )
    return Verdict(
        "not_better", evaluation.metric, evaluation.candidate, evaluation.champion, improvement, reason
    )
