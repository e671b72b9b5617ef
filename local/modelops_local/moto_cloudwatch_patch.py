"""Every patch of moto's CloudWatch internals, in one place (moto 5.2.5).

moto stores metrics and alarms but, unlike CloudWatch, it:
- computes only the five plain statistics, not percentiles (`p99` crashes GetMetricData);
- evaluates no metric math beyond `Expression: "<id>"`, and does not align periods;
- starts a new alarm in `OK` instead of `INSUFFICIENT_DATA`, and resets the state when
  PutMetricAlarm updates an existing alarm (CloudWatch keeps it);
- does not implement DescribeAlarmHistory.

`apply()` teaches it those, delegating the semantics to `modelops_local.cloudwatch`; `remove()`
restores moto. `check_compatibility()` (run by `apply()` and by a unit test) fails loudly, naming
what changed, when moto's symbols no longer have the shape these patches were written against.
"""

from __future__ import annotations

import inspect
import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from moto.cloudwatch import models as cw_models
from moto.cloudwatch import responses as cw_responses
from moto.cloudwatch.exceptions import ValidationError
from moto.core.responses import ActionResult

from modelops_local.cloudwatch.alarm_logic import alarm_queries, rule_from_alarm
from modelops_local.cloudwatch.errors import MetricQueryError, MotoPatchError
from modelops_local.cloudwatch.query import MetricIndex, StoredDatum, epoch, parse_queries, run_queries
from modelops_local.cloudwatch.stats import StatisticSet

Backend = cw_models.CloudWatchBackend
Response = cw_responses.CloudWatchResponse

_PUT_METRIC_ALARM_PARAMETERS = [
    "self", "name", "namespace", "metric_name", "comparison_operator", "evaluation_periods", "period",
    "threshold", "statistic", "description", "dimensions", "alarm_actions", "metric_data_queries",
    "datapoints_to_alarm", "extended_statistic", "ok_actions", "insufficient_data_actions", "unit",
    "actions_enabled", "treat_missing_data", "evaluate_low_sample_count_percentile", "threshold_metric_id",
    "rule", "tags",
]  # fmt: skip
# The moto symbols we patch or read, with the parameters they had when this was written.
EXPECTED_SIGNATURES: dict[str, tuple[Callable[..., Any], list[str]]] = {
    "CloudWatchBackend.get_metric_data": (
        Backend.get_metric_data,
        ["self", "queries", "start_time", "end_time", "scan_by"],
    ),
    "CloudWatchBackend.put_metric_alarm": (
        Backend.put_metric_alarm,
        _PUT_METRIC_ALARM_PARAMETERS,
    ),
    "CloudWatchBackend.set_alarm_state": (
        Backend.set_alarm_state,
        ["self", "alarm_name", "reason", "reason_data", "state_value"],
    ),
    "CloudWatchBackend.get_all_metrics": (Backend.get_all_metrics, ["self"]),
    "CloudWatchResponse._get_param": (Response._get_param, ["self", "param_name", "if_none"]),
}
ALARM_ATTRIBUTES = (
    "name", "alarm_arn", "rule", "state_value", "state_reason", "state_reason_data",
    "state_updated_timestamp", "history", "metric_data_queries",
)  # fmt: skip
DATUM_ATTRIBUTES = {
    cw_models.MetricDatum: ("namespace", "name", "value", "dimensions", "timestamp", "unit"),
    cw_models.MetricAggregatedDatum: ("namespace", "name", "sum", "min", "max", "sample_count", "timestamp"),
}
QUERY_ATTRIBUTES = ("id", "label", "period", "return_data", "expression", "metric_stat")
METRIC_STAT_ATTRIBUTES = ("metric", "period", "stat", "unit")
ALARM_PERIODS = (10, 20, 30)
MAX_HISTORY_RECORDS = 100

_originals: dict[str, Any] = {}
_apply_lock = threading.Lock()


