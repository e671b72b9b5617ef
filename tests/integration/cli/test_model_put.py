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
BUCKET = "pipeline-bucket"


@pytest.fixture
def stack(monkeypatch, offline_aws):
    client.cache_clear()
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        create_state_table(ddb, "t")
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)
        boto3.client("scheduler", region_name="us-east-1").create_schedule_group(Name="modelops")
        info = {
            "stack_name": "modelops",
            "table": "t",
            "bucket": BUCKET,
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


def _script_config(tmp_path: Path, source: str) -> Path:
    config = tmp_path / "tiers.yaml"
    config.write_text(
        (ROOT / "examples" / "script_mode" / "tiers.yaml")
        .read_text()
        .replace("source: .", f"source: {source}")
    )
    return config


def test_a_local_script_folder_is_uploaded_once_per_content_and_stored_as_its_s3_uri(stack, tmp_path):
    import shutil

    from modelops.config import parse_config
    from modelops.script_code import pack_folder

    s3 = boto3.client("s3", region_name="us-east-1")
    shutil.copytree(ROOT / "examples" / "script_mode", tmp_path / "team" / "code")
    config = _script_config(tmp_path / "team", "code")  # relative to the config file's folder
    # When the config is put twice
    assert main(["model", "put", str(config)]) == 0
    assert main(["model", "put", str(config)]) == 0
    # Then one object, the folder's deterministic archive, under code/<model>/<sha256>.tar.gz
    archive = pack_folder(tmp_path / "team" / "code", entry_point="train.py")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="code/")["Contents"]]
    assert keys == [f"code/tiers/{archive.sha256}.tar.gz"]
    assert s3.get_object(Bucket=BUCKET, Key=keys[0])["Body"].read() == archive.data
    # And the stored config names it
    from modelops.adapters.store import StateStore

    stored = StateStore("t", client("dynamodb")).get_doc("tiers", "CONFIG")
    script = parse_config(stored).training.script
    assert script is not None and (script.entry_point, script.source) == (
        "train.py",
        f"s3://{BUCKET}/{keys[0]}",
    )


def test_a_script_folder_without_its_entry_point_uploads_and_stores_nothing(stack, tmp_path, capsys):
    s3 = boto3.client("s3", region_name="us-east-1")
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "fit.py").write_text("")

    assert main(["model", "put", str(_script_config(tmp_path, "code"))]) == 1

    assert "training.script.entry_point: 'train.py' is not in" in capsys.readouterr().err
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)
    assert boto3.client("dynamodb", region_name="us-east-1").scan(TableName="t")["Items"] == []
