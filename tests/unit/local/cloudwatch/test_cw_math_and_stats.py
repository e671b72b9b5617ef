"""Statistics and metric math behave as the CloudWatch User Guide documents."""

from __future__ import annotations

import pytest

from modelops_local.cloudwatch.errors import MetricMathError, MetricQueryError
from modelops_local.cloudwatch.metric_math import Series, evaluate_expression
from modelops_local.cloudwatch.stats import StatisticSet, compute_statistic

T = [0, 10, 20, 30, 40]  # period starts used by the series below


class Request:
    """The other queries of one GetMetricData request, as an expression sees them."""

    def __init__(self, **series: list[float | None]) -> None:
        self._series = {
            name: {t: float(v) for t, v in zip(T, values, strict=False) if v is not None}
            for name, values in series.items()
        }

    def series(self, query_id: str) -> Series:
        if query_id not in self._series:
            raise MetricMathError(f"unknown id {query_id!r}")
        return self._series[query_id]


def values(series: Series) -> list[float | None]:
    return [series.get(t) for t in T]


# --- statistics ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("stat", "data", "expected"),
    [
        ("p99", [float(v) for v in range(1, 101)], 99.0),
        ("p50", [4.0, 1.0, 3.0, 2.0], 2.0),
        ("p90", [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0], 9.0),
        ("p99.9", [float(v) for v in range(1, 1001)], 999.0),
        ("p100", [5.0, 9.0, 1.0], 9.0),
        ("p0", [5.0, 9.0, 1.0], 1.0),
        ("p99", [42.0], 42.0),
        ("Sum", [1.0, 2.5], 3.5),
        ("SampleCount", [1.0, 2.5], 2.0),
        ("Average", [1.0, 2.0, 6.0], 3.0),
        ("Minimum", [3.0, -1.0], -1.0),
        ("Maximum", [3.0, -1.0], 3.0),
    ],
)
def test_statistics_over_raw_values(stat: str, data: list[float], expected: float):
    # Given one period's raw values  When the statistic is computed  Then it is the documented value
    assert compute_statistic(stat, data) == expected


def test_percentiles_use_raw_values_only_and_plain_stats_include_statistic_sets():
    # Given raw values plus a statistic set
    stats = [StatisticSet(sample_count=2, sum=30.0, minimum=10.0, maximum=20.0)]
    # Then plain statistics count both, percentiles only the raw values
    assert compute_statistic("SampleCount", [1.0], stats) == 3.0
    assert compute_statistic("Average", [3.0], stats) == 11.0
    assert compute_statistic("Maximum", [3.0], stats) == 20.0
    assert compute_statistic("p99", [3.0], stats) == 3.0
    assert compute_statistic("p99", [], stats) is None


def test_no_data_is_no_datapoint_and_unknown_statistics_are_rejected():
    assert compute_statistic("Sum", []) is None
    with pytest.raises(MetricQueryError, match="statistic 'tm99' is not supported"):
        compute_statistic("tm99", [1.0])
    with pytest.raises(MetricQueryError):
        compute_statistic("p101", [1.0])


# --- metric math -----------------------------------------------------------------------------------
def test_error_rate_divides_timestamp_by_timestamp_missing_counts_as_zero_and_zero_division_drops():
    # Given errors missing at 10 and requests 0 at 30 and missing at 40
    request = Request(errors=[1, None, 2, 3, 4], requests=[10, 20, 40, 0, None])
    # When divided
    rate = evaluate_expression("errors / requests", request)
    # Then missing errors count as 0, and x/0 (explicit or missing requests) is dropped
    assert values(rate) == [0.1, 0.0, 0.05, None, None]


def test_percent_of_errors_with_scalars():
    request = Request(m_err=[1, 2, 0, None, None], m_req=[4, 8, 5, None, None])
    assert values(evaluate_expression("100 * m_err / m_req", request)) == [25.0, 25.0, 0.0, None, None]


def test_if_drops_periods_with_too_few_requests():
    # Given a quiet period (3 requests) and a missing one
    request = Request(req=[10, 3, 20, None, 8], err=[1, 3, 0, 1, None])
    # When the product's guarded error rate is computed
    rate = evaluate_expression("IF(req >= 5, err / req)", request)
    # Then quiet and missing periods yield no datapoint; a missing err counts as 0
    assert values(rate) == [0.1, None, 0.0, None, 0.0]


