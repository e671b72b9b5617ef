"""CloudWatch reads for the canary analyzer and alarm snapshots, and alarm upserts for `model put`."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from modelops.adapters.aws import error_code
from modelops.canary import ALARM_KINDS, VARIANTS, AlarmState, VariantMetrics, alarm_name, parse_alarm_name
from modelops.config import ModelConfig
from modelops.drift import PREDICTION
from modelops.triggers import drift_alarm_name

#: The serving pods' histograms (serving_image/model_server/emf.py) and the monitor's figures.
FEATURE_METRIC = "FeatureBins"
PREDICTION_METRIC = "PredictionBins"
PSI_METRIC = "DriftPSI"
MAX_PSI_METRIC = "DriftMaxPSI"
SAMPLES_METRIC = "DriftSamples"
MAX_QUERIES = 500  # GetMetricData's limit per call


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

    def code_counts(
        self, model: str, variant: str, codes: dict[str, int], start: datetime, end: datetime
    ) -> dict[str, list[float]]:
        """Each code's count over [start, end): the pods publish a histogram of codes per feature
        (`FeatureBins`, dimension Feature) and for the predictions (`PredictionBins`); CloudWatch's
        trimmed count `TC(c-0.5:c+0.5)` gives how many of the window's values were code c."""
        period = covering_period((end - start).total_seconds())
        wanted: list[tuple[str, str, int]] = []  # (query id, name, code)
        queries = []
        for index, (name, n_codes) in enumerate(sorted(codes.items())):
            dims = [{"Name": "Model", "Value": model}, {"Name": "Variant", "Value": variant}]
            metric = PREDICTION_METRIC
            if name != PREDICTION:
                dims.append({"Name": "Feature", "Value": name})
                metric = FEATURE_METRIC
            for code in range(1, n_codes + 1):
                qid = f"f{index}c{code}"
                wanted.append((qid, name, code))
                queries.append(
                    {
                        "Id": qid,
                        "MetricStat": {
                            "Metric": {"Namespace": self.namespace, "MetricName": metric, "Dimensions": dims},
                            "Period": period,
                            "Stat": f"TC({code - 0.5}:{code + 0.5})",
                        },
                        "ReturnData": True,
                    }
                )
        totals: dict[str, float] = {}
        for first in range(0, len(queries), MAX_QUERIES):
            kwargs: dict[str, Any] = {
                "MetricDataQueries": queries[first : first + MAX_QUERIES],
                "StartTime": start,
                "EndTime": end,
            }
            while True:
                response = self.client.get_metric_data(**kwargs)
                for result in response.get("MetricDataResults", []):
                    totals[result["Id"]] = totals.get(result["Id"], 0.0) + sum(
                        float(v) for v in result.get("Values", [])
                    )
                token = response.get("NextToken")
                if not token:
                    break
                kwargs["NextToken"] = token
        counts: dict[str, list[float]] = {name: [0.0] * n for name, n in codes.items()}
        for qid, name, code in wanted:
            counts[name][code - 1] = totals.get(qid, 0.0)
        return counts

    def publish_drift(self, model: str, psi: dict[str, float], samples: int, at: datetime) -> None:
        """PSI per feature (dimensions Model, Feature), the largest and the sample (dimension Model)."""
        model_dim = [{"Name": "Model", "Value": model}]
        data: list[dict[str, Any]] = [
            {
                "MetricName": PSI_METRIC,
                "Dimensions": [*model_dim, {"Name": "Feature", "Value": name}],
                "Timestamp": at,
                "Value": value,
                "Unit": "None",
            }
            for name, value in sorted(psi.items())
        ]
        data.append(
            {
                "MetricName": MAX_PSI_METRIC,
                "Dimensions": model_dim,
                "Timestamp": at,
                "Value": max(psi.values(), default=0.0),
                "Unit": "None",
            }
        )
        data.append(
            {
                "MetricName": SAMPLES_METRIC,
                "Dimensions": model_dim,
                "Timestamp": at,
                "Value": samples,
                "Unit": "Count",
            }
        )
        for first in range(0, len(data), 1000):
            self.client.put_metric_data(Namespace=self.namespace, MetricData=data[first : first + 1000])

    def put_drift_alarm(self, config: ModelConfig) -> str | None:
        """Create or update the model's drift alarm: the window's largest PSI above the threshold,
        counted only over at least min_samples predictions; delete it when drift is off."""
        name = drift_alarm_name(self.alarm_prefix, config.name)
        drift = config.drift
        if not drift.enabled:
            try:
                self.client.delete_alarms(AlarmNames=[name])
            except Exception as exc:  # DeleteAlarms documents ResourceNotFound for an unknown name
                if error_code(exc) != "ResourceNotFound":
                    raise
            return None
        period = drift.period_minutes * 60
        dims = [{"Name": "Model", "Value": config.name}]
        self.client.put_metric_alarm(
            AlarmName=name,
            AlarmDescription=(
                f"{config.name}: live data drift, PSI above {drift.threshold:g} over at least "
                f"{drift.min_samples} predictions in {drift.period_minutes} min; ALARM starts a retrain"
            ),
            ComparisonOperator="GreaterThanThreshold",
            Threshold=drift.threshold,
            Metrics=[
                {
                    "Id": "drift",
                    "Expression": f"IF(n >= {drift.min_samples}, psi)",
                    "Label": "largest PSI",
                    "ReturnData": True,
                },
                _stat_query("psi", self.namespace, MAX_PSI_METRIC, dims, period, "Maximum"),
                _stat_query("n", self.namespace, SAMPLES_METRIC, dims, period, "Sum"),
            ],
            EvaluationPeriods=1,
            DatapointsToAlarm=1,
            TreatMissingData="notBreaching",
            ActionsEnabled=False,  # EventBridge receives state changes; no SNS actions needed
            Tags=[
                {"Key": "modelops:model", "Value": config.name},
                {"Key": "modelops:kind", "Value": "drift"},
            ],
        )
        return name

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
        drift = self.put_drift_alarm(config)
        return [*names, drift] if drift else names


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
