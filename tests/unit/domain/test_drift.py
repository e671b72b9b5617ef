"""PSI and the drift report against hand-computed values."""

from __future__ import annotations

import json

import pytest
from modelops.drift import EPSILON, parse_baseline, psi, report
from modelops.errors import DriftError

BASELINE = {
    "format": 1,
    "n_rows": 100,
    "features": [
        # bins (-inf, 10), [10, inf) each half the rows, no missing: codes 1, 2 and 3 (missing)
        {"name": "age", "kind": "numeric", "edges": [10.0], "shares": [0.5, 0.5], "missing_share": 0.0},
        # categories basic 0.6, plus 0.3, missing 0.1: codes 1, 2, 3 (missing), 4 (unseen)
        {
            "name": "plan",
            "kind": "categorical",
            "categories": ["basic", "plus"],
            "shares": [0.6, 0.3],
            "missing_share": 0.1,
            "other_share": 0.0,
        },
    ],
    "prediction": {"kind": "classes", "classes": ["no", "yes"], "shares": [0.8, 0.2], "missing_share": 0.0},
}


def test_psi_of_a_shifted_split_is_the_hand_computed_value():
    # (0.75 - 0.5) ln(0.75 / 0.5) + (0.25 - 0.5) ln(0.25 / 0.5) = 0.101366 + 0.173287
    assert psi([0.5, 0.5], [75, 25]) == pytest.approx(0.2746530722, abs=1e-9)


def test_psi_is_zero_for_the_same_distribution_and_for_no_traffic():
    assert psi([0.2, 0.3, 0.5], [20, 30, 50]) == pytest.approx(0.0, abs=1e-12)
    assert psi([0.2, 0.8], [0, 0]) == 0.0


def test_an_empty_baseline_bin_is_floored_at_epsilon():
    # p = [1, 1e-4], q = [0.5, 0.5]: (0.5 - 1) ln(0.5) + (0.5 - 1e-4) ln(0.5 / 1e-4)
    assert EPSILON == 1e-4
    assert psi([1.0, 0.0], [50, 50]) == pytest.approx(4.6043184667, abs=1e-9)


def test_report_gives_psi_per_feature_and_prediction_and_judges_the_largest():
    baseline = parse_baseline(BASELINE, source="baseline.json")

    # Given live counts per code: age all in its second bin's half-ish (75/25), plan as trained,
    # predictions as trained
    counts = {
        "age": [75, 25, 0],
        "plan": [60, 30, 10, 0],
        "prediction": [80, 20],
    }
    result = report(
        baseline,
        counts,
        model="churn",
        version="2",
        window=("t0", "t1"),
        threshold=0.2,
        min_samples=100,
    )

    # Then age's PSI is the hand-computed 0.274653 (its missing bin: both shares floored, 0)
    assert result.psi["age"] == pytest.approx(0.274653, abs=1e-6)
    assert result.psi["plan"] == pytest.approx(0.0, abs=1e-6)
    assert result.psi["prediction"] == pytest.approx(0.0, abs=1e-6)
    assert (result.max_feature, result.samples, result.drifted) == ("age", 100, True)
    assert "age 0.275" in result.headline()


def test_too_few_samples_are_not_judged():
    baseline = parse_baseline(BASELINE, source="baseline.json")
    result = report(
        baseline,
        {"age": [9, 0, 0], "prediction": [9, 0]},
        model="churn",
        version="2",
        window=("t0", "t1"),
        threshold=0.1,
        min_samples=10,
        features=["age"],
    )
    assert result.max_psi > 0.1 and not result.drifted
    assert any("fewer than min_samples 10" in n for n in result.notes)
    assert "plan" not in result.psi


def test_a_malformed_baseline_names_the_field():
    broken = {**BASELINE, "features": [{**BASELINE["features"][0], "shares": [1.0]}]}
    with pytest.raises(DriftError, match=r"baseline.json: features\[0\]: 1 shares for 1 edges"):
        parse_baseline(broken, source="baseline.json")
    with pytest.raises(DriftError, match="features missing or empty"):
        parse_baseline({"prediction": {}}, source="baseline.json")


def test_the_drift_section_of_a_model_config_is_checked():
    from pathlib import Path

    import yaml
    from modelops.config import parse_config
    from modelops.errors import ConfigError

    doc = yaml.safe_load((Path(__file__).resolve().parents[3] / "models" / "churn-local.yaml").read_text())
    config = parse_config(
        {**doc, "drift": {"enabled": True, "period_minutes": 5, "features": ["tenure_months"]}}
    )
    assert (config.drift.threshold, config.drift.min_samples) == (0.25, 500)
    with pytest.raises(
        ConfigError, match=r"drift.features \['age'\] are not among data.schema.feature_columns"
    ):
        parse_config({**doc, "drift": {"enabled": True, "features": ["age"]}})
    with pytest.raises(ConfigError, match="drift.period_minutes"):
        parse_config({**doc, "drift": {"period_minutes": 0}})


def test_the_drift_schedule_input_is_parsed_and_a_bad_one_named():
    from modelops.errors import RequestError
    from modelops.steps.drift import drift_schedule_input, parse_tick

    from tests.conftest import load_event

    tick = parse_tick(load_event("drift_schedule.json"))
    assert (tick.source, tick.model) == ("modelops.drift", "churn")
    assert parse_tick(json.loads(drift_schedule_input("churn"))).model == "churn"
    with pytest.raises(RequestError, match="malformed drift schedule input: model"):
        parse_tick({"source": "modelops.drift", "model": "Not A Model"})
