"""EventBridge Scheduler expressions (rate, cron, at), context attributes, and when schedules fire."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from modelops_local.events import (
    DeliveryRecord,
    ScheduleExpressionError,
    Scheduler,
    next_fire_time,
    substitute_context,
)

T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)  # a Saturday


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# ---------------------------------------------------------------------- expressions
def test_rate_fires_every_period_counted_from_the_anchor():
    assert next_fire_time("rate(5 minutes)", T0 + timedelta(minutes=7), anchor=T0) == T0 + timedelta(
        minutes=10
    )
    assert next_fire_time("rate(1 hour)", T0, anchor=T0) == T0 + timedelta(hours=1)
    assert next_fire_time("rate(2 days)", T0 - timedelta(days=1), anchor=T0) == T0 + timedelta(days=2)


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("cron(0/15 * * * ? *)", "2026-11-21T10:07:00", "2026-11-21T10:15:00"),
        ("cron(0 10 ? * MON-FRI *)", "2026-11-21T10:07:00", "2026-11-23T10:00:00"),
        ("cron(30 9 1,15 * ? *)", "2026-11-21T10:07:00", "2026-12-01T09:30:00"),
        ("cron(0 12 L * ? *)", "2026-11-21T10:07:00", "2026-11-30T12:00:00"),
        ("cron(0 12 ? * 6L *)", "2026-11-21T10:07:00", "2026-11-27T12:00:00"),
        ("cron(0 9 ? * 2#1 *)", "2026-11-21T10:07:00", "2026-12-07T09:00:00"),
        ("cron(0 8 15W * ? *)", "2026-11-21T10:07:00", "2026-12-15T08:00:00"),
        ("cron(0 8 1W * ? *)", "2026-07-21T10:07:00", "2026-08-03T08:00:00"),
        ("cron(0 0 1 JAN ? 2199)", "2026-11-21T10:07:00", "2199-01-01T00:00:00"),
        ("cron(0 0 ? * L *)", "2026-11-21T10:07:00", "2026-11-28T00:00:00"),
    ],
)
def test_cron_fields_wildcards_and_special_days(expression, after, expected):
    assert next_fire_time(expression, at(after)) == at(expected)


def test_cron_is_read_in_the_schedule_timezone():
    # Given 02:00 every day in Paris (UTC+1 in November, UTC+2 in July)
    # When the next fire time is computed
    # Then it is 01:00 UTC in winter and 00:00 UTC in summer
    assert next_fire_time("cron(0 2 * * ? *)", T0, timezone="Europe/Paris") == at("2026-11-22T01:00:00")
    assert next_fire_time("cron(0 2 * * ? *)", at("2026-07-01T08:00:00"), timezone="Europe/Paris") == at(
        "2026-07-02T00:00:00"
    )


def test_one_time_schedules_fire_once_in_their_timezone():
    expression = "at(2026-12-01T09:30:00)"
    assert next_fire_time(expression, T0, timezone="America/New_York") == at("2026-12-01T14:30:00")
    assert next_fire_time(expression, at("2026-12-02T00:00:00"), timezone="America/New_York") is None
    assert next_fire_time("cron(0 0 1 1 ? 2020)", T0) is None


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("cron(0 10 * * MON *)", "exactly one of day-of-month and day-of-week"),
        ("cron(0 10 * * ?)", "needs 6 fields"),
        ("cron(61 10 * * ? *)", "minutes: 61 is outside 0-59"),
        ("cron(0 10 ? * FUNDAY *)", "day-of-week: 'FUNDAY'"),
        ("every 5 minutes", "is not rate"),
    ],
)
def test_malformed_expressions_say_what_is_wrong(expression, message):
    with pytest.raises(ScheduleExpressionError, match=message):
        next_fire_time(expression, T0)


def test_unknown_timezones_are_rejected():
    with pytest.raises(ScheduleExpressionError, match="Mars/Olympus"):
        next_fire_time("rate(1 minute)", T0, timezone="Mars/Olympus")


def test_context_attributes_are_substituted_in_the_input():
    text = '{"at": "<aws.scheduler.scheduled-time>", "id": "<aws.scheduler.execution-id>", "arn": "<aws.scheduler.schedule-arn>", "try": <aws.scheduler.attempt-number>}'
    out = json.loads(substitute_context(text, scheduled_time=T0, execution_id="x-1", schedule_arn="arn:s"))
    assert out == {"at": "2026-11-21T10:00:00Z", "id": "x-1", "arn": "arn:s", "try": 1}


# ---------------------------------------------------------------------- the scheduler
class FakeSchedulerApi:
    """The part of the Scheduler API the runtime reads, over schedules held in memory."""

    def __init__(self, schedules: list[dict[str, Any]]) -> None:
        self.schedules = {s["Name"]: s for s in schedules}

    def list_schedule_groups(self) -> dict[str, Any]:
        return {
            "ScheduleGroups": [{"Name": g} for g in sorted({s["GroupName"] for s in self.schedules.values()})]
        }

    def list_schedules(self, GroupName: str, NextToken: str | None = None) -> dict[str, Any]:
        return {"Schedules": [{"Name": n} for n, s in self.schedules.items() if s["GroupName"] == GroupName]}

    def get_schedule(self, Name: str, GroupName: str) -> dict[str, Any]:
        return self.schedules[Name]

    def delete_schedule(self, Name: str, GroupName: str) -> None:
        del self.schedules[Name]


class FakeAws:
    region = "us-east-1"
    account_id = "123456789012"

    def __init__(self, api: FakeSchedulerApi) -> None:
        self.api = api

    def client(self, service: str) -> Any:
        assert service == "scheduler"
        return self.api


class RecordingDelivery:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, Any]] = []

    def deliver(self, source_arn: str, target: Any, payload: str, *, principal: str) -> DeliveryRecord:
        self.sent.append((source_arn.rsplit("/", 1)[-1], target["Arn"], json.loads(payload)))
        return DeliveryRecord(source_arn, "", target["Arn"], True, "ok", 0.0)

    def record(self, source_arn: str, target: Any, ok: bool, detail: str) -> DeliveryRecord:
        return DeliveryRecord(source_arn, "", target["Arn"], ok, detail, 0.0)


def schedule(name: str, expression: str, state: str = "ENABLED", **extra: Any) -> dict[str, Any]:
    return {
        "Arn": f"arn:aws:scheduler:us-east-1:123456789012:schedule/g/{name}",
        "Name": name,
        "GroupName": "g",
        "ScheduleExpression": expression,
        "ScheduleExpressionTimezone": "UTC",
        "State": state,
        "CreationDate": T0,
        "Target": {
            "Arn": "arn:aws:lambda:us-east-1:123456789012:function:f",
            "RoleArn": "arn:aws:iam::123456789012:role/s",
            "Input": json.dumps({"name": name, "at": "<aws.scheduler.scheduled-time>"}),
        },
        **extra,
    }


def scheduler_with(*schedules: dict[str, Any]) -> tuple[Scheduler, RecordingDelivery, FakeSchedulerApi]:
    api, delivery = FakeSchedulerApi(list(schedules)), RecordingDelivery()
    return Scheduler(FakeAws(api), delivery, clock=lambda: T0), delivery, api  # type: ignore[arg-type,unused-ignore]


def test_schedules_fire_when_due_once_per_slot():
    # Given a five-minute schedule created at T0 and a disabled one
    scheduler, delivery, _ = scheduler_with(
        schedule("every5", "rate(5 minutes)"), schedule("off", "rate(1 minute)", "DISABLED")
    )
    # When the scheduler polls before, at and just after the first slot
    for minutes in (1, 5, 6):
        scheduler.run_due(T0 + timedelta(minutes=minutes))
    # Then the enabled schedule fired exactly once, with its scheduled time substituted
    assert delivery.sent == [
        (
            "every5",
            "arn:aws:lambda:us-east-1:123456789012:function:f",
            {"name": "every5", "at": "2026-11-21T10:05:00Z"},
        )
    ]


def test_end_date_stops_a_schedule():
    scheduler, delivery, _ = scheduler_with(
        schedule("short", "rate(1 minute)", EndDate=T0 + timedelta(seconds=90))
    )
    for minutes in (1, 2, 3):
        scheduler.run_due(T0 + timedelta(minutes=minutes))
    assert [payload["at"] for _, _, payload in delivery.sent] == ["2026-11-21T10:01:00Z"]


def test_tick_fires_every_enabled_schedule_now():
    # Given a nightly schedule and a disabled one
    scheduler, delivery, _ = scheduler_with(
        schedule("nightly", "cron(0 2 * * ? *)"), schedule("off", "rate(1 minute)", "DISABLED")
    )
    # When `modelops local tick` runs
    records = scheduler.tick(T0)
    # Then only the enabled one fires, immediately
    assert [r.ok for r in records] == [True]
    assert delivery.sent == [
        (
            "nightly",
            "arn:aws:lambda:us-east-1:123456789012:function:f",
            {"name": "nightly", "at": "2026-11-21T10:00:00Z"},
        )
    ]


def test_one_time_schedules_can_delete_themselves_after_firing():
    scheduler, delivery, api = scheduler_with(
        schedule("once", "at(2026-11-21T10:03:00)", ActionAfterCompletion="DELETE")
    )
    scheduler.run_due(T0 + timedelta(minutes=4))
    assert [name for name, _, _ in delivery.sent] == ["once"] and api.schedules == {}
