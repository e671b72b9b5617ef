"""The local CloudWatch stand-in: EMF ingestion, GetMetricData semantics, alarm evaluation and
the `CloudWatch Alarm State Change` event.

Metrics live in moto's CloudWatch backend (put with boto3 `put_metric_data`); moto is taught
percentiles, metric math, INSUFFICIENT_DATA for new alarms and alarm history by
`modelops_local.moto_cloudwatch_patch.apply()`. `AlarmEvaluator` turns the data into alarm states.
"""

from modelops_local.cloudwatch.alarm_logic import AlarmRule, Datapoint, Evaluation, evaluate
from modelops_local.cloudwatch.emf import MetricDatum, ingest_emf_lines, parse_emf_line, put_datums
from modelops_local.cloudwatch.errors import (
    CloudWatchLocalError,
    EmfError,
    MetricMathError,
    MetricQueryError,
    MotoPatchError,
)
from modelops_local.cloudwatch.evaluator import AlarmEvaluator, StateChange
from modelops_local.cloudwatch.events import StateSnapshot, alarm_state_change_event

__all__ = [
    "AlarmEvaluator",
    "AlarmRule",
    "CloudWatchLocalError",
    "Datapoint",
    "EmfError",
    "Evaluation",
    "MetricDatum",
    "MetricMathError",
    "MetricQueryError",
    "MotoPatchError",
    "StateChange",
    "StateSnapshot",
    "alarm_state_change_event",
    "evaluate",
    "ingest_emf_lines",
    "parse_emf_line",
    "put_datums",
]
