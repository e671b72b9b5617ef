from __future__ import annotations

import pytest
from modelops import wiring
from moto import mock_aws

from modelops_local.moto_patches import MotoPatches
from tests.integration.fake_kube import FakeKube, deployment
from tests.integration.workflow.harness import Harness

OLD = "123456789012.dkr.ecr.us-east-1.amazonaws.com/modelops-serving@sha256:" + "1" * 64
#: A Retry's wait between attempts, at this tier, is this share of the interval the definition gives
#: (moto's interpreter really sleeps IntervalSeconds x BackoffRate^n, jittered: up to a minute for a
#: rollback retried five times). Which errors are retried, how often, with what backoff and to what
#: outcome is the real definition's in moto's interpreter; the real intervals are proven by reading
#: the definition (tests/unit/domain/test_asl_fault_policies.py) and waited out at the e2e tier.
RETRY_WAIT_SCALE = 0.01


@pytest.fixture
def kube() -> FakeKube:
    fake = FakeKube()
    fake.add(deployment("churn-stable", "stable", OLD, 3))
    fake.add(deployment("churn-canary", "canary", OLD, 0))
    return fake


@pytest.fixture
def harness(kube, monkeypatch, offline_aws):
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    with (
        mock_aws(config={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}),
        MotoPatches() as patches,
    ):
        patches.parse_definitions_once()  # AWS compiles a definition once; moto would per execution
        patches.memoize_timestamp_parsing()  # botocore's dateutil parsing: half of a 1,000-key listing
        patches.reuse_interpreter_clients()  # moto's interpreter: a new client per Task otherwise
        patches.task_failure_cause()  # SendTaskFailure's cause reaches the task's error, as on AWS
        patches.scale_retry_waits(RETRY_WAIT_SCALE)
        harness = Harness(kube, monkeypatch, patches)
        with wiring.installed(harness.services()):
            yield harness