def check_compatibility() -> None:
    """Raise MotoPatchError listing every patched or read moto symbol whose shape changed."""
    problems = []
    for name, (function, expected) in EXPECTED_SIGNATURES.items():
        function = _originals.get(name, function)
        actual = list(inspect.signature(function).parameters)
        if actual != expected:
            problems.append(f"{name} parameters are {actual}, expected {expected}")
    sample = cw_models.Alarm(
        account_id="123456789012", region_name="us-east-1", name="probe", namespace="N", metric_name="M",
        metric_data_queries=None, comparison_operator="GreaterThanThreshold", evaluation_periods=1,
        datapoints_to_alarm=None, period=60, threshold=1.0, statistic="Sum", extended_statistic=None,
        description="", dimensions=[], alarm_actions=[], ok_actions=None, insufficient_data_actions=None,
        unit=None, actions_enabled=True, treat_missing_data=None, evaluate_low_sample_count_percentile=None,
        threshold_metric_id=None, rule=None,
    )  # fmt: skip
    problems += [f"Alarm has no attribute {a!r}" for a in ALARM_ATTRIBUTES if not hasattr(sample, a)]
    datum = cw_models.MetricDatum("N", "M", 1.0, [{"Name": "a", "Value": "b"}], None, "Count")
    aggregated = cw_models.MetricAggregatedDatum("N", "M", 1.0, 2.0, 2.0, 3.0, [], None)
    for cls, attributes in DATUM_ATTRIBUTES.items():
        instance = datum if cls is cw_models.MetricDatum else aggregated
        problems += [f"{cls.__name__} has no attribute {a!r}" for a in attributes if not hasattr(instance, a)]
    problems += [
        f"Dimension has no attribute {a!r}" for a in ("name", "value") if not hasattr(datum.dimensions[0], a)
    ]
    metric_stat = cw_models.MetricStat(cw_models.Metric("M", "N", []), "60", "Sum", "Count")
    query = cw_models.MetricDataQuery("q", "label", "60", "true", None, metric_stat)
    problems += [f"MetricDataQuery has no attribute {a!r}" for a in QUERY_ATTRIBUTES if not hasattr(query, a)]
    problems += [
        f"MetricStat has no attribute {a!r}" for a in METRIC_STAT_ATTRIBUTES if not hasattr(metric_stat, a)
    ]
    backend = Backend("us-east-1", "123456789012")
    problems += [
        f"CloudWatchBackend has no attribute {a!r}"
        for a in ("alarms", "metric_data")
        if not hasattr(backend, a)
    ]
    existing = Response.__dict__.get("describe_alarm_history")
    if existing is not None and existing is not _describe_alarm_history_response:
        problems.append("moto now implements CloudWatchResponse.describe_alarm_history: drop our patch of it")
    if problems:
        raise MotoPatchError(
            "moto's CloudWatch changed under modelops_local.moto_cloudwatch_patch: " + "; ".join(problems)
        )


def apply() -> None:
    """Patch moto's CloudWatch (idempotent); MotoPatchError if moto's internals changed shape."""
    with _apply_lock:
        if _originals:
            return
        check_compatibility()
        _originals.update(
            {
                "CloudWatchBackend.get_metric_data": Backend.get_metric_data,
                "CloudWatchBackend.put_metric_alarm": Backend.put_metric_alarm,
                "CloudWatchBackend.set_alarm_state": Backend.set_alarm_state,
            }
        )
        Backend.get_metric_data = _get_metric_data  # type: ignore[method-assign]
        Backend.put_metric_alarm = _put_metric_alarm  # type: ignore[method-assign]
        Backend.set_alarm_state = _set_alarm_state  # type: ignore[method-assign]
        Backend.describe_alarm_history = _describe_alarm_history  # type: ignore[attr-defined]
        Response.describe_alarm_history = _describe_alarm_history_response  # type: ignore[attr-defined]


def remove() -> None:
    """Restore moto's own CloudWatch behaviour (idempotent)."""
    with _apply_lock:
        if not _originals:
            return
        Backend.get_metric_data = _originals.pop("CloudWatchBackend.get_metric_data")  # type: ignore[method-assign]
        Backend.put_metric_alarm = _originals.pop("CloudWatchBackend.put_metric_alarm")  # type: ignore[method-assign]
        Backend.set_alarm_state = _originals.pop("CloudWatchBackend.set_alarm_state")  # type: ignore[method-assign]
        del Backend.describe_alarm_history  # type: ignore[attr-defined]
        del Response.describe_alarm_history  # type: ignore[attr-defined]


def is_applied() -> bool:
    """Whether apply() is in effect."""
    return bool(_originals)


