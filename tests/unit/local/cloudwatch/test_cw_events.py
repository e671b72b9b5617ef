"""The state-change event has the shape CloudWatch sends to EventBridge (and that on_alarm reads)."""

from __future__ import annotations

from datetime import UTC, datetime

from modelops_local.cloudwatch import StateSnapshot, alarm_state_change_event
from tests.conftest import load_event

DIMS = [{"Name": "Model", "Value": "churn"}, {"Name": "Variant", "Value": "canary"}]
ERROR_RATE_ALARM = {
    "AlarmName": "modelops-churn-canary-error-rate",
    "AlarmArn": "arn:aws:cloudwatch:us-east-1:123456789012:alarm:modelops-churn-canary-error-rate",
    "AlarmDescription": "churn canary: 5xx error rate above 5.0%",
    "ComparisonOperator": "GreaterThanThreshold",
    "Threshold": 0.05,
    "EvaluationPeriods": 3,
    "DatapointsToAlarm": 2,
    "TreatMissingData": "notBreaching",
    "Metrics": [
        {"Id": "rate", "Expression": "IF(req >= 5, err / req)", "Label": "error rate", "ReturnData": True},
        {
            "Id": "req",
            "MetricStat": {
                "Metric": {"Namespace": "ModelOps", "MetricName": "Requests", "Dimensions": DIMS},
                "Period": 60,
                "Stat": "Sum",
            },
            "ReturnData": False,
        },
        {
            "Id": "err",
            "MetricStat": {
                "Metric": {"Namespace": "ModelOps", "MetricName": "Errors", "Dimensions": DIMS},
                "Period": 60,
                "Stat": "Sum",
            },
            "ReturnData": False,
        },
    ],
}
CPU_ALARM = {
    "AlarmName": "ServerCpuTooHigh",
    "AlarmArn": "arn:aws:cloudwatch:us-east-1:123456789012:alarm:ServerCpuTooHigh",
    "AlarmDescription": "Goes into alarm when server CPU utilization is too high!",
    "Namespace": "AWS/EC2",
    "MetricName": "CPUUtilization",
    "Dimensions": [{"Name": "InstanceId", "Value": "i-12345678901234567"}],
    "Statistic": "Average",
    "Period": 300,
    "Metrics": [],
}
PREVIOUS = StateSnapshot("OK", "was fine", datetime(2026, 11, 22, 9, 50, tzinfo=UTC), '{"version":"1.0"}')
NOW = datetime(2026, 11, 22, 10, 5, 0, 123000, tzinfo=UTC)


def test_math_alarm_event_matches_the_projects_sample_event_shape():
    # Given the product's error-rate alarm going to ALARM
    state = StateSnapshot("ALARM", "Threshold Crossed: ...", NOW, '{"version":"1.0"}')
    # When the event is built
    event = alarm_state_change_event(ERROR_RATE_ALARM, state=state, previous=PREVIOUS, event_id="e-1")
    sample = load_event("alarm_state_change.json")
    # Then it has the sample's keys, routing fields and (camelCase) configuration
    assert set(event) == set(sample)
    assert {k: event[k] for k in ("version", "detail-type", "source", "account", "region", "resources")} == {
        k: sample[k] for k in ("version", "detail-type", "source", "account", "region", "resources")
    }
    assert event["id"] == "e-1" and event["time"] == "2026-11-22T10:05:00Z"
    assert set(event["detail"]) == set(sample["detail"])
    assert event["detail"]["configuration"] == sample["detail"]["configuration"]
    assert event["detail"]["state"] == {
        "value": "ALARM",
        "reason": "Threshold Crossed: ...",
        "reasonData": '{"version":"1.0"}',
        "timestamp": "2026-11-22T10:05:00.123+0000",
    }
    assert event["detail"]["previousState"]["timestamp"] == "2026-11-22T09:50:00.000+0000"


def test_single_metric_alarm_event_matches_the_documented_sample():
    # Given the documentation's single-metric alarm, created moments before (no reason data yet)
    created = StateSnapshot("INSUFFICIENT_DATA", "Unchecked: Initial alarm creation", NOW, None)
    state = StateSnapshot("ALARM", "Threshold Crossed", NOW, "{}")
    # When the event is built
    event = alarm_state_change_event(CPU_ALARM, state=state, previous=created)
    # Then the one metric carries a stable generated id, metricStat and returnData, as in the sample
    [metric] = event["detail"]["configuration"]["metrics"]
    assert metric["metricStat"] == {
        "metric": {
            "namespace": "AWS/EC2",
            "name": "CPUUtilization",
            "dimensions": {"InstanceId": "i-12345678901234567"},
        },
        "period": 300,
        "stat": "Average",
    }
    assert metric["returnData"] is True
    assert (
        metric["id"]
        == alarm_state_change_event(CPU_ALARM, state=state, previous=created)["detail"]["configuration"][
            "metrics"
        ][0]["id"]
    )
    assert event["detail"]["configuration"]["description"] == CPU_ALARM["AlarmDescription"]
    # And a state without reason data has no reasonData member
    assert "reasonData" not in event["detail"]["previousState"]
    assert "reasonData" not in event["detail"]["state"]
