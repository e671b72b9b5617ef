"""CloudWatch embedded metric format (EMF): turn a pod's log line into metric datums, and put them.

Follows "Specification: Embedded metric format" (CloudWatch User Guide): the root is a JSON object
whose `_aws` member holds `Timestamp` (ms since the epoch) and `CloudWatchMetrics`, a list of
directives, each with a `Namespace`, `Dimensions` (a list of dimension sets, each a list of root
member names whose values are strings) and `Metrics` (`Name`, optional `Unit`, optional
`StorageResolution`). Every dimension set of a directive yields its own metric for every metric
definition, and a metric's root member is a number or a list of up to 100 numbers, or a histogram
object `{"Values": [...], "Counts": [...], "Max", "Min", "Count", "Sum"}` (up to 100 distinct values,
each occurring Counts[i] times; the shape AWS's EMF library aws-embedded-metrics-java writes for
its `Histogram` and PutMetricData's Values/Counts carry).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from modelops_local.cloudwatch.errors import EmfError

UNITS = frozenset(
    {
        "Seconds",
        "Microseconds",
        "Milliseconds",
        "Bytes",
        "Kilobytes",
        "Megabytes",
        "Gigabytes",
        "Terabytes",
        "Bits",
        "Kilobits",
        "Megabits",
        "Gigabits",
        "Terabits",
        "Percent",
        "Count",
        "Bytes/Second",
        "Kilobytes/Second",
        "Megabytes/Second",
        "Gigabytes/Second",
        "Terabytes/Second",
        "Bits/Second",
        "Kilobits/Second",
        "Megabits/Second",
        "Gigabits/Second",
        "Terabits/Second",
        "Count/Second",
        "None",
    }
)
MAX_METRICS_PER_DIRECTIVE = 100
MAX_VALUES_PER_METRIC = 100
MAX_DIMENSIONS_PER_SET = 30
MAX_DATA_PER_PUT = 1000  # PutMetricData accepts at most 1000 MetricData entries per call

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MetricDatum:
    """One metric's values at one instant, as PutMetricData takes it."""

    namespace: str
    name: str
    dimensions: tuple[tuple[str, str], ...]
    values: tuple[float, ...]
    timestamp: datetime
    unit: str = "None"
    storage_resolution: int = 60
    counts: tuple[float, ...] | None = None  # how often each value occurred (a histogram); None: once

    def to_metric_data(self) -> dict[str, Any]:
        """This datum as one `MetricData` entry of a boto3 `put_metric_data` call."""
        entry: dict[str, Any] = {
            "MetricName": self.name,
            "Dimensions": [{"Name": k, "Value": v} for k, v in self.dimensions],
            "Timestamp": self.timestamp,
            "Values": list(self.values),
            "Unit": self.unit,
            "StorageResolution": self.storage_resolution,
        }
        if self.counts is not None:
            entry["Counts"] = list(self.counts)
        return entry


def parse_emf_line(line: str, *, received_at: datetime | None = None) -> list[MetricDatum]:
    """Every metric datum an EMF log line carries (an empty list when it declares no metrics).

    `received_at` stands in for a missing `_aws.Timestamp` (as CloudWatch Logs uses the log event's
    time); without it a missing timestamp is an error. Raises EmfError naming the offending member
    when the line is not a valid EMF document.
    """
    root = _load_root(line)
    aws = root.get("_aws")
    if not isinstance(aws, dict):
        raise EmfError("_aws: missing or not an object; not an embedded-metric-format document")
    timestamp = _timestamp(aws, received_at)
    directives = aws.get("CloudWatchMetrics")
    if not isinstance(directives, list):
        raise EmfError("_aws.CloudWatchMetrics: missing or not an array")
    datums: list[MetricDatum] = []
    for index, directive in enumerate(directives):
        datums.extend(_directive_datums(root, directive, f"_aws.CloudWatchMetrics[{index}]", timestamp))
    return datums


def put_datums(client: Any, datums: Iterable[MetricDatum]) -> int:
    """Put the datums into CloudWatch with boto3 `put_metric_data` (grouped by namespace, at most
    1000 entries a call); returns how many datums were put."""
    by_namespace: dict[str, list[dict[str, Any]]] = {}
    for datum in datums:
        by_namespace.setdefault(datum.namespace, []).append(datum.to_metric_data())
    count = 0
    for namespace, entries in by_namespace.items():
        for start in range(0, len(entries), MAX_DATA_PER_PUT):
            chunk = entries[start : start + MAX_DATA_PER_PUT]
            client.put_metric_data(Namespace=namespace, MetricData=chunk)
            count += len(chunk)
    return count


def ingest_emf_lines(client: Any, lines: Iterable[str], *, received_at: datetime | None = None) -> int:
    """Parse every EMF line and put its datums; plain (non-EMF) log lines are passed over and invalid
    EMF lines are logged and skipped. Returns how many datums were put."""
    datums: list[MetricDatum] = []
    for number, line in enumerate(lines, start=1):
        if '"_aws"' not in line:
            continue
        try:
            datums.extend(parse_emf_line(line, received_at=received_at))
        except EmfError as exc:
            log.warning("skipping invalid EMF line %d: %s", number, exc)
    return put_datums(client, datums) if datums else 0


