"""CloudWatch reads for the canary analyzer and alarm snapshots, and alarm upserts for `model put`."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from modelops.canary import ALARM_KINDS, VARIANTS, AlarmState, VariantMetrics, alarm_name, parse_alarm_name
from modelops.config import ModelConfig


class CloudWatchMetrics:
    def __init__(self, client: Any, *, namespace: str, alarm_prefix: str) -> None:
        self.client = client
        self.namespace = namespace
        self.alarm_prefix = alarm_prefix

    def alarm_states(self, model: str) -> list[AlarmState]:
        """Every alarm of `model` with its state (paginated; only our naming scheme counts)."""
        states: list[AlarmState] = []
        paginator = self.client.get_paginator("describe_alarms")
        for page in paginator.paginate(
            AlarmNamePrefix=f"{self.alarm_prefix}{model}-", AlarmTypes=["MetricAlarm"]
        ):
            for alarm in page.get("MetricAlarms", []):
                parsed = parse_alarm_name(alarm["AlarmName"], self.alarm_prefix)
                if parsed is None or parsed[0] != model:
                    continue
                states.append(AlarmState(alarm["AlarmName"], alarm["StateValue"], parsed[1]))
        return states

    def variant_metrics(self, model: str, variant: str, start: datetime, end: datetime) -> VariantMetrics:
        """Requests and errors summed, and p99 latency, for one variant over [start, end]."""
        dims = [{"Name": "Model", "Value": model}, {"Name": "Variant", "Value": variant}]
        period = covering_period((end - start).total_seconds())
        queries = [
            {
                "Id": qid,
                "MetricStat": {
                    "Metric": {"Namespace": self.namespace, "MetricName": metric, "Dimensions": dims},
                    "Period": period,
                    "Stat": stat,
                },
                "ReturnData": True,
            }
            for qid, metric, stat in (
                ("req", "Requests", "Sum"),
                ("err", "Errors", "Sum"),
                ("lat", "Latency", "p99"),
            )
        ]
        values: dict[str, list[float]] = {"req": [], "err": [], "lat": []}
        kwargs: dict[str, Any] = {"MetricDataQueries": queries, "StartTime": start, "EndTime": end}
        while True:
            response = self.client.get_metric_data(**kwargs)
            for result in response.get("MetricDataResults", []):
                values[result["Id"]].extend(float(v) for v in result.get("Values", []))
            token = response.get("NextToken")
            if not token:
                break
            kwargs["NextToken"] = token
        latency = max(values["lat"]) if values["lat"] else None
        return VariantMetrics(requests=sum(values["req"]), errors=sum(values["err"]), latency_p99_ms=latency)

    def put_model_alarms(self, config: ModelConfig) -> list[str]:
        """Create or update the model's alarms (idempotent: PutMetricAlarm overwrites by name)."""
        names = []
        alarms = config.alarms
        for variant in VARIANTS:
            dims = [{"Name": "Model", "Value": config.name}, {"Name": "Variant", "Value": variant}]
            common = {
                "EvaluationPeriods": alarms.evaluation_periods,
                "DatapointsToAlarm": alarms.datapoints_to_alarm,
                "TreatMissingData": "notBreaching",
                "ActionsEnabled": False,  # EventBridge receives state changes; no SNS actions needed
                "Tags": [
                    {"Key": "modelops:model", "Value": config.name},
                    {"Key": "modelops:variant", "Value": variant},
                ],
            }
            error_name = alarm_name(self.alarm_prefix, config.name, variant, "error-rate")
            self.client.put_metric_alarm(
                AlarmName=error_name,
                AlarmDescription=f"{config.name} {variant}: 5xx error rate above {alarms.error_rate_threshold:.1%}",
                ComparisonOperator="GreaterThanThreshold",
                Threshold=alarms.error_rate_threshold,
                Metrics=[
                    {
                        "Id": "rate",
                        "Expression": f"IF(req >= {alarms.min_requests_per_period}, err / req)",
                        "Label": "error rate",
                        "ReturnData": True,
                    },
                    _stat_query("req", self.namespace, "Requests", dims, alarms.period_seconds, "Sum"),
                    _stat_query("err", self.namespace, "Errors", dims, alarms.period_seconds, "Sum"),
                ],
                **common,
            )
            latency_name = alarm_name(self.alarm_prefix, config.name, variant, "latency-p99")
            self.client.put_metric_alarm(
                AlarmName=latency_name,
                AlarmDescription=f"{config.name} {variant}: p99 latency above {alarms.latency_p99_ms_threshold} ms",
                Namespace=self.namespace,
                MetricName="Latency",
                Dimensions=dims,
                ExtendedStatistic="p99",
                Period=alarms.period_seconds,
                ComparisonOperator="GreaterThanThreshold",
                Threshold=alarms.latency_p99_ms_threshold,
                Unit="Milliseconds",
                **common,
            )
            names += [error_name, latency_name]
        assert len(names) == len(VARIANTS) * len(ALARM_KINDS)
        return names


def _stat_query(
    qid: str, namespace: str, metric: str, dims: list[dict[str, str]], period: int, stat: str
) -> dict[str, Any]:
    return {
        "Id": qid,
        "MetricStat": {
            "Metric": {"Namespace": namespace, "MetricName": metric, "Dimensions": dims},
            "Period": period,
            "Stat": stat,
        },
        "ReturnData": False,
    }


HIGH_RESOLUTION_PERIODS = (1, 5, 10, 20, 30)


def covering_period(seconds: float) -> int:
    """The smallest period GetMetricData accepts (1, 5, 10, 20, 30 or a multiple of 60) that covers
    `seconds`, so one datapoint per metric spans the whole window (p99 over the window, not a max
    of per-period p99s)."""
    wanted = max(1, math.ceil(seconds))
    for period in HIGH_RESOLUTION_PERIODS:
        if wanted <= period:
            return period
    return math.ceil(wanted / 60) * 60