def test_if_with_three_time_series_follows_the_documented_table():
    # Given the table of "Using IF expressions": IF(metric1, metric2, metric3)
    request = Request(metric1=[1, 1, 0, 0, None], metric2=[30, None, 0, 0, 30], metric3=[0, 0, 20, None, 20])
    # Then the output is [30, 0, 20, -, -]
    assert values(evaluate_expression("IF(metric1, metric2, metric3)", request)) == [
        30.0,
        0.0,
        20.0,
        None,
        None,
    ]
    # And IF(metric1, scalar2, metric3) is [5, 5, 20, -, -]
    assert values(evaluate_expression("IF(metric1, 5, metric3)", request)) == [5.0, 5.0, 20.0, None, None]
    # And IF(metric1, metric2, scalar3) is [30, 0, 5, 5, -]
    assert values(evaluate_expression("IF(metric1, metric2, 5)", request)) == [30.0, 0.0, 5.0, 5.0, None]


def test_comparisons_follow_the_documented_table():
    # Given metric1 [30, 20, 0, 0] and metric2 [20, -, 20, -]
    request = Request(metric1=[30, 20, 0, 0], metric2=[20, None, 20, None])
    # Then the documented outputs come out
    assert values(evaluate_expression("(metric1 < metric2)", request))[:4] == [0.0, 0.0, 1.0, 0.0]
    assert values(evaluate_expression("(metric1 >= 30)", request))[:4] == [1.0, 0.0, 0.0, 0.0]
    assert values(evaluate_expression("metric1 == 0", request))[:4] == [0.0, 0.0, 1.0, 1.0]
    assert values(evaluate_expression("metric1 != metric2", request))[:4] == [1.0, 1.0, 1.0, 0.0]


def test_precedence_and_unary_minus():
    request = Request(m1=[2, -3, None, 4, 1], m2=[1, 1, 1, 1, 1])
    assert values(evaluate_expression("-m1 + 2 * m2", request)) == [0.0, 5.0, 2.0, -2.0, 1.0]
    # m1 + 2 has no datapoint where m1 has none; times the series m2 it counts as 0
    assert values(evaluate_expression("-(m1 + 2) * m2", request)) == [-4.0, 1.0, 0.0, -6.0, -3.0]
    assert values(evaluate_expression("m1 - m2 >= 1", request)) == [1.0, 0.0, 0.0, 1.0, 0.0]


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("ANOMALY_DETECTION_BAND(m1)", "function ANOMALY_DETECTION_BAND is not supported"),
        ("m1 +", "ends too early"),
        ("m1 ) ", "unexpected token ')' at 4"),
        ("Errors / m1", "'Errors' is not a valid id"),
        ("nope * 2", "unknown id 'nope'"),
        ("2 * 3", "final result of an expression must be a time series"),
        ("IF(m1)", "IF takes 2 or 3 arguments"),
        # what modelops does not use is refused by name, not silently mis-evaluated
        ("FILL(m1, 0)", "function FILL is not supported by the local CloudWatch (supported: IF)"),
        ("SUM(METRICS())", "function SUM is not supported"),
        ("m1 ^ 2", "unexpected character at 4"),
        ("m1 > 1 AND m1 < 3", "unexpected token 'AND' at 8"),
        ("[m1, m1]", "unexpected character at 1"),
        ("", "expression is empty"),
        ("m1 $ 2", "unexpected character at 4"),
    ],
)
def test_bad_expressions_are_rejected_with_a_clear_message(expression: str, message: str):
    # Given an invalid or unsupported expression  When evaluated  Then MetricMathError explains it
    with pytest.raises(MetricMathError) as err:
        evaluate_expression(expression, Request(m1=[1, 2, 3, 4, 5]))
    assert message in str(err.value)


def test_trimmed_count_counts_values_in_its_range_lower_bound_exclusive():
    # Given raw values 1, 2, 2, 3 and 5
    raw = [1.0, 2.0, 2.0, 3.0, 5.0]

    # Then TC(lo:hi) counts lo < v <= hi; an omitted bound is open
    assert compute_statistic("TC(1.5:2.5)", raw) == 2.0
    assert compute_statistic("TC(1:3)", raw) == 3.0
    assert compute_statistic("TC(:2)", raw) == 3.0
    assert compute_statistic("TC(3:)", raw) == 1.0
    assert compute_statistic("TC(5.5:9)", raw) == 0.0
    assert compute_statistic("TC(0.5:1.5)", []) is None


def test_trimmed_count_refuses_inverted_or_percent_bounds():
    with pytest.raises(MetricQueryError, match="lower bound must be below"):
        compute_statistic("TC(3:1)", [1.0])
    with pytest.raises(MetricQueryError, match="not supported"):
        compute_statistic("TC(10%:90%)", [1.0])
