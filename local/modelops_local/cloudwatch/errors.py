"""Named errors of the local CloudWatch stand-in."""

from __future__ import annotations


class CloudWatchLocalError(Exception):
    """Base class for every error the local CloudWatch stand-in raises."""


class EmfError(CloudWatchLocalError):
    """A log line is not a valid CloudWatch embedded-metric-format document (callers log and skip it)."""


class MetricQueryError(CloudWatchLocalError):
    """A GetMetricData query or an alarm definition is invalid, as CloudWatch would reject it."""


class MetricMathError(MetricQueryError):
    """A metric math expression cannot be parsed or evaluated."""


class MotoPatchError(CloudWatchLocalError):
    """moto's CloudWatch internals no longer have the shape our patch was written against."""
