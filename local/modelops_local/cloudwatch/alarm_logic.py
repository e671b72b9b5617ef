"""Alarm evaluation as CloudWatch documents it: pure, no clock and no I/O.

Given an alarm's rule and the datapoints of its evaluation range (oldest first, one per period,
None where the period has no data), `evaluate` decides the state and writes the AWS-style reason.

The rules, from "Configuring how CloudWatch alarms treat missing data" (CloudWatch User Guide):
- The evaluation range is EvaluationPeriods + 2 periods (the documented examples: 3 periods
  evaluated from a range of 5). Callers pass only complete periods: the last datapoint is the
  period that ended most recently (CloudWatch evaluates the most recent periods).
- With at least N real datapoints in the range, the most recent N real datapoints decide: ALARM
  when at least M (DatapointsToAlarm) breach, else OK. TreatMissingData is not needed.
- With fewer than N real datapoints, the most recent missing periods are filled in (as few as
  needed) according to TreatMissingData, and every real datapoint in the range counts:
  `breaching` / `notBreaching` fill with breaching / good datapoints; `missing` goes to
  INSUFFICIENT_DATA only when every datapoint is missing; `ignore` keeps the current state then.
- "Avoiding premature transitions to alarm state": with `missing` (and `ignore`, which keeps the
  state instead), when every real datapoint breaches and the oldest is at least M periods old, the
  alarm goes to ALARM although fewer than M datapoints exist; a non-breaching datapoint anywhere
  in the range turns this off (the documented 2-out-of-3 table, row 3).
- Our choice where the documentation is silent: with `missing` or `ignore`, fewer than N real
  datapoints, fewer than M of them breaching, no premature case and no non-breaching datapoint,
  the state is kept (there is neither enough to alarm nor a good datapoint to clear).
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from modelops_local.cloudwatch.errors import MetricQueryError
from modelops_local.cloudwatch.stats import percentile_of

OK, ALARM, INSUFFICIENT_DATA = "OK", "ALARM", "INSUFFICIENT_DATA"
STATES = (OK, ALARM, INSUFFICIENT_DATA)
COMPARISONS: dict[str, tuple[Callable[[float, float], bool], str]] = {
    "GreaterThanThreshold": (operator.gt, "greater than"),
    "GreaterThanOrEqualToThreshold": (operator.ge, "greater than or equal to"),
    "LessThanThreshold": (operator.lt, "less than"),
    "LessThanOrEqualToThreshold": (operator.le, "less than or equal to"),
}
TREATMENTS = ("missing", "ignore", "breaching", "notBreaching")
EXTRA_RANGE_PERIODS = 2


@dataclass(frozen=True)
class AlarmRule:
    """What decides an alarm's state (the PutMetricAlarm fields that matter for evaluation)."""

    comparison_operator: str
    threshold: float
    evaluation_periods: int
    datapoints_to_alarm: int
    period: int
    treat_missing_data: str = "missing"
    statistic: str | None = None  # the Statistic/ExtendedStatistic of a plain metric alarm

    def __post_init__(self) -> None:
        if self.comparison_operator not in COMPARISONS:
            raise MetricQueryError(
                f"ComparisonOperator {self.comparison_operator!r} is not supported "
                f"(supported: {', '.join(COMPARISONS)})"
            )
        if self.treat_missing_data not in TREATMENTS:
            raise MetricQueryError(
                f"TreatMissingData {self.treat_missing_data!r} must be one of {', '.join(TREATMENTS)}"
            )
        if self.evaluation_periods < 1:
            raise MetricQueryError(f"EvaluationPeriods {self.evaluation_periods} must be at least 1")
        if not 1 <= self.datapoints_to_alarm <= self.evaluation_periods:
            raise MetricQueryError(
                f"DatapointsToAlarm {self.datapoints_to_alarm} must be between 1 and "
                f"EvaluationPeriods ({self.evaluation_periods})"
            )

    @property
    def evaluation_range(self) -> int:
        """How many periods are fetched when evaluating (N + 2, as in the documented examples)."""
        return self.evaluation_periods + EXTRA_RANGE_PERIODS

    def breaches(self, value: float) -> bool:
        """Whether one datapoint is on the wrong side of the threshold."""
        return COMPARISONS[self.comparison_operator][0](value, self.threshold)


