"""The synthetic churn dataset the demo and the tests share."""

from __future__ import annotations

from modelops.config import load_config_file
from modelops.dataset import validate_csv

from modelops_local.manifests import DEFAULT_TEMPLATE_DIR
from modelops_local.sample_data import CHURN_FEATURES, CHURN_LABEL, churn_rows, generate_churn_csv


def test_same_arguments_same_bytes(tmp_path):
    a = generate_churn_csv(tmp_path / "a.csv", 300, seed=7, drift=0.3)
    b = generate_churn_csv(tmp_path / "b.csv", 300, seed=7, drift=0.3)
    assert a.read_bytes() == b.read_bytes()
    assert generate_churn_csv(tmp_path / "c.csv", 300, seed=8).read_bytes() != a.read_bytes()


def test_the_dataset_passes_the_workflows_validation_for_the_example_model(tmp_path):
    # Given the example model config and a generated file
    config = load_config_file(DEFAULT_TEMPLATE_DIR.parents[1] / "models" / "churn.yaml")
    data = generate_churn_csv(tmp_path / "d.csv", 500, seed=1).read_bytes()

    # When the workflow's dataset validation reads it
    report = validate_csv(data, config.data.schema_, name="d.csv")

    # Then it has the schema's columns and both labels
    assert report.rows == 500
    assert report.columns == [*CHURN_FEATURES, CHURN_LABEL]
    assert set(report.label_distribution) == {"0", "1"}


def test_drift_shifts_the_distribution():
    before = churn_rows(2000, seed=1)
    after = churn_rows(2000, seed=1, drift=1.0)
    mean = lambda rows, col: sum(float(r[col]) for r in rows) / len(rows)  # noqa: E731
    assert mean(after, "monthly_charges") > mean(before, "monthly_charges") + 15
    assert mean(after, CHURN_LABEL) > mean(before, CHURN_LABEL)
