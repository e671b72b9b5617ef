from __future__ import annotations

import pytest
from moto import mock_aws

from tests.integration.fake_kube import FakeKube, deployment
from tests.integration.workflow.harness import Harness

OLD = "123456789012.dkr.ecr.us-east-1.amazonaws.com/modelops-serving@sha256:" + "1" * 64


@pytest.fixture
def kube() -> FakeKube:
    fake = FakeKube()
    fake.add(deployment("churn-stable", "stable", OLD, 3))
    fake.add(deployment("churn-canary", "canary", OLD, 0))
    return fake


@pytest.fixture
def harness(kube, monkeypatch):
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}):
        yield Harness(kube, monkeypatch)
