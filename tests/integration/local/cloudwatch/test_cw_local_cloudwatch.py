"""The local CloudWatch against moto in-process: pods' EMF lines become metrics that GetMetricData,
the product's alarms and the alarm evaluator see, and alarm state changes become EventBridge events."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from modelops.adapters.cloudwatch import CloudWatchMetrics
from modelops.canary import parse_alarm_name
from modelops.config import load_config_file, parse_config
from moto import mock_aws
from moto.moto_server.threaded_moto_server import ThreadedMotoServer

from modelops_local import moto_cloudwatch_patch
from modelops_local.cloudwatch import AlarmEvaluator, ingest_emf_lines

ROOT = Path(__file__).resolve().parents[4]
T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)  # a period boundary
PREFIX = "modelops-"


@pytest.fixture
def cw(monkeypatch: pytest.MonkeyPatch, offline_aws: None) -> Iterator[Any]:
    """A CloudWatch client on in-process moto with our patch (removed afterwards if we applied it)."""
    already = moto_cloudwatch_patch.is_applied()
    moto_cloudwatch_patch.apply()
    with mock_aws():
        yield boto3.client("cloudwatch", region_name="us-east-1")
    if not already:
        moto_cloudwatch_patch.remove()


def pod_line(variant: str, at: datetime, *, requests: int, errors: int, latency_ms: list[float]) -> str:
    """One EMF line as a serving pod prints it: per-variant metrics plus a per-version dimension set."""
    return json.dumps(
        {
            "_aws": {
                "Timestamp": int(at.timestamp() * 1000),
                "CloudWatchMetrics": [
                    {
                        "Namespace": "ModelOps",
                        "Dimensions": [["Model", "Variant"], ["Model", "Variant", "Version"]],
                        "Metrics": [
                            {"Name": "Requests", "Unit": "Count", "StorageResolution": 1},
                            {"Name": "Errors", "Unit": "Count", "StorageResolution": 1},
                            {"Name": "Latency", "Unit": "Milliseconds", "StorageResolution": 1},
                        ],
                    }
                ],
            },
            "Model": "churn",
            "Variant": variant,
            "Version": "7",
            "Requests": requests,
            "Errors": errors,
            "Latency": latency_ms,
        }
    )


def traffic(
    cw: Any, variant: str, start: datetime, periods: int, *, errors: int, latency_ms: float = 20.0
) -> None:
    """Ten requests per 10 s period for `periods` periods, `errors` of them failing."""
    lines = [
        pod_line(
            variant,
            start + timedelta(seconds=10 * i + 3),
            requests=10,
            errors=errors,
            latency_ms=[latency_ms] * 10,
        )
        for i in range(periods)
    ]
    assert ingest_emf_lines(cw, ["INFO uvicorn started", *lines]) == 6 * periods


def states(cw: Any) -> dict[str, str]:
    return {
        a["AlarmName"]: a["StateValue"] for a in cw.describe_alarms(AlarmNamePrefix=PREFIX)["MetricAlarms"]
    }


def dims(variant: str) -> list[dict[str, str]]:
    return [{"Name": "Model", "Value": "churn"}, {"Name": "Variant", "Value": variant}]


def stat(qid: str, name: str, statistic: str, *, returned: bool = False) -> dict[str, Any]:
    """A MetricDataQuery on one canary metric over 60 s periods."""
    metric = {"Namespace": "ModelOps", "MetricName": name, "Dimensions": dims("canary")}
    return {
        "Id": qid,
        "MetricStat": {"Metric": metric, "Period": 60, "Stat": statistic},
        "ReturnData": returned,
    }


def test_emf_metrics_answer_get_metric_data_with_p99_and_metric_math(cw):
    # Given one pod's EMF lines: 100 latencies 1..100 ms and 10 requests / 3 errors in one period
    line = pod_line(
        "canary",
        T0 + timedelta(seconds=2),
        requests=10,
        errors=3,
        latency_ms=[float(v) for v in range(1, 101)],
    )
    ingest_emf_lines(cw, [line, '{not json but mentions "_aws"}'])
    # When p50/p99 and the error percentage are asked for through boto3
    response = cw.get_metric_data(
        MetricDataQueries=[
            stat("p99", "Latency", "p99", returned=True),
            stat("p50", "Latency", "p50", returned=True),
            stat("m_req", "Requests", "Sum"),
            stat("m_err", "Errors", "Sum"),
            {"Id": "pct", "Expression": "100 * m_err / m_req", "Label": "error %"},
        ],
        StartTime=T0,
        EndTime=T0 + timedelta(minutes=1),
    )
    # Then the percentiles are nearest-rank and the expression is computed per period
    results = {r["Id"]: r for r in response["MetricDataResults"]}
    assert results["p99"]["Values"] == [99.0] and results["p50"]["Values"] == [50.0]
    assert results["pct"]["Values"] == [30.0] and results["pct"]["Label"] == "error %"
    assert results["pct"]["Timestamps"] == [T0]
    # And moto's own GetMetricStatistics sees the same datums
    stats = cw.get_metric_statistics(
        Namespace="ModelOps", MetricName="Requests", Dimensions=dims("canary"),
        StartTime=T0, EndTime=T0 + timedelta(minutes=1), Period=60, Statistics=["Sum"],
    )  # fmt: skip
    assert [p["Sum"] for p in stats["Datapoints"]] == [20.0]  # both dimension sets match the filter


def test_invalid_queries_and_alarms_are_rejected_like_cloudwatch(cw):
    # Given a period CloudWatch does not accept
    query = {
        "Id": "q",
        "MetricStat": {
            "Metric": {"Namespace": "ModelOps", "MetricName": "Requests"},
            "Period": 45,
            "Stat": "Sum",
        },
    }
    # When queried  Then a ValidationError names it
    with pytest.raises(ClientError, match="Period 45 is invalid"):
        cw.get_metric_data(MetricDataQueries=[query], StartTime=T0, EndTime=T0 + timedelta(minutes=5))
    # And an alarm on an expression the evaluator cannot evaluate is refused at PutMetricAlarm
    with pytest.raises(ClientError, match="function RATE is not supported"):
        cw.put_metric_alarm(
            AlarmName="bad", ComparisonOperator="GreaterThanThreshold", Threshold=1, EvaluationPeriods=1,
            Metrics=[
                {"Id": "e", "Expression": "RATE(m)", "ReturnData": True},
                {"Id": "m", "MetricStat": {"Metric": {"Namespace": "N", "MetricName": "M"}, "Period": 60, "Stat": "Sum"}, "ReturnData": False},
            ],
        )  # fmt: skip


def test_the_products_alarms_fire_on_canary_errors_and_latency(cw):
    # Given the churn model's alarms as `modelops model put` creates them, with 10 s periods
    doc = load_config_file(ROOT / "models" / "churn.yaml").to_document()
    doc["alarms"]["period_seconds"] = 10
    config = parse_config(doc)
    names = CloudWatchMetrics(cw, namespace="ModelOps", alarm_prefix=PREFIX).put_model_alarms(config)
    # Then every alarm starts INSUFFICIENT_DATA, as in CloudWatch
    assert set(states(cw).values()) == {"INSUFFICIENT_DATA"} and len(names) == 4
    events: list[dict[str, Any]] = []
    evaluator = AlarmEvaluator(cw, events.append, clock=lambda: T0.timestamp())

    # When both variants serve cleanly for 3 periods and the alarms are evaluated
    traffic(cw, "stable", T0, 6, errors=0)
    traffic(cw, "canary", T0, 3, errors=0)
    evaluator.evaluate_once(T0 + timedelta(seconds=30))
    # Then all four go OK, each with a state-change event
    assert set(states(cw).values()) == {"OK"}
    assert sorted(e["detail"]["alarmName"] for e in events) == sorted(names)

    # When the canary answers 4 errors in 10 with a 1500 ms p99 for 2 periods
    events.clear()
    traffic(cw, "canary", T0 + timedelta(seconds=30), 2, errors=4, latency_ms=1500.0)
    half_way = evaluator.evaluate_once(T0 + timedelta(seconds=45))
    # Then one bad period is not enough (2 of 3)...
    assert half_way == []
    changes = evaluator.evaluate_once(T0 + timedelta(seconds=50.5))
    # ...and the second fires both canary alarms, not the stable ones
    assert {c.alarm_name: c.new_state for c in changes} == {
        "modelops-churn-canary-error-rate": "ALARM",
        "modelops-churn-canary-latency-p99": "ALARM",
    }
    assert states(cw)["modelops-churn-stable-error-rate"] == "OK"
    error_event = next(e for e in events if e["detail"]["alarmName"].endswith("canary-error-rate"))
    assert error_event["detail"]["state"]["reason"] == (
        "Threshold Crossed: 2 out of the last 3 datapoints [0.4 (22/11/26 10:00:40), 0.4 (22/11/26 10:00:30)] "
        "were greater than the threshold (0.05) (minimum 2 datapoints for OK -> ALARM transition)."
    )
    assert error_event["detail"]["previousState"]["value"] == "OK"
    assert error_event["resources"] == [
        "arn:aws:cloudwatch:us-east-1:123456789012:alarm:modelops-churn-canary-error-rate"
    ]
    # And on_alarm's parser recognises the event as the churn canary's error-rate alarm
    assert parse_alarm_name(error_event["detail"]["alarmName"], PREFIX) == ("churn", "canary", "error-rate")
    # And the rollout's alarm snapshot (the product adapter) sees them in ALARM
    snapshot = CloudWatchMetrics(cw, namespace="ModelOps", alarm_prefix=PREFIX).alarm_states("churn")
    assert {a.name for a in snapshot if a.state == "ALARM"} == {
        "modelops-churn-canary-error-rate",
        "modelops-churn-canary-latency-p99",
    }

    # When the canary is rolled back (no more canary data)
    events.clear()
    evaluator.evaluate_once(T0 + timedelta(seconds=80))
    # Then the bad periods still in the evaluation range keep it in ALARM (2 real + 1 filled)...
    assert states(cw)["modelops-churn-canary-error-rate"] == "ALARM"
    evaluator.evaluate_once(T0 + timedelta(seconds=100))
    # ...until they leave it: missing data counts as not breaching and the alarms clear
    assert states(cw)["modelops-churn-canary-error-rate"] == "OK"
    assert {e["detail"]["state"]["value"] for e in events} == {"OK"}


def test_plain_and_math_alarms_transition_with_history(cw):
    # Given a plain Errors Sum alarm and a metric-math error-rate alarm on the canary (1 of 1, 10 s)
    common = {
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        "EvaluationPeriods": 1,
        "DatapointsToAlarm": 1,
    }
    cw.put_metric_alarm(
        AlarmName="modelops-errors", Namespace="ModelOps", MetricName="Errors", Dimensions=dims("canary"),
        Statistic="Sum", Period=10, Threshold=3, **common,
    )  # fmt: skip
    cw.put_metric_alarm(
        AlarmName="modelops-rate", Threshold=0.25, **common,
        Metrics=[
            {"Id": "rate", "Expression": "m_err / m_req", "ReturnData": True},
            {"Id": "m_req", "MetricStat": {"Metric": {"Namespace": "ModelOps", "MetricName": "Requests", "Dimensions": dims("canary")}, "Period": 10, "Stat": "Sum"}, "ReturnData": False},
            {"Id": "m_err", "MetricStat": {"Metric": {"Namespace": "ModelOps", "MetricName": "Errors", "Dimensions": dims("canary")}, "Period": 10, "Stat": "Sum"}, "ReturnData": False},
        ],
    )  # fmt: skip
    events: list[dict[str, Any]] = []
    evaluator = AlarmEvaluator(cw, events.append)
    # When nothing has arrived yet  Then missing data (the default) keeps them INSUFFICIENT_DATA
    assert evaluator.evaluate_once(T0) == []
    # When a bad period arrives
    traffic(cw, "canary", T0, 1, errors=4)
    evaluator.evaluate_once(T0 + timedelta(seconds=10))
    # Then both alarm
    assert states(cw) == {"modelops-errors": "ALARM", "modelops-rate": "ALARM"}
    # When a good period follows
    traffic(cw, "canary", T0 + timedelta(seconds=10), 1, errors=0)
    evaluator.evaluate_once(T0 + timedelta(seconds=20))
    # Then both clear, and the math alarm's event carries its queries
    assert states(cw) == {"modelops-errors": "OK", "modelops-rate": "OK"}
    rate_event = [e for e in events if e["detail"]["alarmName"] == "modelops-rate"][-1]
    assert [m["id"] for m in rate_event["detail"]["configuration"]["metrics"]] == ["rate", "m_req", "m_err"]
    assert rate_event["detail"]["previousState"]["value"] == "ALARM"
    # When the plain alarm's threshold is updated  Then its state is kept, as CloudWatch does
    cw.put_metric_alarm(
        AlarmName="modelops-errors", Namespace="ModelOps", MetricName="Errors", Dimensions=dims("canary"),
        Statistic="Sum", Period=10, Threshold=5, **common,
    )  # fmt: skip
    assert states(cw)["modelops-errors"] == "OK"
    # And the history tells the whole story, newest first, even after the alarm is deleted
    cw.delete_alarms(AlarmNames=["modelops-errors"])
    history = cw.describe_alarm_history(AlarmName="modelops-errors")["AlarmHistoryItems"]
    assert [h["HistorySummary"] for h in history] == [
        'Alarm "modelops-errors" updated',
        "Alarm updated from ALARM to OK",
        "Alarm updated from INSUFFICIENT_DATA to ALARM",
        'Alarm "modelops-errors" created',
    ]
    data = json.loads(history[1]["HistoryData"])
    assert data["oldState"]["stateValue"] == "ALARM" and data["newState"]["stateValue"] == "OK"
    only_states = cw.describe_alarm_history(
        AlarmName="modelops-rate", HistoryItemType="StateUpdate", MaxRecords=1
    )
    assert len(only_states["AlarmHistoryItems"]) == 1 and only_states["NextToken"]


def test_the_background_loop_reacts_within_an_interval_and_stops(cw):
    # Given a bad canary period already stored and an alarm on it
    cw.put_metric_alarm(
        AlarmName="modelops-errors", Namespace="ModelOps", MetricName="Errors", Dimensions=dims("canary"),
        Statistic="Sum", Period=10, Threshold=1, ComparisonOperator="GreaterThanThreshold", EvaluationPeriods=1,
    )  # fmt: skip
    traffic(cw, "canary", T0, 1, errors=4)
    fired = threading.Event()
    evaluator = AlarmEvaluator(
        cw, lambda event: fired.set(), clock=lambda: T0.timestamp() + 10.2, interval_seconds=0.05
    )
    # When the loop runs
    with evaluator:
        assert evaluator.running
        # Then the event arrives within a few intervals
        assert fired.wait(timeout=5.0), "the evaluator never emitted the state change"
    # And leaving the context stops it
    assert not evaluator.running
    assert states(cw) == {"modelops-errors": "ALARM"}


def test_the_canary_analyzer_reads_sums_and_p99_over_a_valid_window(cw):
    # Given a minute of traffic for both variants
    traffic(cw, "canary", T0, 6, errors=1, latency_ms=30.0)
    traffic(cw, "stable", T0, 6, errors=0, latency_ms=10.0)
    metrics = CloudWatchMetrics(cw, namespace="ModelOps", alarm_prefix=PREFIX)
    # When the analyzer reads a 60 s window (a period CloudWatch accepts)
    canary = metrics.variant_metrics("churn", "canary", T0, T0 + timedelta(seconds=60))
    stable = metrics.variant_metrics("churn", "stable", T0, T0 + timedelta(seconds=60))
    # Then it sees the pods' numbers
    assert (canary.requests, canary.errors, canary.latency_p99_ms) == (60.0, 6.0, 30.0)
    assert (stable.requests, stable.errors, stable.latency_p99_ms) == (60.0, 0.0, 10.0)


@pytest.mark.parametrize("window", [15, 37, 90])
def test_any_bake_window_is_read_with_a_period_cloudwatch_accepts(cw, window):
    # Given traffic every 10 s (datapoints at +3 s, +13 s, ...) and a bake window that is no valid period
    traffic(cw, "canary", T0, 12, errors=1, latency_ms=30.0)
    metrics = CloudWatchMetrics(cw, namespace="ModelOps", alarm_prefix=PREFIX)
    # When the analyzer reads [T0, T0 + window) (CloudWatch refuses Period=15 or 37)
    canary = metrics.variant_metrics("churn", "canary", T0, T0 + timedelta(seconds=window))
    # Then it counts exactly the datapoints inside the window
    inside = len([i for i in range(12) if 10 * i + 3 < window])
    assert (canary.requests, canary.errors) == (10.0 * inside, 1.0 * inside)
    assert canary.latency_p99_ms == 30.0


def test_the_same_works_over_the_moto_server_the_local_runtime_embeds(monkeypatch):
    # Given moto's server on an ephemeral loopback port, patched, and a client pointed at it
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(key, value)
    already = moto_cloudwatch_patch.is_applied()
    moto_cloudwatch_patch.apply()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        cw = boto3.client("cloudwatch", region_name="eu-west-1", endpoint_url=endpoint)
        cw.put_metric_alarm(
            AlarmName="modelops-latency", Namespace="ModelOps", MetricName="Latency", Dimensions=dims("canary"),
            ExtendedStatistic="p99", Unit="Milliseconds", Period=10, Threshold=100,
            ComparisonOperator="GreaterThanThreshold", EvaluationPeriods=1,
        )  # fmt: skip
        # When a slow period arrives as EMF and the evaluator runs
        traffic(cw, "canary", T0, 1, errors=0, latency_ms=250.0)
        events: list[dict[str, Any]] = []
        [change] = AlarmEvaluator(cw, events.append).evaluate_once(T0 + timedelta(seconds=10))
        # Then the alarm fires with the event, its history is served, and p99 is queryable
        assert (change.new_state, events[0]["region"]) == ("ALARM", "eu-west-1")
        history = cw.describe_alarm_history(AlarmName="modelops-latency", HistoryItemType="StateUpdate")
        assert (
            history["AlarmHistoryItems"][0]["HistorySummary"]
            == "Alarm updated from INSUFFICIENT_DATA to ALARM"
        )
        p99 = cw.get_metric_data(
            MetricDataQueries=[stat("p99", "Latency", "p99", returned=True)],
            StartTime=T0,
            EndTime=T0 + timedelta(minutes=1),
        )["MetricDataResults"][0]["Values"]
        assert p99 == [250.0]
    finally:
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=5)
        server.stop()
        if not already:
            moto_cloudwatch_patch.remove()
