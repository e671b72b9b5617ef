"""Data drift: the population stability index of live traffic against a version's baseline.

Pure. The baseline is the `baseline.json` the training harness writes beside the model (the
serving image's model_server/baseline.py): per feature, bins (or categories) with each one's
share of the training rows and the share of missing values; the same for the model's predictions
on the holdout. The serving pods count, per feature, how many values fell into each *code*
(`1..k` bin or category, `k + 1` missing, `k + 2` a category never seen in training) and the
monitor reads those counts back from CloudWatch for its window.

PSI = sum over codes of (live share - baseline share) * ln(live share / baseline share), with
every share floored at `EPSILON` so an empty bin on either side stays finite. Common reading: below
0.1 no shift, 0.1-0.25 a moderate one, above 0.25 a large one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from modelops.errors import DriftError

#: The file the training harness writes beside the model (and into its model.tar.gz).
BASELINE_FILE = "baseline.json"
#: The model's latest drift figures in the state table (steps/drift.py writes, status reads).
DRIFT_DOC = "DRIFT"
#: The floor on a share (baseline or live) before the logarithm.
EPSILON = 1e-4
PREDICTION = "prediction"


@dataclass(frozen=True)
class Profile:
    """One feature's (or the predictions') expected share per code 1..n."""

    name: str
    kind: str  # numeric | categorical | classes
    shares: tuple[float, ...]  # index i is code i + 1

    @property
    def codes(self) -> range:
        return range(1, len(self.shares) + 1)


def profile_from(doc: Mapping[str, Any], *, where: str) -> Profile:
    """A feature's (or the prediction's) profile of baseline.json as expected shares per code;
    DriftError naming the field when it is malformed."""
    try:
        name, kind = str(doc["name"]), str(doc["kind"])
        shares = [float(s) for s in doc["shares"]]
        missing = float(doc.get("missing_share", 0.0))
        if kind == "numeric":
            if len(shares) != len(doc["edges"]) + 1:
                raise DriftError(f"{where}: {len(shares)} shares for {len(doc['edges'])} edges")
            expected = [*shares, missing]
        elif kind == "categorical":
            if len(shares) != len(doc["categories"]):
                raise DriftError(f"{where}: {len(shares)} shares for {len(doc['categories'])} categories")
            expected = [*shares, missing, float(doc.get("other_share", 0.0))]
        elif kind == "classes":
            if len(shares) != len(doc["classes"]):
                raise DriftError(f"{where}: {len(shares)} shares for {len(doc['classes'])} classes")
            expected = shares
        else:
            raise DriftError(f"{where}.kind: {kind!r} is not numeric, categorical or classes")
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, DriftError):
            raise
        raise DriftError(f"{where}: malformed profile ({type(exc).__name__}: {exc})") from None
    if any(s < 0 or not math.isfinite(s) for s in expected):
        raise DriftError(f"{where}: shares must be finite and >= 0")
    return Profile(name=name, kind=kind, shares=tuple(expected))


@dataclass(frozen=True)
class Baseline:
    features: tuple[Profile, ...]
    prediction: Profile
    n_rows: int

    def profile(self, name: str) -> Profile:
        if name == PREDICTION:
            return self.prediction
        for profile in self.features:
            if profile.name == name:
                return profile
        raise DriftError(f"the baseline has no feature {name!r}")


def parse_baseline(doc: Any, *, source: str) -> Baseline:
    """baseline.json -> Baseline; DriftError naming the source and field when it is malformed."""
    if not isinstance(doc, dict):
        raise DriftError(f"{source}: expected a JSON object")
    features = doc.get("features")
    if not isinstance(features, list) or not features:
        raise DriftError(f"{source}: features missing or empty")
    prediction = doc.get("prediction")
    if not isinstance(prediction, dict):
        raise DriftError(f"{source}: prediction missing")
    return Baseline(
        features=tuple(profile_from(f, where=f"{source}: features[{i}]") for i, f in enumerate(features)),
        prediction=profile_from({"name": PREDICTION, **prediction}, where=f"{source}: prediction"),
        n_rows=int(doc.get("n_rows") or 0),
    )


def psi(expected: Sequence[float], observed: Sequence[float]) -> float:
    """Population stability index of `observed` counts (or shares) against `expected` shares,
    bin by bin; both are normalised to sum 1 and floored at EPSILON. 0 for no observations."""
    if len(expected) != len(observed):
        raise DriftError(f"psi: {len(expected)} expected bins, {len(observed)} observed")
    total_observed, total_expected = sum(observed), sum(expected)
    if total_observed <= 0 or total_expected <= 0:
        return 0.0
    value = 0.0
    for e, o in zip(expected, observed, strict=True):
        p = max(e / total_expected, EPSILON)
        q = max(o / total_observed, EPSILON)
        value += (q - p) * math.log(q / p)
    return value


@dataclass(frozen=True)
class DriftReport:
    """One window's figures: PSI per feature and for the predictions, the largest, the sample."""

    model: str
    version: str | None
    window_start: str
    window_end: str
    samples: int
    psi: dict[str, float]
    max_psi: float
    max_feature: str | None
    threshold: float
    min_samples: int
    drifted: bool
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def headline(self) -> str:
        """One line for a run's reason and the history: what drifted and by how much."""
        top = sorted(self.psi.items(), key=lambda kv: -kv[1])[:3]
        shown = ", ".join(f"{name} {value:.3f}" for name, value in top)
        return (
            f"drift: PSI {self.max_psi:.3f} ({self.max_feature}) above {self.threshold:g} over "
            f"{self.samples} predictions {self.window_start}..{self.window_end}; top: {shown}"
        )


def report(
    baseline: Baseline,
    counts: Mapping[str, Sequence[float]],
    *,
    model: str,
    version: str | None,
    window: tuple[str, str],
    threshold: float,
    min_samples: int,
    features: Sequence[str] | None = None,
) -> DriftReport:
    """PSI of each watched feature (all, or `features`) and of the predictions, from the live
    counts per code (`counts[name][i]` is code i + 1's count; names missing from `counts` had
    no traffic). `samples` is the number of predictions in the window."""
    watched = list(features) if features else [p.name for p in baseline.features]
    notes: list[str] = []
    values: dict[str, float] = {}
    prediction_counts = list(counts.get(PREDICTION, ()))
    samples = int(sum(prediction_counts))
    for name in [*watched, PREDICTION]:
        profile = baseline.profile(name)
        observed = list(counts.get(name, ()))
        if not any(observed):
            notes.append(f"{name}: no live values in the window")
            continue
        if len(observed) != len(profile.shares):
            raise DriftError(f"{name}: {len(observed)} live codes for {len(profile.shares)} baseline codes")
        values[name] = round(psi(profile.shares, observed), 6)
    top = max(values.items(), key=lambda kv: kv[1]) if values else (None, 0.0)
    if samples < min_samples:
        notes.append(f"{samples} predictions, fewer than min_samples {min_samples}: not judged")
    return DriftReport(
        model=model,
        version=version,
        window_start=window[0],
        window_end=window[1],
        samples=samples,
        psi=values,
        max_psi=top[1],
        max_feature=top[0],
        threshold=threshold,
        min_samples=min_samples,
        drifted=samples >= min_samples and top[1] > threshold,
        notes=notes,
    )
