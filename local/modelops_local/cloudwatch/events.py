"""The `CloudWatch Alarm State Change` event CloudWatch sends to EventBridge, built from an alarm.

Shape from "Alarm events and EventBridge" (CloudWatch User Guide, sample events for a single-metric
alarm and a metric math alarm): source `aws.cloudwatch`, the alarm ARN as the only resource, and a
detail with alarmName, state, previousState (value, reason, reasonData, timestamp) and the alarm's
configuration (description and metrics, with camelCase members).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from modelops_local.cloudwatch.alarm_logic import aws_timestamp

DETAIL_TYPE = "CloudWatch Alarm State Change"
SOURCE = "aws.cloudwatch"


@dataclass(frozen=True)
class StateSnapshot:
    """An alarm state as the event reports it."""

    value: str
    reason: str
    timestamp: datetime
    reason_data: str | None = None

    def to_detail(self) -> dict[str, Any]:
        """The `state` / `previousState` member of the event detail."""
        detail: dict[str, Any] = {"value": self.value, "reason": self.reason}
        if self.reason_data and self.reason_data != "{}":
            detail["reasonData"] = self.reason_data
        detail["timestamp"] = aws_timestamp(self.timestamp)
        return detail


def alarm_state_change_event(
    alarm: dict[str, Any], *, state: StateSnapshot, previous: StateSnapshot, event_id: str | None = None
) -> dict[str, Any]:
    """The EventBridge event for `alarm` (a DescribeAlarms `MetricAlarms` item) moving from
    `previous` to `state`; account and region come from the alarm ARN."""
    arn = alarm["AlarmArn"]
    parts = arn.split(":")
    region, account = parts[3], parts[4]
    configuration: dict[str, Any] = {}
    if alarm.get("AlarmDescription"):
        configuration["description"] = alarm["AlarmDescription"]
    configuration["metrics"] = configuration_metrics(alarm)
    moment = state.timestamp if state.timestamp.tzinfo else state.timestamp.replace(tzinfo=UTC)
    return {
        "version": "0",
        "id": event_id or str(uuid.uuid4()),
        "detail-type": DETAIL_TYPE,
        "source": SOURCE,
        "account": account,
        "time": f"{moment.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}",
        "region": region,
        "resources": [arn],
        "detail": {
            "alarmName": alarm["AlarmName"],
            "state": state.to_detail(),
            "previousState": previous.to_detail(),
            "configuration": configuration,
        },
    }


def configuration_metrics(alarm: dict[str, Any]) -> list[dict[str, Any]]:
    """`detail.configuration.metrics`: the alarm's metric (with a stable generated id) or its metric
    math queries, in the event's camelCase shape."""
    if alarm.get("Metrics"):
        return [_query(q) for q in alarm["Metrics"]]
    stat = alarm.get("ExtendedStatistic") or alarm.get("Statistic")
    metric_stat = _metric_stat(
        {
            "Metric": {
                "Namespace": alarm.get("Namespace"),
                "MetricName": alarm.get("MetricName"),
                "Dimensions": alarm.get("Dimensions") or [],
            },
            "Period": alarm.get("Period"),
            "Stat": stat,
            **({"Unit": alarm["Unit"]} if alarm.get("Unit") else {}),
        }
    )
    metric_id = str(uuid.uuid5(uuid.NAMESPACE_URL, alarm["AlarmArn"]))
    return [{"id": metric_id, "metricStat": metric_stat, "returnData": True}]


def _query(query: dict[str, Any]) -> dict[str, Any]:
    item: dict[str, Any] = {"id": query["Id"]}
    if query.get("Expression"):
        item["expression"] = query["Expression"]
    if query.get("Label"):
        item["label"] = query["Label"]
    if query.get("MetricStat"):
        item["metricStat"] = _metric_stat(query["MetricStat"])
    item["returnData"] = query.get("ReturnData", True) is not False
    return item


def _metric_stat(stat: dict[str, Any]) -> dict[str, Any]:
    metric = stat.get("Metric") or {}
    out: dict[str, Any] = {
        "metric": {
            "namespace": metric.get("Namespace"),
            "name": metric.get("MetricName"),
            "dimensions": {d["Name"]: d["Value"] for d in metric.get("Dimensions") or []},
        },
        "period": int(stat["Period"]) if stat.get("Period") is not None else None,
        "stat": stat.get("Stat"),
    }
    if stat.get("Unit"):
        out["unit"] = stat["Unit"]
    return out
