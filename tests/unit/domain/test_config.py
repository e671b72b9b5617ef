from __future__ import annotations

from pathlib import Path

import pytest
from modelops.config import load_config_file, parse_config
from modelops.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]


def _doc(**overrides):
    doc = load_config_file(ROOT / "models" / "churn.yaml").to_document()
    doc.update(overrides)
    return doc


def test_shipped_example_config_is_valid():
    # Given the example shipped in models/  When loaded  Then it validates with its documented values
    config = load_config_file(ROOT / "models" / "churn.yaml")
    assert config.data_prefix == "incoming/churn/"
    assert config.training.objective.maximize is True
    assert config.canary.canary_replicas(stable_replicas=3) == 1


def test_every_bad_field_is_named():
    # Given a document with two wrong fields
    doc = _doc(name="Bad_Name", canary={**_doc()["canary"], "bake_seconds": 0})
    # When parsed  Then the error names both fields
    with pytest.raises(ConfigError) as err:
        parse_config(doc)
    assert "name:" in str(err.value)
    assert "canary.bake_seconds" in str(err.value)


def test_canary_needs_exactly_one_size():
    canary = {**_doc()["canary"], "percent": 10}
    with pytest.raises(ConfigError, match="exactly one of canary.replicas or canary.percent"):
        parse_config(_doc(canary=canary))


def test_percent_rounds_up_and_is_at_least_one():
    canary = {**_doc()["canary"], "replicas": None, "percent": 25}
    config = parse_config(_doc(canary=canary))
    assert config.canary.canary_replicas(4) == 1
    assert config.canary.canary_replicas(5) == 2
    assert config.canary.canary_replicas(0) == 1


def test_unknown_fields_are_refused():
    with pytest.raises(ConfigError, match="surprise"):
        parse_config(_doc(surprise=True))


def test_label_cannot_be_a_feature():
    data = _doc()["data"]
    data["schema"]["feature_columns"].append("churned")
    with pytest.raises(ConfigError, match="must not also be a feature"):
        parse_config(_doc(data=data))


def test_unreadable_and_non_mapping_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read model config"):
        load_config_file(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config_file(tmp_path / "list.yaml")
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config_file(tmp_path / "bad.json")


def test_schedule_expression_checked():
    with pytest.raises(ConfigError, match="schedule.expression"):
        parse_config(_doc(schedule={"expression": "every tuesday"}))
