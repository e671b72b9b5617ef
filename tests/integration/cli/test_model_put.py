"""`modelops model put` against moto: validates first, then stores, alarms and schedule, idempotently."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from modelops.adapters.aws import client
from moto import mock_aws

from modelops_cli.main import main
from tests.state_table import create_state_table

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def stack(monkeypatch, offline_aws):
    client.cache_clear()
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        create_state_table(ddb, "t")
        boto3.client("scheduler", region_name="us-east-1").create_schedule_group(Name="modelops")
        info = {
            "stack_name": "modelops",
            "table": "t",
            "bucket": "b",
            "state_machine_arn": "arn:sm",
            "start_function_arn": "arn:aws:lambda:us-east-1:123456789012:function:start",
            "schedule_group": "modelops",
            "scheduler_role_arn": "arn:aws:iam::123456789012:role/s",
            "alarm_prefix": "modelops-",
            "metric_namespace": "ModelOps",
        }
        boto3.client("ssm", region_name="us-east-1").put_parameter(
            Name="/modelops/modelops/stack", Type="String", Value=json.dumps(info)
        )
        yield
    client.cache_clear()


def test_put_twice_is_idempotent(stack, capsys):
    # When the same file is put twice
    assert main(["model", "put", str(ROOT / "models" / "churn.yaml")]) == 0
    assert main(["model", "put", str(ROOT / "models" / "churn.yaml")]) == 0
    # Then one config, four alarms, one schedule (created, then updated)
    out = capsys.readouterr().out
    assert "schedule created" in out and "schedule updated" in out
    alarms = boto3.client("cloudwatch", region_name="us-east-1").describe_alarms(
        AlarmNamePrefix="modelops-churn-"
    )
    assert sorted(a["AlarmName"] for a in alarms["MetricAlarms"]) == [
        "modelops-churn-canary-error-rate",
        "modelops-churn-canary-latency-p99",
        "modelops-churn-stable-error-rate",
        "modelops-churn-stable-latency-p99",
    ]
    schedules = boto3.client("scheduler", region_name="us-east-1").list_schedules(GroupName="modelops")[
        "Schedules"
    ]
    assert [s["Name"] for s in schedules] == ["retrain-churn"]
    target = boto3.client("scheduler", region_name="us-east-1").get_schedule(
        Name="retrain-churn", GroupName="modelops"
    )
    assert "<aws.scheduler.scheduled-time>" in target["Target"]["Input"]


def test_invalid_file_changes_nothing(stack, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        (ROOT / "models" / "churn.yaml").read_text().replace("bake_seconds: 300", "bake_seconds: -5")
    )
    assert main(["model", "put", str(bad)]) == 1
    assert "canary.bake_seconds" in capsys.readouterr().err
    assert boto3.client("cloudwatch", region_name="us-east-1").describe_alarms()["MetricAlarms"] == []


def test_unknown_stack_says_what_to_do(stack, capsys):
    assert main(["--stack", "nope", "status", "--model", "churn"]) == 1
    assert "sam deploy --guided" in capsys.readouterr().err
