"""CloudWatch statistics over one period's raw values.

Supported: SampleCount, Sum, Average, Minimum, Maximum and percentiles `pNN` / `pNN.NN`.

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


@dataclass(frozen=True)
class StatisticSet:
    """Values pre-aggregated by the publisher (PutMetricData `StatisticValues`)."""

    sample_count: float
    sum: float
    minimum: float
    maximum: float


def percentile_of(stat: str) -> float | None:
    """The percentile a `pNN` statistic names, None for a plain statistic; MetricQueryError otherwise."""
    if stat in PLAIN_STATISTICS:
        return None
    match = _PERCENTILE.match(stat)
    if match is None or float(match.group(1)) > 100.0:
        raise MetricQueryError(
            f"statistic {stat!r} is not supported: use one of {', '.join(PLAIN_STATISTICS)} or pNN(.NN)"
        )
    return float(match.group(1))


def compute_statistic(stat: str, values: Sequence[float], sets: Sequence[StatisticSet] = ()) -> float | None:
    """The statistic over one period's raw values and statistic sets; None when there is no data for it."""
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
