"""Every example model config in models/examples/ works as documented: it validates, its dataset
passes the workflow's validator, the training job the workflow would start (the real request
builder's hyperparameters) trains with the built-in `train`, is judged on its objective metric,
and the served answers have the task's shape. The README's table links each one."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from model_server.artifact import load_model
from model_server.contract import container_paths, serve_settings
from model_server.emf import RequestMetrics
from model_server.server import ModelService
from model_server.train import main
from modelops.config import ModelConfig, load_config_file
from modelops.dataset import validate_csv
from modelops.run import DatasetObject
from modelops.steps.training import training_job_request

from modelops_local.sample_data import generate_churn_csv
from tests.multiclass_data import generate_tier_csv
from tests.regression_data import generate_price_csv

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "models" / "examples"
# Data shaped like each example's (its columns, labels, empty cells), 1,200 rows.
DATA: dict[str, Callable[[Path], Path]] = {
    "churn-random-forest.yaml": lambda path: generate_churn_csv(path, 1200, seed=3),
    "tiers-lightgbm.yaml": lambda path: generate_tier_csv(path, 1200, seed=3),
    "prices-xgboost.yaml": lambda path: generate_price_csv(path, 1200, seed=3),
    "prices-linear.yaml": lambda path: generate_price_csv(path, 1200, seed=3),
}


def test_every_example_has_data_here_and_a_row_in_the_readme():
    assert sorted(p.name for p in EXAMPLES.glob("*.yaml")) == sorted(DATA)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in DATA:
        assert f"models/examples/{name}" in readme, f"README does not link models/examples/{name}"


def _hyperparameters(config: ModelConfig) -> dict[str, str]:
    request = training_job_request(
        config,
        run_id="run-1",
        stack="modelops",
        bucket="bucket",
        dataset=DatasetObject(bucket="bucket", key=f"incoming/{config.name}/data.csv"),
        champion=None,
        role_arn="arn:aws:iam::123456789012:role/training",
        default_image="123456789012.dkr.ecr.us-east-1.amazonaws.com/modelops-training:latest",
    )
    hyper: dict[str, str] = request["HyperParameters"]
    return hyper


@pytest.mark.parametrize("example", sorted(DATA))
def test_an_example_config_trains_is_judged_and_answers_as_its_task_says(tmp_path, example):
    # Given the example config and a dataset of its shape
    config = load_config_file(EXAMPLES / example)
    base = tmp_path / "ml"
    data = DATA[example](base / "input" / "data" / "train" / "data.csv")
    report = validate_csv(data.read_bytes(), config.data.schema_, name="data.csv", task=config.data.task)
    (base / "input" / "config").mkdir(parents=True)
    (base / "input" / "config" / "hyperparameters.json").write_text(json.dumps(_hyperparameters(config)))

    # When the workflow's training job runs the built-in train on it
    env = {"SAGEMAKER_BASE_DIR": str(base), "TRAINING_JOB_NAME": "job"}
    assert main(env) == 0, container_paths(env).failure_file.read_text()

    # Then the model is the configured algorithm, judged on the configured metric
    model_dir = container_paths(env).model_dir
    evaluation = json.loads((model_dir / "evaluation.json").read_text())
    assert evaluation["metric"] == config.training.objective.metric
    assert load_model(model_dir).metadata.algorithm == config.training.algorithm
    # And it answers the validator's smoke rows (nulls and text included) in the task's shape
    settings = serve_settings({"MODELOPS_MODEL": config.name, "MODELOPS_VERSION": "1"})
    service = ModelService(
        model_dir,
        settings,
        RequestMetrics(namespace="ModelOps", model=config.name, variant="canary", version="1"),
    )
    service.load()
    body = json.dumps({"instances": report.smoke_sample}).encode()
    status, doc = asyncio.run(service.invoke(body, "application/json"))
    assert status == 200, doc
    assert len(doc["predictions"]) == len(report.smoke_sample)
    if config.data.task == "regression":
        assert all(isinstance(p, float) for p in doc["predictions"])
        assert "classes" not in doc
    else:
        assert set(doc["predictions"]) <= set(doc["classes"])
        assert doc["classes"] == sorted(report.label_distribution)
