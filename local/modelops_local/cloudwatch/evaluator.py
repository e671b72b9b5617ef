"""The alarm evaluator: turns metric data into alarm states and `CloudWatch Alarm State Change` events.

It is an ordinary CloudWatch API client (DescribeAlarms, GetMetricData, SetAlarmState), so it runs
against moto in-process (`mock_aws`) or the local moto server alike; moto must have the patch of
`modelops_local.moto_cloudwatch_patch` applied for percentiles, metric math and history.

Each evaluation looks at the alarm's evaluation range of complete periods, aligned to multiples of
the period: with a 10 s period at 12:00:07 the newest datapoint is 11:59:50-12:00:00. A datapoint
is judged once its period has ended, so with a 1 s interval an alarm reacts within about a second
of the period that crosses the threshold.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from modelops_local.cloudwatch.alarm_logic import (
    Datapoint,
    alarm_queries,
    evaluate,
    rule_from_alarm,
)
from modelops_local.cloudwatch.errors import CloudWatchLocalError
from modelops_local.cloudwatch.events import StateSnapshot, alarm_state_change_event

log = logging.getLogger(__name__)

MAX_STATE_REASON = 1023
MAX_PAGES = 100


@dataclass(frozen=True)
class StateChange:
    """One alarm's transition, as set in CloudWatch and emitted to EventBridge."""

    alarm_name: str
    previous_state: str
    new_state: str
    reason: str
    reason_data: str
    timestamp: datetime
    event: dict[str, Any]


class AlarmEvaluator:
    """Evaluates every metric alarm of a CloudWatch client, on demand or every `interval_seconds`.

    `emit(event)` receives each state-change event (its failures are logged, never retried);
    `clock()` returns the current time in seconds since the epoch.
    """

    def __init__(
        self,
        client: Any,
        emit: Callable[[dict[str, Any]], None],
        clock: Callable[[], float] = time.time,
        interval_seconds: float = 1.0,
        *,
        alarm_name_prefix: str | None = None,
    ) -> None:
        if interval_seconds <= 0:
            raise ValueError(f"interval_seconds must be positive, got {interval_seconds}")
        self.client = client
        self.emit = emit
        self.clock = clock
        self.interval_seconds = interval_seconds
        self.alarm_name_prefix = alarm_name_prefix
        self.errors: dict[str, str] = {}  # alarm name -> why its last evaluation failed
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # --- one pass ----------------------------------------------------------------------------------
    def evaluate_once(self, now: float | datetime | None = None) -> list[StateChange]:
        """Evaluate every alarm at `now` (default: the clock) and return the transitions made.

        An alarm that cannot be evaluated is skipped and its error kept in `errors`.
        """
        moment = _utc(now if now is not None else self.clock())
        changes: list[StateChange] = []
        for alarm in self._alarms():
            name = alarm["AlarmName"]
            try:
                change = self._evaluate_alarm(alarm, moment)
            except (CloudWatchLocalError, ClientError, KeyError, ValueError) as exc:
                if self.errors.get(name) != str(exc):
                    log.warning("cannot evaluate alarm %s: %s", name, exc)
                self.errors[name] = str(exc)
                continue
            self.errors.pop(name, None)
            if change is not None:
                changes.append(change)
        return changes

    def _alarms(self) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {"AlarmTypes": ["MetricAlarm"]}
        if self.alarm_name_prefix:
            kwargs["AlarmNamePrefix"] = self.alarm_name_prefix
        alarms: list[dict[str, Any]] = []
        for _ in range(MAX_PAGES):
            page = self.client.describe_alarms(**kwargs)
            alarms.extend(page.get("MetricAlarms", []))
            if not page.get("NextToken"):
                break
            kwargs["NextToken"] = page["NextToken"]
        return alarms

    def _evaluate_alarm(self, alarm: dict[str, Any], now: datetime) -> StateChange | None:
        rule = rule_from_alarm(alarm)
        queries, value_id, count_id = alarm_queries(alarm)
        period = rule.period
        end = int(now.timestamp()) // period * period
        start = end - rule.evaluation_range * period
        results = self._metric_data(queries, start, end)
        values, counts = results.get(value_id, {}), results.get(count_id or "", {})
        datapoints = [Datapoint(_utc(t), values.get(t), counts.get(t)) for t in range(start, end, period)]
        evaluation = evaluate(rule, datapoints, now)
        current = alarm.get("StateValue", "INSUFFICIENT_DATA")
        if evaluation.state is None or evaluation.state == current:
            return None
        reason = evaluation.reason[:MAX_STATE_REASON]
        reason_data = evaluation.reason_data_json
        self.client.set_alarm_state(
            AlarmName=alarm["AlarmName"],
            StateValue=evaluation.state,
            StateReason=reason,
            StateReasonData=reason_data,
        )
        previous = StateSnapshot(
            value=current,
            reason=alarm.get("StateReason", ""),
            timestamp=_utc(alarm.get("StateUpdatedTimestamp") or now),
            reason_data=alarm.get("StateReasonData"),
        )
        state = StateSnapshot(evaluation.state, reason, now, reason_data)
        event = alarm_state_change_event(alarm, state=state, previous=previous)
        log.info("alarm %s: %s -> %s (%s)", alarm["AlarmName"], current, evaluation.state, reason)
        try:
            self.emit(event)
        except Exception:
            log.exception("emitting the state change event of alarm %s failed", alarm["AlarmName"])
        return StateChange(alarm["AlarmName"], current, evaluation.state, reason, reason_data, now, event)

    def _metric_data(
        self, queries: list[dict[str, Any]], start: int, end: int
    ) -> dict[str, dict[int, float]]:
        kwargs: dict[str, Any] = {
            "MetricDataQueries": queries,
            "StartTime": _utc(start),
            "EndTime": _utc(end),
            "ScanBy": "TimestampAscending",
        }
        series: dict[str, dict[int, float]] = {}
        for _ in range(MAX_PAGES):
            response = self.client.get_metric_data(**kwargs)
            for result in response.get("MetricDataResults", []):
                points = series.setdefault(result["Id"], {})
                for stamp, value in zip(result.get("Timestamps", []), result.get("Values", []), strict=False):
                    points[int(_utc(stamp).timestamp())] = float(value)
            if not response.get("NextToken"):
                break
            kwargs["NextToken"] = response["NextToken"]
        return series

    # --- the background loop -----------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """Whether the background loop is running."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Evaluate every `interval_seconds` in a daemon thread until stop() (idempotent)."""
        with self._lock:
            if self.running:
                return
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="cloudwatch-alarm-evaluator", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop and wait up to `timeout` seconds for the pass in progress to end."""
        with self._lock:
            self._stopping.set()
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("the alarm evaluator did not stop within %.1f s", timeout)

    def __enter__(self) -> AlarmEvaluator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                self.evaluate_once()
            except (BotoCoreError, ClientError, CloudWatchLocalError) as exc:
                log.warning("alarm evaluation pass failed: %s", exc)
            except Exception:
                log.exception("alarm evaluation pass failed")
            self._stopping.wait(max(0.0, self.interval_seconds - (time.monotonic() - started)))


def _utc(value: float | int | datetime) -> datetime:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    return datetime.fromtimestamp(float(value), UTC)