def _load_root(line: str) -> dict[str, Any]:
    def _reject_constant(name: str) -> Any:
        raise EmfError(f"{name} is not a valid JSON number")

    try:
        root = json.loads(line, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise EmfError(f"not a JSON object: {exc.msg} at column {exc.colno}") from exc
    if not isinstance(root, dict):
        raise EmfError(f"the root must be a JSON object, got {type(root).__name__}")
    return root


def _timestamp(aws: dict[str, Any], received_at: datetime | None) -> datetime:
    raw = aws.get("Timestamp")
    if raw is None:
        if received_at is None:
            raise EmfError("_aws.Timestamp: missing (milliseconds since the epoch)")
        return received_at.astimezone(UTC) if received_at.tzinfo else received_at.replace(tzinfo=UTC)
    if isinstance(raw, bool) or not isinstance(raw, int | float) or raw < 0:
        raise EmfError(f"_aws.Timestamp: {raw!r} is not a number of milliseconds since the epoch")
    return datetime.fromtimestamp(raw / 1000.0, UTC)


def _directive_datums(
    root: dict[str, Any], directive: Any, where: str, timestamp: datetime
) -> list[MetricDatum]:
    if not isinstance(directive, dict):
        raise EmfError(f"{where}: a metric directive must be an object")
    namespace = directive.get("Namespace")
    if not isinstance(namespace, str) or not 1 <= len(namespace) <= 255:
        raise EmfError(f"{where}.Namespace: missing or not a string of 1-255 characters")
    if namespace.startswith("AWS/"):
        raise EmfError(f"{where}.Namespace: {namespace!r} is reserved for AWS services")
    dimension_sets = _dimension_sets(root, directive.get("Dimensions"), f"{where}.Dimensions")
    metrics = directive.get("Metrics")
    if not isinstance(metrics, list):
        raise EmfError(f"{where}.Metrics: missing or not an array")
    if len(metrics) > MAX_METRICS_PER_DIRECTIVE:
        raise EmfError(f"{where}.Metrics: {len(metrics)} definitions, at most {MAX_METRICS_PER_DIRECTIVE}")
    datums = []
    for index, definition in enumerate(metrics):
        name, unit, resolution = _definition(definition, f"{where}.Metrics[{index}]")
        values, counts = _metric_values(root, name)
        if not values:
            continue
        for dimensions in dimension_sets:
            datums.append(
                MetricDatum(namespace, name, dimensions, values, timestamp, unit, resolution, counts)
            )
    return datums


def _dimension_sets(root: dict[str, Any], raw: Any, where: str) -> list[tuple[tuple[str, str], ...]]:
    if not isinstance(raw, list) or not raw:
        raise EmfError(f"{where}: missing or not a non-empty array of dimension sets")
    sets = []
    for index, keys in enumerate(raw):
        if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
            raise EmfError(f"{where}[{index}]: a dimension set must be an array of member names")
        if len(keys) > MAX_DIMENSIONS_PER_SET:
            raise EmfError(f"{where}[{index}]: {len(keys)} dimensions, at most {MAX_DIMENSIONS_PER_SET}")
        pairs = []
        for key in keys:
            value = root.get(key)
            if not isinstance(value, str):
                raise EmfError(f"dimension {key!r} (in {where}[{index}]): the root member must be a string")
            pairs.append((key, value))
        sets.append(tuple(pairs))
    return sets


def _definition(definition: Any, where: str) -> tuple[str, str, int]:
    if not isinstance(definition, dict):
        raise EmfError(f"{where}: a metric definition must be an object")
    name = definition.get("Name")
    if not isinstance(name, str) or not 1 <= len(name) <= 255:
        raise EmfError(f"{where}.Name: missing or not a string of 1-255 characters")
    unit = definition.get("Unit", "None")
    if unit not in UNITS:
        raise EmfError(f"{where}.Unit: {unit!r} is not a CloudWatch unit")
    resolution = definition.get("StorageResolution", 60)
    if isinstance(resolution, bool) or resolution not in (1, 60):
        raise EmfError(f"{where}.StorageResolution: {resolution!r} must be 1 or 60")
    return name, unit, int(resolution)


def _metric_values(root: dict[str, Any], name: str) -> tuple[tuple[float, ...], tuple[float, ...] | None]:
    if name not in root:
        raise EmfError(f"metric {name!r}: the root has no member of that name")
    raw = root[name]
    if isinstance(raw, dict):
        return _histogram(raw, name)
    return _numbers(raw if isinstance(raw, list) else [raw], name, "values"), None


def _histogram(raw: dict[str, Any], name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """A histogram member: Values and Counts of the same length (at most 100), counts >= 0."""
    if not isinstance(raw.get("Values"), list) or not isinstance(raw.get("Counts"), list):
        raise EmfError(f"metric {name!r}: a histogram object needs Values and Counts arrays")
    values = _numbers(raw["Values"], name, "Values")
    counts = _numbers(raw["Counts"], name, "Counts")
    if len(values) != len(counts):
        raise EmfError(f"metric {name!r}: {len(values)} Values but {len(counts)} Counts")
    if any(c < 0 for c in counts):
        raise EmfError(f"metric {name!r}: Counts must be >= 0")
    return values, counts


def _numbers(items: list[Any], name: str, what: str) -> tuple[float, ...]:
    if len(items) > MAX_VALUES_PER_METRIC:
        raise EmfError(f"metric {name!r}: {len(items)} {what}, at most {MAX_VALUES_PER_METRIC}")
    values = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int | float) or not math.isfinite(item):
            raise EmfError(f"metric {name!r}: {item!r} is not a number")
        values.append(float(item))
    return tuple(values)
