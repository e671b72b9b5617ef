from __future__ import annotations

from pathlib import Path

import pytest
from modelops.config import load_config_file, parse_config
from modelops.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]


def training_request(config):
    """The CreateTrainingJob request the workflow would make for `config` (fixed run and stack)."""
    from modelops.run import DatasetObject
    from modelops.steps.training import training_job_request

    return training_job_request(
        config,
        run_id="r1",
        stack="s",
        bucket="b",
        dataset=DatasetObject(bucket="b", key="incoming/churn/d.csv"),
        champion=None,
        role_arn="arn:aws:iam::123456789012:role/r",
        default_image="img",
    )


def hyper(doc):
    """The hyperparameters of the training job the workflow would start for config `doc`."""
    return training_request(parse_config(doc))["HyperParameters"]


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


def test_categorical_columns_must_be_features_listed_once():
    # Given a schema naming a categorical column that is not a feature, then one listed twice
    data = _doc()["data"]
    features = data["schema"]["feature_columns"]
    data["schema"]["categorical_columns"] = ["plan"]
    # When parsed  Then the error names the column and the field
    with pytest.raises(ConfigError) as err:
        parse_config(_doc(data=data))
    assert "data.schema: categorical_columns ['plan'] are not among feature_columns" in str(err.value)
    data["schema"]["categorical_columns"] = [features[0], features[0]]
    with pytest.raises(ConfigError, match=rf"categorical_columns lists \['{features[0]}'\] more than once"):
        parse_config(_doc(data=data))


def test_categorical_columns_reach_training_as_a_json_list_and_only_when_declared():
    import json

    # Given the shipped config (numeric only): no categorical_columns hyperparameter at all
    assert "categorical_columns" not in hyper(_doc())
    # Given one feature declared categorical: passed beside feature_columns as a JSON list
    data = _doc()["data"]
    first = data["schema"]["feature_columns"][0]
    data["schema"]["categorical_columns"] = [first]
    params = hyper(_doc(data=data))
    assert json.loads(params["categorical_columns"]) == [first]
    assert json.loads(params["feature_columns"]) == data["schema"]["feature_columns"]


@pytest.mark.parametrize(
    ("task", "metric", "maximize"),
    [
        ("binary_classification", "auc", True),
        ("multiclass_classification", "accuracy", True),
        ("regression", "rmse", False),
    ],
)
def test_an_objective_without_a_metric_takes_its_tasks_default(task, metric, maximize):
    doc = _doc(data={**_doc()["data"], "task": task})
    doc["training"]["objective"] = {"min_improvement": 0.01}
    objective = parse_config(doc).training.objective
    assert (objective.metric, objective.maximize, objective.min_improvement) == (metric, maximize, 0.01)


@pytest.mark.parametrize(
    ("task", "metric"),
    [("regression", "auc"), ("multiclass_classification", "auc"), ("binary_classification", "macro_f1")],
)
def test_a_metric_the_task_does_not_compute_is_refused_at_put_time(task, metric):
    doc = _doc(data={**_doc()["data"], "task": task})
    doc["training"]["objective"] = {"metric": metric}
    with pytest.raises(
        ConfigError, match=f"training.objective.metric '{metric}' does not apply to data.task {task}"
    ):
        parse_config(doc)


def test_the_algorithm_reaches_training_as_a_hyperparameter_always():
    # Given the shipped config (no algorithm): the default is passed, explicitly
    assert hyper(_doc())["algorithm"] == "hist_gradient_boosting"
    # Given an algorithm and its hyperparameters: both reach the job (the image checks the names)
    training = {**_doc()["training"], "algorithm": "lightgbm", "hyperparameters": {"num_leaves": 15}}
    params = hyper(_doc(training=training))
    assert (params["algorithm"], params["num_leaves"]) == ("lightgbm", "15")


def test_an_unknown_algorithm_or_one_among_the_hyperparameters_is_refused():
    training = _doc()["training"]
    # Given an algorithm the image does not have  Then the error lists the ones it has
    with pytest.raises(ConfigError, match=r"training\.algorithm.*'xgboost'.*'lightgbm'"):
        parse_config(_doc(training={**training, "algorithm": "catboost"}))
    # Given the algorithm among the hyperparameters  Then the error points at training.algorithm
    bad = {**training, "hyperparameters": {"algorithm": "xgboost"}}
    with pytest.raises(
        ConfigError, match=r"set training\.algorithm, not training\.hyperparameters\.algorithm"
    ):
        parse_config(_doc(training=bad))


def test_a_stored_config_from_before_the_demo_switches_went_still_parses():
    # Every config stored before carries serving: {fault_error_rate: 0.0, fault_latency_ms: 0}
    # (to_document wrote every field); a run in flight carries it in its payload too.
    old = {**_doc(), "serving": {"fault_error_rate": 0.0, "fault_latency_ms": 0}}
    assert parse_config(old) == parse_config(_doc())
    assert "serving" not in parse_config(old).to_document()


def test_a_demo_fault_switched_on_is_refused_saying_the_section_is_gone():
    with pytest.raises(
        ConfigError, match="the serving section .* was removed: a model version misbehaves only"
    ):
        parse_config({**_doc(), "serving": {"fault_error_rate": 0.5}})


def test_a_hyperparameter_of_the_workflows_own_prefix_is_refused():
    doc = _doc()
    doc["training"]["hyperparameters"] = {"max_iter": 10, "modelops_judge": True}
    with pytest.raises(ConfigError, match=r"\['modelops_judge'\]: the prefix modelops_ is reserved"):
        parse_config(doc)