@dataclass(frozen=True)
class Datapoint:
    """One period of the evaluation range: its start and its value (None when missing)."""

    timestamp: datetime
    value: float | None
    sample_count: float | None = None


@dataclass(frozen=True)
class Evaluation:
    """The outcome: the new state (None = keep the current state), its reason and reason data."""

    state: str | None
    reason: str
    reason_data: dict[str, Any] = field(default_factory=dict)

    @property
    def reason_data_json(self) -> str:
        """StateReasonData as CloudWatch stores it: compact JSON."""
        return json.dumps(self.reason_data, separators=(",", ":"))


def evaluate(rule: AlarmRule, datapoints: Sequence[Datapoint], now: datetime) -> Evaluation:
    """The alarm state the datapoints of the evaluation range (oldest first) call for at `now`."""
    n, m = rule.evaluation_periods, rule.datapoints_to_alarm
    slots = list(datapoints)
    real = [p for p in slots if p.value is not None]
    if len(real) >= n:
        evaluated = real[-n:]
        return _threshold(rule, evaluated, out_of=n, now=now)
    fills_needed = n - len(real)
    fills = [p for p in slots if p.value is None][-fills_needed:]
    if rule.treat_missing_data in ("breaching", "notBreaching"):
        return _with_fills(rule, real, fills, now)
    if not real:
        data = _reason_data(rule, fills, now)
        if rule.treat_missing_data == "ignore":
            return Evaluation(None, "Missing data ignored: the current state is kept.", data)
        return Evaluation(INSUFFICIENT_DATA, f"Insufficient Data: {_count(n)} {_was(n)} unknown.", data)
    breaching = [p for p in real if _breaches(rule, p)]
    if len(breaching) >= m:
        return _threshold(rule, real, out_of=len(real), now=now)
    if len(breaching) == len(real) and _premature_alarm(slots, real, m):
        if rule.treat_missing_data == "ignore":
            return Evaluation(
                None, "Missing data ignored: the current state is kept.", _reason_data(rule, real, now)
            )
        return _threshold(rule, real, out_of=len(real), now=now, force_alarm=True)
    if len(breaching) < len(real):
        return _threshold(rule, real, out_of=len(real), now=now)
    return Evaluation(None, "Too few datapoints to change state.", _reason_data(rule, real, now))


def _breaches(rule: AlarmRule, point: Datapoint) -> bool:
    return point.value is not None and rule.breaches(point.value)


def _premature_alarm(slots: list[Datapoint], real: list[Datapoint], m: int) -> bool:
    oldest_age = len(slots) - 1 - slots.index(real[0])
    return oldest_age + 1 >= m


def _threshold(
    rule: AlarmRule, evaluated: list[Datapoint], *, out_of: int, now: datetime, force_alarm: bool = False
) -> Evaluation:
    """ALARM or OK from real datapoints only, worded with the datapoints that decide it."""
    n, m = rule.evaluation_periods, rule.datapoints_to_alarm
    breaching = [p for p in evaluated if _breaches(rule, p)]
    alarm = force_alarm or len(breaching) >= m
    words = COMPARISONS[rule.comparison_operator][1]
    if alarm:
        listed, phrase, minimum, transition = breaching, words, m, "OK -> ALARM"
    else:
        listed = [p for p in evaluated if not _breaches(rule, p)]
        phrase, minimum, transition = f"not {words}", n - m + 1, "ALARM -> OK"
    reason = (
        f"Threshold Crossed: {len(listed)} out of the last {out_of} datapoints {_points(listed)} "
        f"{_was(len(listed))} {phrase} the threshold ({java_double(rule.threshold)}) "
        f"(minimum {_count(minimum)} for {transition} transition)."
    )
    return Evaluation(ALARM if alarm else OK, reason, _reason_data(rule, evaluated, now))


