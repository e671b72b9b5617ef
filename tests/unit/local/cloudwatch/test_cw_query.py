"""GetMetricData over stored datums: period buckets, metric identity, validation, metric math."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from modelops_local.cloudwatch.errors import MetricMathError, MetricQueryError
from modelops_local.cloudwatch.query import MetricIndex, StoredDatum, run_queries

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC).timestamp()
CANARY = frozenset({("Model", "churn"), ("Variant", "canary")})
DIMS = [{"Name": "Model", "Value": "churn"}, {"Name": "Variant", "Value": "canary"}]


def stat(qid: str, metric: str, stat_name: str, period: int = 10, **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "Metric": {"Namespace": "ModelOps", "MetricName": metric, "Dimensions": DIMS},
        "Period": period,
        "Stat": stat_name,
    }
    if "Unit" in extra:
        spec["Unit"] = extra.pop("Unit")
    return {"Id": qid, "MetricStat": spec, **extra}


@pytest.fixture
def index() -> MetricIndex:
    store = MetricIndex()
    for second, requests, errors in [(1, 10, 0), (12, 10, 1), (19, 10, 1), (25, 4, 4), (61, 10, 5)]:
        store.add("ModelOps", "Requests", StoredDatum(T0 + second, CANARY, "Count", float(requests)))
        store.add("ModelOps", "Errors", StoredDatum(T0 + second, CANARY, "Count", float(errors)))
    for ms in range(1, 101):
        store.add("ModelOps", "Latency", StoredDatum(T0 + 5, CANARY, "Milliseconds", float(ms)))
    return store


def by_id(results: list[dict[str, Any]]) -> dict[str, dict[int, float]]:
    return {r["id"]: dict(zip(r["timestamps"], r["values"], strict=True)) for r in results}


def test_sums_land_in_period_buckets_aligned_to_the_period(index: MetricIndex):
    # Given a start 7 s into a 10 s period
    results = run_queries(
        index, [stat("req", "Requests", "Sum")], T0 + 7, T0 + 70, scan_by="TimestampAscending"
    )
    # Then the first bucket starts at the period boundary and each bucket sums its datums
    assert by_id(results)["req"] == {
        int(T0): 10.0,
        int(T0) + 10: 20.0,
        int(T0) + 20: 4.0,
        int(T0) + 60: 10.0,
    }


def test_periods_of_a_minute_or_more_start_on_the_minute(index: MetricIndex):
    # Given a 5-minute period and a start 37 s past the minute
    results = run_queries(index, [stat("req", "Requests", "Sum", period=300)], T0 + 37, T0 + 600)
    # Then the one bucket starts on the minute and holds everything after it
    assert by_id(results)["req"] == {int(T0): 44.0}


def test_p99_and_the_products_error_rate_in_one_request(index: MetricIndex):
    # Given the canary analyzer's queries plus the alarm's guarded error rate
    queries = [
        stat("lat", "Latency", "p99", period=60),
        stat("req", "Requests", "Sum", ReturnData=False),
        stat("err", "Errors", "Sum", ReturnData=False),
        {"Id": "rate", "Expression": "IF(req >= 5, err / req)", "Label": "error rate"},
    ]
    # When queried newest first (the default)
    results = run_queries(index, queries, T0, T0 + 70)
    # Then only ReturnData queries come back, percentiles are nearest-rank, quiet periods are dropped
    assert [r["id"] for r in results] == ["lat", "rate"]
    assert by_id(results)["lat"] == {int(T0): 99.0}
    assert results[1]["label"] == "error rate"
    assert results[1]["timestamps"] == [int(T0) + 60, int(T0) + 10, int(T0)]
    assert results[1]["values"] == [0.5, 0.1, 0.0]


def test_a_metric_is_its_exact_dimension_set_and_unit(index: MetricIndex):
    # Given datums of the same name with an extra dimension and another unit
    index.add("ModelOps", "Requests", StoredDatum(T0 + 1, CANARY | {("Version", "7")}, "Count", 100.0))
    index.add("ModelOps", "Requests", StoredDatum(T0 + 1, CANARY, "Seconds", 1000.0))
    # When the canary's Requests are summed (with and without a unit)
    any_unit = run_queries(index, [stat("req", "Requests", "Sum")], T0, T0 + 10)
    counts = run_queries(index, [stat("req", "Requests", "Sum", Unit="Count")], T0, T0 + 10)
    # Then the extra-dimension datum is another metric, and a unit filters
    assert by_id(any_unit)["req"] == {int(T0): 1010.0}
    assert by_id(counts)["req"] == {int(T0): 10.0}


@pytest.mark.parametrize(
    ("queries", "error", "message"),
    [
        ([stat("req", "Requests", "Sum", period=45)], MetricQueryError, "Period 45 is invalid"),
        ([stat("req", "Requests", "Sum", period=2)], MetricQueryError, "Period 2 is invalid"),
        ([stat("req", "Requests", "tm99")], MetricQueryError, "statistic 'tm99' is not supported"),
        ([stat("Req", "Requests", "Sum")], MetricQueryError, "must start with a lowercase letter"),
        (
            [stat("a", "Requests", "Sum"), stat("a", "Errors", "Sum")],
            MetricQueryError,
            "used by more than one",
        ),
        ([{"Id": "e", "Expression": "x / 2"}], MetricMathError, "refers to unknown id(s): x"),
        ([{"Id": "e", "Expression": "e * 2"}], MetricMathError, "refers to itself"),
        ([{"Id": "e"}], MetricQueryError, "exactly one of MetricStat and Expression"),
        ([], MetricQueryError, "at least one query"),
    ],
)
def test_invalid_requests_are_rejected_as_cloudwatch_does(index: MetricIndex, queries, error, message):
    # Given an invalid request  When run  Then the error names the problem
    with pytest.raises(error) as err:
        run_queries(index, queries, T0, T0 + 60)
    assert message in str(err.value)


def test_start_must_precede_end(index: MetricIndex):
    with pytest.raises(MetricQueryError, match="StartTime must be less than"):
        run_queries(index, [stat("req", "Requests", "Sum")], T0 + 60, T0 + 60)


def test_the_index_selects_by_time_even_when_datums_arrive_out_of_order():
    # Given datums added out of time order
    store = MetricIndex()
    for offset in (30, 10, 20, 0):
        store.add("N", "M", StoredDatum(T0 + offset, frozenset(), None, float(offset)))
    # When a range is selected  Then it holds exactly the datums inside it, oldest first
    assert [d.value for d in store.select("N", "M", T0 + 10, T0 + 30)] == [10.0, 20.0]
