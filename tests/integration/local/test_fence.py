"""The local runtime is fenced off from the process that runs it: starting `LocalCloud`, invoking a
function through it and stopping it leaves `os.environ` and the product's cached boto3 clients as
they were. The functions reach the local AWS endpoint through their own (worker) environment."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from modelops.adapters import aws
from modelops.config import load_config_file

from modelops_local.cloud import LocalCloud, LocalSettings
from modelops_local.demo import DEMO_CONFIG

pytestmark = pytest.mark.timeout(300)


def environment() -> dict[str, str]:
    return dict(os.environ)


def test_a_running_local_cloud_leaves_the_process_environment_and_the_client_cache_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a process pointed at "real" AWS, with a product client already cached
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("MOTO_PORT", raising=False)
    aws.client.cache_clear()
    cached_s3 = aws.client("s3")
    before = environment()
    cache_before = aws.client.cached_services()

    # When a local runtime starts, takes a model and a dataset, and runs one of its functions
    cloud = LocalCloud(LocalSettings(state_dir=tmp_path / "state"))
    try:
        cloud.start()
        config = load_config_file(DEMO_CONFIG)
        cloud.put_model(config, base_dir=DEMO_CONFIG.parent)
        request = {
            "model": config.name,
            "trigger": "manual",
            "dataset": {"bucket": None, "key": f"incoming/{config.name}/fence.csv", "version_id": None},
            "requested_at": "2026-11-22T10:00:00+00:00",
            "reason": "fence",
            "idempotency_key": "manual|fence|1",
        }
        assert cloud.stack is not None
        response = cloud.client("lambda").invoke(
            FunctionName=cloud.stack.physical_id("ResolveRequestFunction"),
            Payload=json.dumps({"request": request, "execution_name": "fence-1"}),
        )
        payload = json.loads(response["Payload"].read())

        # Then the function read the model and the bootstrap's training image from the local
        # endpoint (its worker's environment carries it)...
        assert "FunctionError" not in response, payload
        image = payload["training"]["AlgorithmSpecification"]["TrainingImage"]
        assert payload["model"] == config.name and image.startswith(cloud.info.training_repository_uri)
        # ...while this process's environment and the product's clients stayed as they were
        assert environment() == before
        assert aws.client.cached_services() == cache_before and aws.client("s3") is cached_s3
        assert cached_s3.meta.endpoint_url == "https://s3.eu-west-1.amazonaws.com"
    finally:
        cloud.stop()

    # And after stopping, nothing was there to put back
    assert environment() == before
    assert aws.client("s3") is cached_s3