def _with_fills(rule: AlarmRule, real: list[Datapoint], fills: list[Datapoint], now: datetime) -> Evaluation:
    """ALARM or OK from every real datapoint plus the missing ones filled in as (not) breaching."""
    fill_breaches = rule.treat_missing_data == "breaching"
    breaching = [p for p in real if _breaches(rule, p)]
    good = [p for p in real if not _breaches(rule, p)]
    alarm = len(breaching) + (len(fills) if fill_breaches else 0) >= rule.datapoints_to_alarm
    words = COMPARISONS[rule.comparison_operator][1]
    deciding, other = (breaching, good) if alarm else (good, breaching)
    deciding_phrase = words if alarm else f"not {words}"
    other_phrase = f"not {words}" if alarm else words
    if deciding:
        first = f"{_count(len(deciding))} {_points(deciding)} {_was(len(deciding))} {deciding_phrase}"
        first += f" the threshold ({java_double(rule.threshold)})"
    elif other:
        first = f"{_count(len(other))} {_points(other)} {_was(len(other))} {other_phrase}"
        first += f" the threshold ({java_double(rule.threshold)})"
    else:
        first = f"no datapoints were received for {len(fills)} period{'' if len(fills) == 1 else 's'}"
    treated = "Breaching" if fill_breaches else "NonBreaching"
    reason = (
        f"Threshold Crossed: {first} and {len(fills)} missing {_noun(len(fills))} "
        f"{_was(len(fills))} treated as [{treated}]."
    )
    evaluated = sorted(real + fills, key=lambda p: p.timestamp)
    return Evaluation(ALARM if alarm else OK, reason, _reason_data(rule, evaluated, now))


def _reason_data(rule: AlarmRule, evaluated: list[Datapoint], now: datetime) -> dict[str, Any]:
    data: dict[str, Any] = {"version": "1.0", "queryDate": aws_timestamp(now)}
    if evaluated:
        data["startDate"] = aws_timestamp(min(p.timestamp for p in evaluated))
    if rule.statistic is not None:
        data["statistic"] = rule.statistic
    data["period"] = rule.period
    data["recentDatapoints"] = [
        p.value for p in sorted(evaluated, key=lambda p: p.timestamp) if p.value is not None
    ]
    data["threshold"] = float(rule.threshold)
    points = []
    for p in sorted(evaluated, key=lambda p: p.timestamp, reverse=True):
        item: dict[str, Any] = {"timestamp": aws_timestamp(p.timestamp)}
        if p.value is not None:
            if p.sample_count is not None:
                item["sampleCount"] = float(p.sample_count)
            item["value"] = p.value
        points.append(item)
    data["evaluatedDatapoints"] = points
    return data


def _points(points: list[Datapoint]) -> str:
    newest_first = sorted(points, key=lambda p: p.timestamp, reverse=True)
    inner = ", ".join(
        f"{java_double(p.value or 0.0)} ({p.timestamp.astimezone(UTC):%d/%m/%y %H:%M:%S})"
        for p in newest_first
    )
    return f"[{inner}]"


def _noun(count: int) -> str:
    return "datapoint" if count == 1 else "datapoints"


def _count(count: int) -> str:
    return f"{count} {_noun(count)}"


def _was(count: int) -> str:
    return "was" if count == 1 else "were"


def aws_timestamp(moment: datetime) -> str:
    """A time as CloudWatch writes it in alarm data: 2019-10-02T17:04:40.985+0000 (UTC)."""
    utc = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}+0000"


