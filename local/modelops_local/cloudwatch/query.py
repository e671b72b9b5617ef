"""GetMetricData semantics over stored datums: validation, period buckets, statistics, metric math.

Pure: the caller hands in a `MetricIndex` (the raw datums) and the request's queries in boto3 shape.

Period buckets follow the GetMetricData documentation for recent data: for a Period below 60 s the
start time is rounded down to a multiple of the period, otherwise to the whole minute; buckets then
follow every `Period` seconds up to `EndTime` (exclusive), each timestamped by its start. A query's
metric is the exact (namespace, name, dimension set) identity, as in CloudWatch: a datum published
with more or fewer dimensions is a different metric.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from modelops_local.cloudwatch.errors import MetricMathError, MetricQueryError
from modelops_local.cloudwatch.metric_math import (
    ID_PATTERN,
    Node,
    Series,
    evaluate_expression,
    parse_expression,
    referenced_ids,
)
from modelops_local.cloudwatch.stats import StatisticSet, compute_statistic, percentile_of

MAX_QUERIES = 500
HIGH_RESOLUTION_PERIODS = (1, 5, 10, 20, 30)


@dataclass(frozen=True)
class StoredDatum:
    """One published value (or statistic set) of a metric."""

    timestamp: float  # epoch seconds
    dimensions: frozenset[tuple[str, str]]
    unit: str | None = None
    value: float | None = None
    stats: StatisticSet | None = None


class MetricIndex:
    """Datums by (namespace, metric name), kept in time order for range selection; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._times: dict[tuple[str, str], list[float]] = {}
        self._datums: dict[tuple[str, str], list[StoredDatum]] = {}

    def add(self, namespace: str, name: str, datum: StoredDatum) -> None:
        """Store one datum (out-of-order timestamps are fine)."""
        key = (namespace, name)
        with self._lock:
            times = self._times.setdefault(key, [])
            datums = self._datums.setdefault(key, [])
            at = bisect.bisect_right(times, datum.timestamp)
            times.insert(at, datum.timestamp)
            datums.insert(at, datum)

    def select(self, namespace: str, name: str, start: float, end: float) -> list[StoredDatum]:
        """Datums of the metric name with start <= timestamp < end, oldest first."""
        key = (namespace, name)
        with self._lock:
            times = self._times.get(key, [])
            lo, hi = bisect.bisect_left(times, start), bisect.bisect_left(times, end)
            return list(self._datums.get(key, [])[lo:hi])


