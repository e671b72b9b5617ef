"""`modelops status / approve / reject / promote / abort / rollback` against moto (the stack's table
and STS): what each prints, and that each refuses clearly, exit 1, changing nothing, when the
model's state does not allow it. The commands against a running workflow:
tests/integration/workflow/test_rollout_control.py."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from modelops.adapters.aws import client
from modelops.adapters.store import StateStore
from modelops.config import load_config_file
from moto import mock_aws

from modelops_cli.main import main
from tests.state_table import create_state_table

ROOT = Path(__file__).resolve().parents[3]
RUN = "churn-s3-0123456789abcdef"


@pytest.fixture
def store(monkeypatch, offline_aws):
    client.cache_clear()
    # The interpreter's backend answers SendTask* on an unknown token InvalidToken, as AWS does
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        create_state_table(ddb, "t")
        info = {
            "stack_name": "modelops",
            "table": "t",
            "bucket": "b",
            "state_machine_arn": "arn:aws:states:us-east-1:123456789012:stateMachine:m",
            "start_function_arn": "arn:aws:lambda:us-east-1:123456789012:function:start",
            "schedule_group": "modelops",
            "scheduler_role_arn": "arn:aws:iam::123456789012:role/s",
            "alarm_prefix": "modelops-",
            "metric_namespace": "ModelOps",
        }
        boto3.client("ssm", region_name="us-east-1").put_parameter(
            Name="/modelops/modelops/stack", Type="String", Value=json.dumps(info)
        )
        state = StateStore("t", ddb)
        state.put_model_document("churn", load_config_file(ROOT / "models" / "churn.yaml").to_document())
        yield state
    client.cache_clear()


def rollout_in(store: StateStore, phase: str, **fields) -> dict:
    store.acquire_lock("churn", RUN, 3600)
    return store.update_rollout("churn", RUN, {"phase": phase, "task_token": "expired-token", **fields})


def test_status_tells_what_to_run_while_a_version_waits_for_approval(store, capsys):
    rollout_in(
        store,
        "approval",
        version="7",
        steps_total=3,
        traffic_steps=[
            {
                "index": 2,
                "router": "replicas",
                "weight": 50,
                "reached": 50.0,
                "canary_pods": 3,
                "stable_pods": 3,
            }
        ],
        wait_deadline=4_102_444_800,  # 2100-01-01
    )
    assert main(["status", "--model", "churn"]) == 0
    out = capsys.readouterr().out
    assert f"rollout:  approval (run {RUN}, version 7): waiting for a person's approval" in out
    assert "canary:   step 3 of 3: 50% asked, 50% reached (3 of 6 pods)" in out
    assert "approval wait ends 2100-01-01T00:00:00+00:00 (in " in out
    assert (
        "`modelops --stack modelops approve --model churn` promotes it, "
        "`modelops --stack modelops reject --model churn` rolls it back" in out
    )


@pytest.mark.parametrize(
    ("phase", "argv", "message"),
    [
        ("bake", ["approve"], "is in phase bake: approve is possible only while it waits for approval"),
        ("watch", ["reject"], "is in phase watch: reject is possible only while it waits for approval"),
        ("watch", ["promote"], "is in phase watch: it is already promoted (watch window)"),
        ("rollback", ["abort"], "is in phase rollback: it is already being rolled back"),
        ("rollback", ["rollback"], "is in phase rollback: it is already being rolled back"),
        # the rollout says it waits, but Step Functions no longer knows its token
        (
            "approval",
            ["approve"],
            "the approval wait of run churn-s3-0123456789abcdef of churn already ended",
        ),
        ("bake", ["promote"], "the bake wait of run churn-s3-0123456789abcdef of churn already ended"),
    ],
)
def test_a_command_the_phase_does_not_allow_is_refused_and_changes_nothing(
    store, capsys, phase, argv, message
):
    before = rollout_in(store, phase)
    assert main([*argv, "--model", "churn"]) == 1
    assert message in capsys.readouterr().err
    assert store.get_rollout("churn") == before and store.lock_holder("churn")[0] == RUN


def test_abort_outside_a_wait_is_recorded_for_the_runs_next_step(store, capsys):
    rollout_in(store, "canary")
    assert main(["abort", "--model", "churn", "--reason", "wrong data"]) == 0
    assert "the workflow rolls back (at its next step)" in capsys.readouterr().out
    abort = store.get_rollout("churn")["abort"]
    assert abort["by"] == "arn:aws:sts::123456789012:user/moto" and abort["reason"] == "wrong data"
    # Asked twice: refused, the first request kept
    assert main(["abort", "--model", "churn"]) == 1
    assert "abort already requested" in capsys.readouterr().err
    assert store.get_rollout("churn")["abort"] == abort


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["rollback", "--model", "churn", "--now"], "--now goes with --to VERSION"),
        (
            ["rollback", "--model", "churn", "--to", "1", "--now"],
            "--now skips the canary: say why with --reason",
        ),
        (["rollback", "--model", "fraud", "--to", "1"], "model 'fraud' is not configured"),
        (["rollback", "--model", "churn", "--to", "1"], "version 1 of churn is unknown: no run recorded it"),
        (["approve", "--model", "churn"], "no rollout of churn in progress: nothing to approve"),
    ],
)
def test_rollback_to_and_commands_without_a_run_are_refused(store, capsys, argv, message):
    assert main(argv) == 1
    assert message in capsys.readouterr().err
    assert store.get_rollout("churn") is None and store.lock_holder("churn") is None