def java_double(value: float) -> str:
    """A number as Java's Double.toString writes it (CloudWatch's reasons do): 50.0, 0.05, 1.0E7."""
    number = float(value)
    if number != number:
        return "NaN"
    if number in (float("inf"), float("-inf")):
        return "Infinity" if number > 0 else "-Infinity"
    if number == 0:
        return "-0.0" if str(number).startswith("-") else "0.0"
    if 1e-3 <= abs(number) < 1e7:
        text = repr(number)
        return text if "e" not in text else format(number, "f")
    sign, digits, exponent = Decimal(repr(number)).as_tuple()
    assert isinstance(exponent, int)
    power = exponent + len(digits) - 1
    rest = "".join(str(d) for d in digits[1:]).rstrip("0") or "0"
    return f"{'-' if sign else ''}{digits[0]}.{rest}E{power}"


# --- alarms as DescribeAlarms returns them ----------------------------------------------------------
def rule_from_alarm(alarm: dict[str, Any]) -> AlarmRule:
    """The evaluation rule of a DescribeAlarms `MetricAlarms` item; MetricQueryError if unsupported."""
    name = alarm.get("AlarmName", "?")
    if alarm.get("ThresholdMetricId"):
        raise MetricQueryError(
            f"alarm {name}: anomaly-detection (ThresholdMetricId) alarms are not supported locally"
        )
    n = int(alarm["EvaluationPeriods"])
    statistic = None
    if alarm.get("Metrics"):
        period = _math_period(alarm)
    else:
        statistic = alarm.get("ExtendedStatistic") or alarm.get("Statistic")
        if not statistic:
            raise MetricQueryError(f"alarm {name}: Statistic or ExtendedStatistic is required")
        percentile_of(statistic)
        period = int(alarm["Period"])
    return AlarmRule(
        comparison_operator=alarm["ComparisonOperator"],
        threshold=float(alarm["Threshold"]),
        evaluation_periods=n,
        datapoints_to_alarm=int(alarm.get("DatapointsToAlarm") or n),
        period=period,
        treat_missing_data=alarm.get("TreatMissingData") or "missing",
        statistic=statistic,
    )


def _math_period(alarm: dict[str, Any]) -> int:
    periods = {int(q["MetricStat"]["Period"]) for q in alarm["Metrics"] if q.get("MetricStat")}
    periods |= {int(q["Period"]) for q in alarm["Metrics"] if q.get("Expression") and q.get("Period")}
    if len(periods) != 1:
        raise MetricQueryError(
            f"alarm {alarm.get('AlarmName', '?')}: its metrics must share one period, found {sorted(periods) or 'none'}"
        )
    return periods.pop()


def alarm_queries(alarm: dict[str, Any]) -> tuple[list[dict[str, Any]], str, str | None]:
    """(MetricDataQueries, id of the alarm's time series, id of its sample counts or None) that fetch
    what an alarm watches."""
    metrics = alarm.get("Metrics") or []
    if metrics:
        keys = ("Id", "MetricStat", "Expression", "Label", "ReturnData", "Period")
        queries = [{k: q[k] for k in keys if k in q} for q in metrics]
        returned = [q["Id"] for q in queries if q.get("ReturnData", True) is not False]
        if len(returned) != 1:
            raise MetricQueryError(
                f"alarm {alarm.get('AlarmName', '?')}: exactly one of its Metrics must have ReturnData true"
            )
        for q in queries:
            q["ReturnData"] = q["Id"] == returned[0]
        return queries, returned[0], None
    metric: dict[str, Any] = {"Namespace": alarm["Namespace"], "MetricName": alarm["MetricName"]}
    metric["Dimensions"] = list(alarm.get("Dimensions") or [])
    stat: dict[str, Any] = {
        "Metric": metric,
        "Period": int(alarm["Period"]),
        "Stat": alarm.get("ExtendedStatistic") or alarm.get("Statistic"),
    }
    if alarm.get("Unit"):
        stat["Unit"] = alarm["Unit"]
    count = {**stat, "Stat": "SampleCount"}
    queries = [
        {"Id": "value", "MetricStat": stat, "ReturnData": True},
        {"Id": "samples", "MetricStat": count, "ReturnData": True},
    ]
    return queries, "value", "samples"
