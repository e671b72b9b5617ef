"""CloudWatch statistics over one period's raw values.

Supported: SampleCount, Sum, Average, Minimum, Maximum, percentiles `pNN` / `pNN.NN` and the
trimmed count with absolute bounds `TC(lo:hi)`: the number of values in the range, the lower
bound exclusive and the upper inclusive (as CloudWatch documents for its percentile rank
`PR(lo:hi)`); bounds given as percentages (`TC(10%:90%)`) are not supported here.

Percentiles (our choice, documented): the nearest-rank method over every raw value of the period,
i.e. the value at rank ceil(p/100 * n) of the n values sorted ascending (p0 is the minimum). The
result is always a value that was published, as with CloudWatch's percentiles over raw
high-resolution values; CloudWatch's own summaries may differ slightly for very large periods.
Values published as statistic sets (`StatisticValues`) count for the five plain statistics but not
for percentiles, which CloudWatch cannot compute from statistic sets either.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from modelops_local.cloudwatch.errors import MetricQueryError

PLAIN_STATISTICS = ("SampleCount", "Sum", "Average", "Minimum", "Maximum")
_PERCENTILE = re.compile(r"^[pP](\d{1,3}(?:\.\d{1,10})?)$")
_NUMBER = r"-?\d+(?:\.\d{1,10})?"
_TRIMMED_COUNT = re.compile(rf"^(?:TC|tc)\(({_NUMBER})?:({_NUMBER})?\)$")


@dataclass(frozen=True)
class StatisticSet:
    """Values pre-aggregated by the publisher (PutMetricData `StatisticValues`)."""

    sample_count: float
    sum: float
    minimum: float
    maximum: float


def trimmed_count_range(stat: str) -> tuple[float, float] | None:
    """The (lower, upper) bounds of a `TC(lo:hi)` statistic (an omitted bound is infinite); None
    for any other statistic."""
    match = _TRIMMED_COUNT.match(stat)
    if match is None:
        return None
    low = float(match.group(1)) if match.group(1) is not None else -math.inf
    high = float(match.group(2)) if match.group(2) is not None else math.inf
    if low >= high:
        raise MetricQueryError(f"statistic {stat!r}: the lower bound must be below the upper")
    return low, high


def percentile_of(stat: str) -> float | None:
    """The percentile a `pNN` statistic names, None for a plain statistic or a trimmed count;
    MetricQueryError otherwise."""
    if stat in PLAIN_STATISTICS or trimmed_count_range(stat) is not None:
        return None
    match = _PERCENTILE.match(stat)
    if match is None or float(match.group(1)) > 100.0:
        raise MetricQueryError(
            f"statistic {stat!r} is not supported: use one of {', '.join(PLAIN_STATISTICS)}, pNN(.NN) "
            "or TC(lo:hi)"
        )
    return float(match.group(1))


def compute_statistic(stat: str, values: Sequence[float], sets: Sequence[StatisticSet] = ()) -> float | None:
    """The statistic over one period's raw values and statistic sets; None when there is no data for it."""
    bounds = trimmed_count_range(stat)
    if bounds is not None:  # like percentiles, computed from raw values only
        low, high = bounds
        return float(sum(1 for v in values if low < v <= high)) if values else None
    percentile = percentile_of(stat)
    if percentile is not None:
        return nearest_rank(sorted(values), percentile) if values else None
    count = len(values) + sum(s.sample_count for s in sets)
    if count == 0:
        return None
    if stat == "SampleCount":
        return float(count)
    total = math.fsum(values) + math.fsum(s.sum for s in sets)
    if stat == "Sum":
        return total
    if stat == "Average":
        return total / count
    if stat == "Minimum":
        return min([*values, *(s.minimum for s in sets)])
    return max([*values, *(s.maximum for s in sets)])


def nearest_rank(ordered: Sequence[float], percentile: float) -> float:
    """The nearest-rank percentile of values already sorted ascending (non-empty)."""
    rank = max(1, math.ceil(round(percentile * len(ordered) / 100.0, 9)))
    return ordered[min(rank, len(ordered)) - 1]
