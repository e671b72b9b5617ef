"""The container contract's names, checked against the sagemaker-training toolkit's own layout."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from model_server.contract import ContractError, container_paths, serve_settings


def test_paths_follow_sagemaker_base_dir(tmp_path):
    # Given a base directory outside a container
    paths = container_paths({"SAGEMAKER_BASE_DIR": str(tmp_path)})

    # Then every contract path sits under it
    assert paths.hyperparameters_file == tmp_path / "input/config/hyperparameters.json"
    assert paths.input_data_config_file == tmp_path / "input/config/inputdataconfig.json"
    assert paths.resource_config_file == tmp_path / "input/config/resourceconfig.json"
    assert paths.channel_dir("train") == tmp_path / "input/data/train"
    assert paths.model_dir == tmp_path / "model"
    assert paths.failure_file == tmp_path / "output/failure"
    assert paths.output_data_dir == tmp_path / "output/data"


def test_defaults_are_the_container_paths():
    assert container_paths({}).model_dir == Path("/opt/ml/model")
    assert container_paths({"SM_CHANNEL_TRAIN": "/data/t"}).channel_dir("train") == Path("/data/t")


def test_paths_agree_with_the_sagemaker_training_toolkit(tmp_path):
    # Given the toolkit's layout for the same SAGEMAKER_BASE_DIR (in a child process: the toolkit
    # computes its paths from the environment once, at import time)
    probe = (
        "import json; from sagemaker_training import environment as e;"
        "print(json.dumps({'model': e.model_dir, 'output_data': e.output_data_dir,"
        "'hyper': e.hyperparameters_file_dir, 'inputdata': e.input_data_config_file_dir,"
        "'resource': e.resource_config_file_dir, 'train': e.channel_path('train'),"
        "'failure': e.output_dir + '/failure'}))"
    )
    env = {"SAGEMAKER_BASE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    toolkit = json.loads(
        subprocess.run(
            [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True, timeout=60
        ).stdout
    )

    # Then ours is the same
    ours = container_paths(env)
    assert {
        "model": str(ours.model_dir),
        "output_data": str(ours.output_data_dir),
        "hyper": str(ours.hyperparameters_file),
        "inputdata": str(ours.input_data_config_file),
        "resource": str(ours.resource_config_file),
        "train": str(ours.channel_dir("train")),
        "failure": str(ours.failure_file),
    } == toolkit


def test_serve_settings_read_sagemaker_then_port():
    assert serve_settings({}).port == 8080
    assert serve_settings({"PORT": "9000"}).port == 9000
    assert serve_settings({"PORT": "9000", "SAGEMAKER_BIND_TO_PORT": "8081"}).port == 8081
    assert serve_settings({}).host == "0.0.0.0"
    settings = serve_settings(
        {"MODELOPS_MODEL": "churn", "MODELOPS_VARIANT": "canary", "MODELOPS_VERSION": "4"}
    )
    assert (settings.model, settings.variant, settings.version) == ("churn", "canary", "4")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PORT": "http"}, "PORT='http' is not an integer"),
        ({"EMF_FLUSH_SECONDS": "0"}, "EMF_FLUSH_SECONDS=0.0 must be > 0"),
    ],
)
def test_bad_serve_settings_name_the_variable(env, message):
    with pytest.raises(ContractError, match=message):
        serve_settings(env)
