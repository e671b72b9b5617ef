"""Alarm evaluation reproduces the CloudWatch documentation: M of N, comparisons, missing data, reasons."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from modelops_local.cloudwatch.alarm_logic import (
    ALARM,
    INSUFFICIENT_DATA,
    OK,
    AlarmRule,
    Datapoint,
    alarm_queries,
    evaluate,
    java_double,
    rule_from_alarm,
)
from modelops_local.cloudwatch.errors import MetricQueryError

RETAIN = None  # "Retain current state" in the documented tables
NOW = datetime(2026, 11, 22, 10, 5, tzinfo=UTC)
MODES = ("missing", "ignore", "breaching", "notBreaching")


def rule(n: int = 3, m: int = 3, treat: str = "missing", **overrides: Any) -> AlarmRule:
    fields: dict[str, Any] = {
        "comparison_operator": "GreaterThanThreshold",
        "threshold": 0.5,
        "evaluation_periods": n,
        "datapoints_to_alarm": m,
        "period": 60,
        "treat_missing_data": treat,
    }
    fields.update(overrides)
    return AlarmRule(**fields)


def points(row: str, *, end: datetime = NOW, period: int = 60) -> list[Datapoint]:
    """'0 - X' (oldest first): 0 is a good datapoint, X a breaching one, - a missing one."""
    marks = row.split()
    first = end - timedelta(seconds=period * len(marks))
    values = {"0": 0.0, "X": 1.0, "-": None}
    return [Datapoint(first + timedelta(seconds=period * i), values[mark]) for i, mark in enumerate(marks)]


# The two tables of "How alarm state is evaluated when data is missing", columns in MODES order.
THREE_OF_THREE = [
    ("0 - X - X", (OK, OK, OK, OK)),
    ("0 - - - -", (OK, OK, OK, OK)),
    ("- - - - -", (INSUFFICIENT_DATA, RETAIN, ALARM, OK)),
    ("0 X X - X", (ALARM, ALARM, ALARM, ALARM)),
    ("- - X - -", (ALARM, RETAIN, ALARM, OK)),
]
TWO_OF_THREE = [
    ("0 - X - X", (ALARM, ALARM, ALARM, ALARM)),
    ("0 0 X 0 X", (ALARM, ALARM, ALARM, ALARM)),
    ("0 - X - -", (OK, OK, ALARM, OK)),
    ("- - - - 0", (OK, OK, ALARM, OK)),
    ("- - - X -", (ALARM, RETAIN, ALARM, OK)),
]


@pytest.mark.parametrize(("row", "expected"), THREE_OF_THREE)
@pytest.mark.parametrize("mode", MODES)
def test_documented_table_three_out_of_three(row: str, expected: tuple[str | None, ...], mode: str):
    # Given an alarm with Datapoints to Alarm = Evaluation Periods = 3 and an evaluation range of 5
    alarm = rule(n=3, m=3, treat=mode)
    assert alarm.evaluation_range == 5
    # When the documented row is evaluated  Then the documented state results
    assert evaluate(alarm, points(row), NOW).state == expected[MODES.index(mode)]


@pytest.mark.parametrize(("row", "expected"), TWO_OF_THREE)
@pytest.mark.parametrize("mode", MODES)
def test_documented_table_two_out_of_three(row: str, expected: tuple[str | None, ...], mode: str):
    # Given a 2 out of 3 alarm  When the documented row is evaluated  Then the documented state results
    assert evaluate(rule(n=3, m=2, treat=mode), points(row), NOW).state == expected[MODES.index(mode)]


@pytest.mark.parametrize(
    ("operator", "below", "equal", "above"),
    [
        ("GreaterThanThreshold", OK, OK, ALARM),
        ("GreaterThanOrEqualToThreshold", OK, ALARM, ALARM),
        ("LessThanThreshold", ALARM, OK, OK),
        ("LessThanOrEqualToThreshold", ALARM, ALARM, OK),
    ],
)
def test_each_comparison_operator_at_below_and_above_the_threshold(operator, below, equal, above):
    # Given a 1 out of 1 alarm at threshold 10
    alarm = rule(n=1, m=1, comparison_operator=operator, threshold=10.0)
    # Then a value below, at and above the threshold gives the operator's state
    for value, expected in ((9.0, below), (10.0, equal), (11.0, above)):
        datapoints = [Datapoint(NOW - timedelta(minutes=1), value)]
        assert evaluate(alarm, datapoints, NOW).state == expected, (operator, value)


@pytest.mark.parametrize(
    ("row", "state"),
    [("0 0 X 0 X", ALARM), ("0 X X 0 0", OK), ("X X 0 0 0", OK), ("X 0 X 0 X", ALARM), ("0 0 0 X X", ALARM)],
)
def test_m_out_of_n_counts_only_the_most_recent_n(row: str, state: str):
    assert evaluate(rule(n=3, m=2), points(row), NOW).state == state


def test_the_products_error_rate_alarm_reason_names_the_breaching_datapoints():
    # Given the error-rate alarm (2 of 3, > 0.05, notBreaching, 10 s) and a canary going bad
    alarm = rule(n=3, m=2, treat="notBreaching", threshold=0.05, period=10)
    start = datetime(2026, 11, 22, 9, 59, 30, tzinfo=UTC)
    datapoints = [
        Datapoint(start + timedelta(seconds=10 * i), value)
        for i, value in enumerate([None, None, 0.01, 0.2, 0.3])
    ]
    # When evaluated
    outcome = evaluate(alarm, datapoints, datetime(2026, 11, 22, 10, 0, 20, tzinfo=UTC))
    # Then it alarms with AWS's wording, newest datapoint first
    assert outcome.state == ALARM
    assert outcome.reason == (
        "Threshold Crossed: 2 out of the last 3 datapoints [0.3 (22/11/26 10:00:10), 0.2 (22/11/26 10:00:00)] "
        "were greater than the threshold (0.05) (minimum 2 datapoints for OK -> ALARM transition)."
    )
    assert outcome.reason_data == {
        "version": "1.0",
        "queryDate": "2026-11-22T10:00:20.000+0000",
        "startDate": "2026-11-22T09:59:50.000+0000",
        "period": 10,
        "recentDatapoints": [0.01, 0.2, 0.3],
        "threshold": 0.05,
        "evaluatedDatapoints": [
            {"timestamp": "2026-11-22T10:00:10.000+0000", "value": 0.3},
            {"timestamp": "2026-11-22T10:00:00.000+0000", "value": 0.2},
            {"timestamp": "2026-11-22T09:59:50.000+0000", "value": 0.01},
        ],
    }


def test_reasons_match_the_documented_sample_events():
    # Given the single-metric alarm of the EventBridge sample events (Average > 50, 1 of 1, 300 s)
    alarm = rule(n=1, m=1, threshold=50.0, period=300, statistic="Average")
    ok_at, alarm_at = datetime(2019, 10, 1, 13, 46, tzinfo=UTC), datetime(2019, 10, 2, 16, 59, tzinfo=UTC)
    # When each sample datapoint is evaluated
    ok = evaluate(
        alarm, [Datapoint(ok_at, 0.0666851903306472)], datetime(2019, 10, 1, 13, 56, 40, 985000, tzinfo=UTC)
    )
    bad = evaluate(
        alarm, [Datapoint(alarm_at, 99.50160229693434)], datetime(2019, 10, 2, 17, 4, 40, 985000, tzinfo=UTC)
    )
    # Then the reasons read word for word as in the samples, and the reason data carries their fields
    assert ok.reason == (
        "Threshold Crossed: 1 out of the last 1 datapoints [0.0666851903306472 (01/10/19 13:46:00)] was not "
        "greater than the threshold (50.0) (minimum 1 datapoint for ALARM -> OK transition)."
    )
    assert bad.reason == (
        "Threshold Crossed: 1 out of the last 1 datapoints [99.50160229693434 (02/10/19 16:59:00)] was "
        "greater than the threshold (50.0) (minimum 1 datapoint for OK -> ALARM transition)."
    )
    sample = {
        "version": "1.0",
        "queryDate": "2019-10-02T17:04:40.985+0000",
        "startDate": "2019-10-02T16:59:00.000+0000",
        "statistic": "Average",
        "period": 300,
        "recentDatapoints": [99.50160229693434],
        "threshold": 50.0,
    }
    assert {k: v for k, v in bad.reason_data.items() if k in sample} == sample
    assert bad.reason_data_json.startswith('{"version":"1.0","queryDate":"2019-10-02T17:04:40.985+0000"')


def test_reasons_when_missing_data_fills_in():
    # Given an alarm treating missing data as breaching (2 of 2, < 1.0)
    alarm = rule(n=2, m=2, treat="breaching", comparison_operator="LessThanThreshold", threshold=1.0)
    # When one real good datapoint and one missing period are evaluated
    one_point = [Datapoint(p.timestamp, 1.0 if p.value is not None else None) for p in points("- - 0 -")]
    one = evaluate(alarm, one_point, NOW)
    # Then it stays OK and says how the missing datapoint was treated
    stamp = one_point[2].timestamp
    assert one.state == OK
    assert one.reason == (
        f"Threshold Crossed: 1 datapoint [1.0 ({stamp:%d/%m/%y %H:%M:%S})] was not less than the threshold "
        "(1.0) and 1 missing datapoint was treated as [Breaching]."
    )
    assert one.reason_data["evaluatedDatapoints"][0] == {
        "timestamp": f"{stamp + timedelta(minutes=1):%Y-%m-%dT%H:%M:%S}.000+0000"
    }
    # When nothing arrives  Then the missing datapoints alone decide
    none = evaluate(alarm, points("- - - -"), NOW)
    assert (none.state, none.reason) == (
        ALARM,
        "Threshold Crossed: no datapoints were received for 2 periods and 2 missing datapoints were treated as [Breaching].",
    )


def test_all_missing_with_missing_is_insufficient_data():
    outcome = evaluate(rule(n=1, m=1), points("- - -"), NOW)
    assert (outcome.state, outcome.reason) == (
        INSUFFICIENT_DATA,
        "Insufficient Data: 1 datapoint was unknown.",
    )
    assert (
        evaluate(rule(n=3, m=3), points("- - - - -"), NOW).reason
        == "Insufficient Data: 3 datapoints were unknown."
    )


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (50.0, "50.0"),
        (0.05, "0.05"),
        (22, "22.0"),
        (1e7, "1.0E7"),
        (12345678.0, "1.2345678E7"),
        (0.0001, "1.0E-4"),
        (-2.5, "-2.5"),
        (0, "0.0"),
    ],
)
def test_numbers_are_written_as_cloudwatch_writes_them(value: float, text: str):
    assert java_double(value) == text


def test_rules_and_queries_come_from_describe_alarms_items():
    # Given the product's two alarms as DescribeAlarms returns them
    dims = [{"Name": "Model", "Value": "churn"}, {"Name": "Variant", "Value": "canary"}]
    error_rate = {
        "AlarmName": "modelops-churn-canary-error-rate",
        "ComparisonOperator": "GreaterThanThreshold",
        "Threshold": 0.05,
        "EvaluationPeriods": 3,
        "DatapointsToAlarm": 2,
        "TreatMissingData": "notBreaching",
        "Metrics": [
            {
                "Id": "rate",
                "Expression": "IF(req >= 5, err / req)",
                "Label": "error rate",
                "ReturnData": True,
            },
            {
                "Id": "req",
                "MetricStat": {
                    "Metric": {"Namespace": "ModelOps", "MetricName": "Requests", "Dimensions": dims},
                    "Period": 10,
                    "Stat": "Sum",
                },
                "ReturnData": False,
            },
            {
                "Id": "err",
                "MetricStat": {
                    "Metric": {"Namespace": "ModelOps", "MetricName": "Errors", "Dimensions": dims},
                    "Period": 10,
                    "Stat": "Sum",
                },
                "ReturnData": False,
            },
        ],
    }
    latency = {
        "AlarmName": "modelops-churn-canary-latency-p99",
        "Namespace": "ModelOps",
        "MetricName": "Latency",
        "Dimensions": dims,
        "ExtendedStatistic": "p99",
        "Period": 10,
        "Unit": "Milliseconds",
        "ComparisonOperator": "GreaterThanThreshold",
        "Threshold": 1000.0,
        "EvaluationPeriods": 3,
        "DatapointsToAlarm": 2,
        "TreatMissingData": "notBreaching",
        "Metrics": [],
    }
    # Then the rules carry their period, M of N, missing-data treatment and statistic
    assert rule_from_alarm(error_rate) == rule(n=3, m=2, treat="notBreaching", threshold=0.05, period=10)
    assert rule_from_alarm(latency).statistic == "p99"
    # And the math alarm is fetched as written, the plain one with its unit and sample counts
    queries, value_id, count_id = alarm_queries(error_rate)
    assert (value_id, count_id, [q["Id"] for q in queries]) == ("rate", None, ["rate", "req", "err"])
    queries, value_id, count_id = alarm_queries(latency)
    assert (value_id, count_id) == ("value", "samples")
    assert queries[0]["MetricStat"] == {
        "Metric": {"Namespace": "ModelOps", "MetricName": "Latency", "Dimensions": dims},
        "Period": 10,
        "Stat": "p99",
        "Unit": "Milliseconds",
    }
    assert queries[1]["MetricStat"]["Stat"] == "SampleCount"


def test_unsupported_or_inconsistent_alarms_are_rejected():
    base = {
        "AlarmName": "a",
        "ComparisonOperator": "GreaterThanThreshold",
        "Threshold": 1,
        "EvaluationPeriods": 1,
    }
    two_outputs = {
        **base,
        "Metrics": [
            {"Id": "a", "Expression": "b"},
            {"Id": "b", "MetricStat": {"Metric": {}, "Period": 60, "Stat": "Sum"}},
        ],
    }
    with pytest.raises(MetricQueryError, match="exactly one of its Metrics must have ReturnData true"):
        alarm_queries(two_outputs)
    with pytest.raises(MetricQueryError, match="Statistic or ExtendedStatistic is required"):
        rule_from_alarm({**base, "Namespace": "N", "MetricName": "M", "Period": 60})
    with pytest.raises(MetricQueryError, match="DatapointsToAlarm 2 must be between 1 and EvaluationPeriods"):
        rule(n=1, m=2)
    with pytest.raises(
        MetricQueryError, match="ComparisonOperator 'LessThanLowerThreshold' is not supported"
    ):
        rule(comparison_operator="LessThanLowerThreshold")