def epoch(value: datetime | float | int) -> float:
    """Seconds since the epoch; a naive datetime is taken as UTC (moto stores naive UTC)."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    return float(value)


def validate_period(period: Any, where: str) -> int:
    """The period as an int if CloudWatch accepts it (1, 5, 10, 20, 30 or a multiple of 60)."""
    if isinstance(period, bool) or not isinstance(period, int | float) or int(period) != period:
        raise MetricQueryError(f"{where}: Period {period!r} must be a whole number of seconds")
    seconds = int(period)
    if seconds <= 0 or (seconds not in HIGH_RESOLUTION_PERIODS and seconds % 60 != 0):
        raise MetricQueryError(
            f"{where}: Period {seconds} is invalid; valid values are 1, 5, 10, 20, 30 and multiples of 60"
        )
    return seconds


def aligned_start(start: float, period: int) -> int:
    """The start time CloudWatch uses for a period: rounded down to the period below 60 s, else to the minute."""
    unit = period if period < 60 else 60
    return int(start // unit * unit)


@dataclass
class _Query:
    id: str
    label: str
    return_data: bool
    period: int | None
    metric: tuple[str, str, frozenset[tuple[str, str]]] | None = None
    stat: str = ""
    unit: str | None = None
    expression: Node | None = None


def parse_queries(queries: Sequence[dict[str, Any]]) -> list[_Query]:
    """Validate MetricDataQueries (boto3 shape) as CloudWatch does; MetricQueryError names the query."""
    if not queries:
        raise MetricQueryError("MetricDataQueries: at least one query is required")
    if len(queries) > MAX_QUERIES:
        raise MetricQueryError(f"MetricDataQueries: {len(queries)} queries, at most {MAX_QUERIES}")
    parsed: list[_Query] = []
    for index, raw in enumerate(queries, start=1):
        where = f"MetricDataQueries.member.{index}"
        qid = raw.get("Id")
        if not isinstance(qid, str) or not ID_PATTERN.match(qid):
            raise MetricQueryError(
                f"{where}.Id: {qid!r} must start with a lowercase letter (letters, digits, _)"
            )
        if any(q.id == qid for q in parsed):
            raise MetricQueryError(f"{where}.Id: {qid!r} is used by more than one query")
        has_stat, has_expression = bool(raw.get("MetricStat")), bool(raw.get("Expression"))
        if has_stat == has_expression:
            raise MetricQueryError(f"{where}: exactly one of MetricStat and Expression is required")
        return_data = raw.get("ReturnData", True) is not False
        if has_stat:
            parsed.append(_stat_query(qid, raw, where, return_data))
        else:
            period = raw.get("Period")
            expression = str(raw["Expression"])
            if expression.lstrip().upper().startswith("SELECT"):
                raise MetricQueryError(
                    f"{where}.Expression: Metrics Insights queries are not supported locally"
                )
            parsed.append(
                _Query(
                    id=qid,
                    label=raw.get("Label") or qid,
                    return_data=return_data,
                    period=validate_period(period, where) if period is not None else None,
                    expression=parse_expression(expression),
                )
            )
    ids = {q.id for q in parsed}
    for q in parsed:
        if q.expression is not None:
            unknown = sorted(referenced_ids(q.expression) - ids)
            if unknown:
                raise MetricMathError(
                    f"expression of query {q.id!r} refers to unknown id(s): {', '.join(unknown)}"
                )
    return parsed


def _stat_query(qid: str, raw: dict[str, Any], where: str, return_data: bool) -> _Query:
    stat_spec = raw["MetricStat"]
    metric = stat_spec.get("Metric") or {}
    namespace, name = metric.get("Namespace"), metric.get("MetricName")
    if not namespace or not name:
        raise MetricQueryError(f"{where}.MetricStat.Metric: Namespace and MetricName are required")
    stat = stat_spec.get("Stat")
    if not isinstance(stat, str):
        raise MetricQueryError(f"{where}.MetricStat.Stat is required")
    percentile_of(stat)
    dims = frozenset((d["Name"], d["Value"]) for d in metric.get("Dimensions") or [])
    return _Query(
        id=qid,
        label=raw.get("Label") or name,
        return_data=return_data,
        period=validate_period(stat_spec.get("Period"), f"{where}.MetricStat"),
        metric=(namespace, name, dims),
        stat=stat,
        unit=stat_spec.get("Unit"),
    )


def run_queries(
    index: MetricIndex,
    queries: Sequence[dict[str, Any]],
    start: datetime | float,
    end: datetime | float,
    *,
    scan_by: str = "TimestampDescending",
    extra: Iterable[tuple[str, str, StoredDatum]] = (),
) -> list[dict[str, Any]]:
    """GetMetricData: one result per query with ReturnData (default true), each
    {"id", "label", "timestamps" (epoch seconds), "values", "status_code"} in ScanBy order.

    `extra` adds (namespace, name, datum) triples beyond the index (e.g. moto's service metrics).
    """
    t0, t1 = epoch(start), epoch(end)
    if t0 >= t1:
        raise MetricQueryError("The parameter StartTime must be less than the parameter EndTime.")
    if scan_by not in ("TimestampDescending", "TimestampAscending"):
        raise MetricQueryError(f"ScanBy {scan_by!r} must be TimestampDescending or TimestampAscending")
    parsed = parse_queries(queries)
    context = _RequestContext(index, parsed, t0, t1, list(extra))
    results = []
    for q in parsed:
        if not q.return_data:
            continue
        series = context.series(q.id)
        stamps = sorted(series, reverse=scan_by == "TimestampDescending")
        results.append(
            {
                "id": q.id,
                "label": q.label,
                "timestamps": stamps,
                "values": [series[t] for t in stamps],
                "status_code": "Complete",
            }
        )
    return results


class _RequestContext:
    """Resolves query ids to time series for one GetMetricData request (memoised, cycle-checked)."""

    def __init__(
        self,
        index: MetricIndex,
        queries: list[_Query],
        start: float,
        end: float,
        extra: list[tuple[str, str, StoredDatum]],
    ) -> None:
        self.index = index
        self.queries = {q.id: q for q in queries}
        self.start, self.end = start, end
        self.extra = extra
        self._cache: dict[str, Series] = {}
        self._computing: set[str] = set()

    def series(self, query_id: str) -> Series:
        if query_id in self._cache:
            return self._cache[query_id]
        query = self.queries.get(query_id)
        if query is None:
            raise MetricMathError(f"unknown id {query_id!r}")
        if query_id in self._computing:
            raise MetricMathError(f"expression of query {query_id!r} refers to itself (a cycle)")
        self._computing.add(query_id)
        try:
            if query.expression is not None:
                result = evaluate_expression(query.expression, self)
            else:
                result = self._stat_series(query)
        finally:
            self._computing.discard(query_id)
        self._cache[query_id] = result
        return result

    def _stat_series(self, query: _Query) -> Series:
        assert query.metric is not None and query.period is not None
        namespace, name, dims = query.metric
        period = query.period
        first = aligned_start(self.start, period)
        datums = self.index.select(namespace, name, first, self.end)
        datums += [
            d for ns, n, d in self.extra if ns == namespace and n == name and first <= d.timestamp < self.end
        ]
        buckets: dict[int, tuple[list[float], list[StatisticSet]]] = {}
        for datum in datums:
            if datum.dimensions != dims:
                continue
            if query.unit and (datum.unit or "None") != query.unit:
                continue
            bucket = first + int((datum.timestamp - first) // period) * period
            values, sets = buckets.setdefault(bucket, ([], []))
            if datum.stats is not None:
                sets.append(datum.stats)
            elif datum.value is not None:
                values.append(datum.value)
        series: Series = {}
        for bucket in sorted(buckets):
            values, sets = buckets[bucket]
            value = compute_statistic(query.stat, values, sets)
            if value is not None:
                series[bucket] = value
        return series