# --- metric data -----------------------------------------------------------------------------------
class _BackendIndex:
    """Our time index over one backend's `metric_data` list, caught up on every query."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.index = MetricIndex()
        self.source: list[Any] | None = None
        self.count = 0

    def sync(self, metric_data: list[Any]) -> MetricIndex:
        with self.lock:
            if metric_data is not self.source or len(metric_data) < self.count:
                self.index, self.source, self.count = MetricIndex(), metric_data, 0
            for datum in metric_data[self.count :]:
                self.index.add(datum.namespace, datum.name, _stored(datum))
            self.count = len(metric_data)
            return self.index


_index_lock = threading.Lock()


def _index_of(backend: Any) -> MetricIndex:
    with _index_lock:
        holder = backend.__dict__.get("_modelops_index")
        if holder is None:
            holder = backend._modelops_index = _BackendIndex()
    return holder.sync(backend.metric_data)


def _stored(datum: Any) -> StoredDatum:
    dims = frozenset((d.name, d.value) for d in datum.dimensions)
    stamp = epoch(datum.timestamp)
    if isinstance(datum, cw_models.MetricAggregatedDatum):
        stats = StatisticSet(float(datum.sample_count), float(datum.sum), float(datum.min), float(datum.max))
        return StoredDatum(stamp, dims, datum.unit, stats=stats)
    return StoredDatum(stamp, dims, datum.unit, value=float(datum.value))


def _get_metric_data(
    self: Any,
    queries: list[dict[str, Any]],
    start_time: datetime,
    end_time: datetime,
    scan_by: str = "TimestampAscending",
) -> list[dict[str, Any]]:
    extra = [(d.namespace, d.name, _stored(d)) for d in self.aws_metric_data]
    try:
        results = run_queries(_index_of(self), queries, start_time, end_time, scan_by=scan_by, extra=extra)
    except MetricQueryError as exc:
        raise ValidationError(str(exc)) from exc
    for result in results:
        result["timestamps"] = [_naive_utc(t) for t in result["timestamps"]]
    return results


def _naive_utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)


# --- alarms ----------------------------------------------------------------------------------------
def _put_metric_alarm(self: Any, *args: Any, **kwargs: Any) -> Any:
    original = _originals["CloudWatchBackend.put_metric_alarm"]
    call = inspect.signature(original).bind(self, *args, **kwargs)
    call.apply_defaults()
    params = call.arguments
    if params.get("rule") is None:
        _validate_alarm(params)
    previous = self.alarms.get(params["name"])
    alarm = original(*call.args, **call.kwargs)
    if previous is not None:
        # PutMetricAlarm on an existing alarm keeps its state (CloudWatch overwrites only configuration).
        for attribute in (
            "state_value",
            "state_reason",
            "state_reason_data",
            "state_updated_timestamp",
            "history",
        ):
            setattr(alarm, attribute, getattr(previous, attribute))
        summary = f'Alarm "{alarm.name}" updated'
    else:
        alarm.state_value = "INSUFFICIENT_DATA"
        alarm.state_reason = "Unchecked: Initial alarm creation"
        alarm.state_reason_data = None
        summary = f'Alarm "{alarm.name}" created'
    _record(
        self,
        alarm,
        "ConfigurationUpdate",
        summary,
        {"version": "1.0", "type": "Update" if previous else "Create"},
    )
    return alarm


def _validate_alarm(params: dict[str, Any]) -> None:
    """Reject, as PutMetricAlarm does, an alarm the evaluator could not evaluate."""
    name = params["name"]
    description = _description(params)
    try:
        if params.get("metric_data_queries"):
            if any(params.get(k) for k in ("metric_name", "namespace", "statistic", "extended_statistic")):
                raise MetricQueryError(
                    "with Metrics, MetricName, Namespace, Statistic and ExtendedStatistic must not be set"
                )
            queries, _, _ = alarm_queries(description)
            parse_queries(queries)
        else:
            if bool(params.get("statistic")) == bool(params.get("extended_statistic")):
                raise MetricQueryError("exactly one of Statistic and ExtendedStatistic must be set")
            if not params.get("metric_name") or not params.get("namespace"):
                raise MetricQueryError("MetricName and Namespace are required (or Metrics)")
        rule = rule_from_alarm(description)
        if rule.period not in ALARM_PERIODS and rule.period % 60 != 0:
            raise MetricQueryError(
                f"Period {rule.period} is invalid; valid values are 10, 20, 30 and multiples of 60"
            )
    except MetricQueryError as exc:
        raise ValidationError(f"alarm {name}: {exc}") from exc


def _description(params: dict[str, Any]) -> dict[str, Any]:
    """The DescribeAlarms shape of the PutMetricAlarm arguments moto received."""
    description: dict[str, Any] = {
        "AlarmName": params["name"],
        "ComparisonOperator": params.get("comparison_operator"),
        "EvaluationPeriods": params.get("evaluation_periods"),
        "DatapointsToAlarm": params.get("datapoints_to_alarm"),
        "Threshold": params.get("threshold"),
        "TreatMissingData": params.get("treat_missing_data"),
        "ThresholdMetricId": params.get("threshold_metric_id"),
        "Namespace": params.get("namespace"),
        "MetricName": params.get("metric_name"),
        "Dimensions": params.get("dimensions") or [],
        "Period": params.get("period"),
        "Statistic": params.get("statistic"),
        "ExtendedStatistic": params.get("extended_statistic"),
        "Unit": params.get("unit"),
    }
    queries = []
    for q in params.get("metric_data_queries") or []:
        item: dict[str, Any] = {"Id": q.id, "ReturnData": q.return_data is not False}
        for key, value in (("Label", q.label), ("Expression", q.expression), ("Period", q.period)):
            if value is not None:
                item[key] = value
        if q.metric_stat is not None:
            ms = q.metric_stat
            item["MetricStat"] = {
                "Metric": {
                    "Namespace": ms.metric.namespace,
                    "MetricName": ms.metric.metric_name,
                    "Dimensions": [{"Name": d.name, "Value": d.value} for d in ms.metric.dimensions],
                },
                "Period": int(ms.period) if ms.period is not None else None,
                "Stat": ms.stat,
                **({"Unit": ms.unit} if ms.unit else {}),
            }
        queries.append(item)
    description["Metrics"] = queries
    if description["EvaluationPeriods"] is None or description["Threshold"] is None:
        raise ValidationError(f"alarm {params['name']}: EvaluationPeriods and Threshold are required")
    return description


def _set_alarm_state(self: Any, alarm_name: str, reason: str, reason_data: str, state_value: str) -> None:
    alarm = self.alarms.get(alarm_name)
    old = (alarm.state_value, alarm.state_reason, alarm.state_reason_data) if alarm is not None else None
    _originals["CloudWatchBackend.set_alarm_state"](self, alarm_name, reason, reason_data, state_value)
    if alarm is None or old is None:
        return
    data = {
        "version": "1.0",
        "oldState": _history_state(*old),
        "newState": _history_state(alarm.state_value, alarm.state_reason, alarm.state_reason_data),
    }
    _record(self, alarm, "StateUpdate", f"Alarm updated from {old[0]} to {alarm.state_value}", data)


def _history_state(value: str, reason: str, reason_data: str | None) -> dict[str, Any]:
    state: dict[str, Any] = {"stateValue": value, "stateReason": reason}
    if reason_data and reason_data != "{}":
        try:
            state["stateReasonData"] = json.loads(reason_data)
        except ValueError:
            state["stateReasonData"] = reason_data
    return state


def _record(backend: Any, alarm: Any, item_type: str, summary: str, data: dict[str, Any]) -> None:
    history = backend.__dict__.setdefault("_modelops_alarm_history", [])
    history.append(
        {
            "AlarmName": alarm.name,
            "AlarmType": "CompositeAlarm" if alarm.rule is not None else "MetricAlarm",
            "Timestamp": datetime.now(UTC).replace(tzinfo=None),
            "HistoryItemType": item_type,
            "HistorySummary": summary,
            "HistoryData": json.dumps(data, separators=(",", ":")),
        }
    )


def _describe_alarm_history(
    self: Any,
    alarm_name: str | None = None,
    alarm_types: list[str] | None = None,
    history_item_type: str | None = None,
    start_date: datetime | None = None,
    end_date: datetime | None = None,
    max_records: int | None = None,
    next_token: str | None = None,
    scan_by: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """DescribeAlarmHistory over the history our patches record (kept after an alarm is deleted)."""
    items = list(self.__dict__.get("_modelops_alarm_history", []))
    if alarm_name:
        items = [i for i in items if i["AlarmName"] == alarm_name]
    if alarm_types:
        items = [i for i in items if i["AlarmType"] in alarm_types]
    if history_item_type:
        items = [i for i in items if i["HistoryItemType"] == history_item_type]
    if start_date is not None:
        items = [i for i in items if epoch(i["Timestamp"]) >= epoch(start_date)]
    if end_date is not None:
        items = [i for i in items if epoch(i["Timestamp"]) <= epoch(end_date)]
    if (scan_by or "TimestampDescending") == "TimestampDescending":
        items.reverse()
    offset = int(next_token) if next_token and next_token.isdigit() else 0
    limit = max(1, min(int(max_records or MAX_HISTORY_RECORDS), MAX_HISTORY_RECORDS))
    page = items[offset : offset + limit]
    more = offset + limit < len(items)
    return page, str(offset + limit) if more else None


def _describe_alarm_history_response(self: Any) -> ActionResult:
    items, token = self.cloudwatch_backend.describe_alarm_history(
        alarm_name=self._get_param("AlarmName"),
        alarm_types=self._get_param("AlarmTypes", []),
        history_item_type=self._get_param("HistoryItemType"),
        start_date=self._get_param("StartDate"),
        end_date=self._get_param("EndDate"),
        max_records=self._get_param("MaxRecords"),
        next_token=self._get_param("NextToken"),
        scan_by=self._get_param("ScanBy"),
    )
    result: dict[str, Any] = {"AlarmHistoryItems": items}
    if token:
        result["NextToken"] = token
    return ActionResult(result)
