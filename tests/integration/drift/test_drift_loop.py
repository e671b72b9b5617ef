"""The drift loop against moto (with the local CloudWatch's EMF ingestion, statistics and alarm
evaluator): pods' histograms -> the drift monitor's PSI -> the drift alarm -> start_pipeline starts
one run with trigger `drift`, carrying the figures; a redelivered alarm event starts nothing new."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from model_server.baseline import LiveStats, make_baseline
from model_server.emf import stats_documents
from modelops.adapters.aws import client as cached_client
from modelops.adapters.cloudwatch import CloudWatchMetrics
from modelops.adapters.s3 import S3Objects
from modelops.adapters.store import StateStore
from modelops.config import load_config_file
from modelops.drift import parse_baseline, psi
from modelops.steps.drift import DriftTick, monitor
from modelops.steps.lock import release
from moto import mock_aws

from modelops_local import moto_cloudwatch_patch
from modelops_local.cloudwatch import AlarmEvaluator, ingest_emf_lines
from modelops_local.sample_data import CHURN_FEATURES
from tests.integration.workflow.harness import Context, load_handler
from tests.state_table import create_state_table

ROOT = Path(__file__).resolve().parents[3]
STACK, TABLE, BUCKET, PREFIX = "modelops", "modelops-state", "modelops-pipeline", "modelops-"
T0 = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)  # a period boundary
ARTIFACT_KEY = "models/churn/churn-v2/output/model.tar.gz"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, offline_aws: None) -> Iterator[None]:
    already = moto_cloudwatch_patch.is_applied()
    moto_cloudwatch_patch.apply()
    with mock_aws():
        for key, value in {
            "TABLE_NAME": TABLE,
            "STACK_NAME": STACK,
            "BUCKET_NAME": BUCKET,
            "ALARM_PREFIX": PREFIX,
            "METRIC_NAMESPACE": "ModelOps",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
        }.items():
            monkeypatch.setenv(key, value)
        cached_client.cache_clear()
        yield
    cached_client.cache_clear()
    if not already:
        moto_cloudwatch_patch.remove()


def _baseline(rng: np.random.Generator) -> dict[str, Any]:
    train = rng.uniform(0, 100, size=(1000, len(CHURN_FEATURES)))
    return make_baseline(
        features=train,
        feature_columns=CHURN_FEATURES,
        categorical_columns=[],
        task="binary_classification",
        predictions=rng.uniform(0, 1, size=200),
        classes=("0", "1"),
        n_holdout=200,
    )


def _tarball(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _serving_pods(
    baseline: dict[str, Any], rows: np.ndarray, answers: np.ndarray, at: datetime
) -> tuple[list[str], LiveStats]:
    """The EMF lines two stable pods print for `rows` (split between them), and the counts."""
    lines, reference = [], LiveStats(baseline, task="binary_classification")
    for part in np.array_split(np.arange(len(rows)), 2):
        pod = LiveStats(baseline, task="binary_classification")
        pod.observe(rows[part].tolist(), answers[part].tolist())
        reference.observe(rows[part].tolist(), answers[part].tolist())
        _, features, predictions = pod.drain()
        documents = stats_documents(
            namespace="ModelOps",
            model="churn",
            variant="stable",
            features=features,
            predictions=predictions,
            timestamp_ms=int(at.timestamp() * 1000),
        )
        lines += [json.dumps(doc) for doc in documents]
    return lines, reference


def test_shifted_traffic_raises_the_drift_alarm_and_starts_one_drift_run(aws):
    # Given the churn model with drift monitoring (5-minute period, PSI 0.2, 300 predictions)
    plain = load_config_file(ROOT / "models" / "churn-local.yaml")
    drift = plain.drift.model_copy(
        update={"enabled": True, "period_minutes": 5, "threshold": 0.2, "min_samples": 300}
    )
    config = plain.model_copy(update={"drift": drift})
    rng = np.random.default_rng(7)
    baseline = _baseline(rng)
    ddb, s3, cw = (boto3.client(s, region_name="us-east-1") for s in ("dynamodb", "s3", "cloudwatch"))
    create_state_table(ddb, TABLE)
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(
        Bucket=BUCKET, Key=ARTIFACT_KEY, Body=_tarball({"baseline.json": json.dumps(baseline).encode()})
    )
    store = StateStore(TABLE, ddb)
    store.put_model_document("churn", config.to_document())
    artifact = f"s3://{BUCKET}/{ARTIFACT_KEY}"
    store.put_doc(
        "churn",
        "CHAMPION",
        {
            "version": "2",
            "promoted_at": (T0 - timedelta(hours=1)).isoformat(),
            "baseline": {"artifact": artifact},
        },
    )
    metrics = CloudWatchMetrics(cw, namespace="ModelOps", alarm_prefix=PREFIX)
    assert f"{PREFIX}churn-drift" in metrics.put_model_alarms(config)

    # And 400 predictions in the window whose first feature shifted up by 60 (the others as trained)
    rows = rng.uniform(0, 100, size=(400, len(CHURN_FEATURES)))
    rows[:, 0] += 60.0
    answers = rng.uniform(0, 1, size=400)
    lines, reference = _serving_pods(baseline, rows, answers, T0 + timedelta(minutes=2))
    assert ingest_emf_lines(cw, lines) == len(lines)

    # When the monitor runs at the window's end
    tick = DriftTick(source="modelops.drift", model="churn")
    result = monitor(
        tick, store=store, objects=S3Objects(s3), metrics=metrics, now=(T0 + timedelta(minutes=5)).timestamp()
    )

    # Then CloudWatch gave back the pods' counts exactly, and the PSI is computed from them
    total, features, predictions = reference.drain()
    parsed = parse_baseline(baseline, source="baseline.json")
    expected = {name: psi(parsed.profile(name).shares, counts[1:].tolist()) for name, counts in features}
    assert result["samples"] == total == 400
    for name, value in expected.items():
        assert result["psi"][name] == pytest.approx(value, abs=1e-6)
    assert result["psi"]["prediction"] == pytest.approx(
        psi(parsed.prediction.shares, predictions[1:].tolist()), abs=1e-6
    )
    assert result["max_feature"] == "tenure_months" and result["max_psi"] > 1.0 and result["drifted"]
    assert all(result["psi"][f] < 0.2 for f in CHURN_FEATURES[1:])
    assert store.get_doc("churn", "DRIFT")["max_psi"] == result["max_psi"]

    # And the drift alarm goes to ALARM on the published figures
    events: list[dict[str, Any]] = []
    changes = AlarmEvaluator(cw, events.append).evaluate_once(T0 + timedelta(minutes=5, seconds=1))
    [change] = [c for c in changes if c.alarm_name == f"{PREFIX}churn-drift"]
    assert change.new_state == "ALARM"
    [event] = [e for e in events if e["detail"]["alarmName"] == f"{PREFIX}churn-drift"]

    # When its event reaches start_pipeline (twice: EventBridge delivers at least once)
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    machine = sfn.create_state_machine(
        name=f"{STACK}-retrain-and-rollout",
        definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
        roleArn="arn:aws:iam::123456789012:role/sfn",
    )["stateMachineArn"]
    topic = boto3.client("sns", region_name="us-east-1").create_topic(Name="modelops")["TopicArn"]
    start = load_handler("start_pipeline")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STATE_MACHINE_ARN", machine)
        mp.setenv("TOPIC_ARN", topic)
        first = start.handler(event, Context("start-pipeline"))
        again = start.handler(event, Context("start-pipeline"))

    # Then one run started, with trigger drift and the figures that raised the alarm (the second
    # delivery is refused as a duplicate or, within the same second while the run is RUNNING,
    # answered with the same execution, as StartExecution is idempotent for the same name and input)
    assert first["started"] and first["execution_name"].startswith("churn-drift-")
    assert again["execution_name"] == first["execution_name"]
    assert not again["started"] or again["execution_arn"] == first["execution_arn"]
    [execution] = sfn.list_executions(stateMachineArn=machine)["executions"]
    request = json.loads(sfn.describe_execution(executionArn=execution["executionArn"])["input"])
    assert request["trigger"] == "drift"
    assert request["drift"]["max_feature"] == "tenure_months"
    assert request["reason"].startswith("drift: PSI")

    # And when the drift run was coalesced behind a run holding the lock (AcquireLock stores its
    # request as PENDING), the holder's release starts the follow-up, which keeps the figures
    assert store.acquire_lock("churn", "other-run", 600).acquired
    store.put_doc("churn", "PENDING", request)
    recorder = _Recorder()
    released = release("churn", "other-run", store=store, executions=recorder)
    assert released["follow_up"] is not None
    [follow_up] = recorder.started
    assert follow_up["trigger"] == "queued" and follow_up["drift"]["max_feature"] == "tenure_months"


class _Recorder:
    def __init__(self) -> None:
        self.started: list[dict[str, Any]] = []

    def start(self, name: str, payload: str) -> str | None:
        self.started.append(json.loads(payload))
        return f"arn:{name}"


def test_a_model_without_drift_monitoring_or_baseline_is_skipped(aws):
    ddb, s3, cw = (boto3.client(s, region_name="us-east-1") for s in ("dynamodb", "s3", "cloudwatch"))
    create_state_table(ddb, TABLE)
    store = StateStore(TABLE, ddb)
    config = load_config_file(ROOT / "models" / "churn-local.yaml")
    store.put_model_document("churn", config.to_document())
    metrics = CloudWatchMetrics(cw, namespace="ModelOps", alarm_prefix=PREFIX)
    tick = DriftTick(source="modelops.drift", model="churn")
    assert monitor(tick, store=store, objects=S3Objects(s3), metrics=metrics)["reason"] == (
        "drift monitoring is off for churn"
    )
    enabled = config.model_copy(update={"drift": config.drift.model_copy(update={"enabled": True})})
    store.put_model_document("churn", enabled.to_document())
    store.put_doc(
        "churn", "CHAMPION", {"version": "1", "baseline": {"artifact": None, "note": "no baseline.json"}}
    )
    assert "no baseline.json" in monitor(tick, store=store, objects=S3Objects(s3), metrics=metrics)["reason"]


def test_model_put_creates_updates_and_deletes_the_drift_alarm(aws):
    # Given the churn model with drift monitoring on
    cw = boto3.client("cloudwatch", region_name="us-east-1")
    metrics = CloudWatchMetrics(cw, namespace="ModelOps", alarm_prefix=PREFIX)
    plain = load_config_file(ROOT / "models" / "churn-local.yaml")
    drift = plain.drift.model_copy(
        update={"enabled": True, "period_minutes": 15, "threshold": 0.3, "min_samples": 800}
    )

    # When its alarms are put
    names = metrics.put_model_alarms(plain.model_copy(update={"drift": drift}))

    # Then the drift alarm judges the largest PSI over the period, counted over at least min_samples
    assert names[-1] == f"{PREFIX}churn-drift"
    [alarm] = cw.describe_alarms(AlarmNames=[f"{PREFIX}churn-drift"])["MetricAlarms"]
    assert (alarm["Threshold"], alarm["EvaluationPeriods"], alarm["TreatMissingData"]) == (
        0.3,
        1,
        "notBreaching",
    )
    queries = {q["Id"]: q for q in alarm["Metrics"]}
    assert queries["drift"]["Expression"] == "IF(n >= 800, psi)"
    assert queries["psi"]["MetricStat"]["Period"] == 900
    assert queries["psi"]["MetricStat"]["Metric"]["MetricName"] == "DriftMaxPSI"
    # And with drift off again it is deleted, and deleting what is not there is fine
    assert f"{PREFIX}churn-drift" not in metrics.put_model_alarms(plain)
    assert cw.describe_alarms(AlarmNames=[f"{PREFIX}churn-drift"])["MetricAlarms"] == []
    metrics.put_model_alarms(plain)
