"""EventBridge delivery to Lambda and Step Functions targets, and EventBridge Scheduler that fires.

`EventDelivery` is what `MotoPatches.route_eventbridge` hands matched events to: it shapes the
target input as EventBridge documents (whole event, `Input`, `InputPath` or `InputTransformer`),
checks the function's resource policy allows the rule (as Lambda does), then invokes the function
asynchronously or starts the state machine. Every attempt is kept as a `DeliveryRecord`.

`Scheduler` reads the schedules stored in moto (every group), computes their next fire times
(`rate(...)`, `cron(...)` in the schedule's timezone, `at(...)`), and delivers to the target with
the `<aws.scheduler.*>` context attributes substituted in `Input`. `tick()` fires every enabled
schedule once, now (`modelops local tick`).

Not emulated: a target's RetryPolicy and DeadLetterConfig (each event is delivered once), Lambda's
own retries of failed asynchronous invocations, FLEXIBLE time windows (schedules fire on time), and
EventBridge rules with a ScheduleExpression (only Scheduler schedules fire).
"""

from __future__ import annotations

import calendar
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from modelops_local.aws_server import AwsClients
from modelops_local.iam_conditions import conditions_hold
from modelops_local.lambda_runtime import LambdaInvoker

LOG = logging.getLogger(__name__)

_S3_PLACEHOLDER_EVENT_ID = "17793124-05d4-b198-2fde-7ededc63b103"  # moto gives every S3 event this id


class ScheduleExpressionError(ValueError):
    """A schedule expression (rate/cron/at) is malformed; the message says which part."""


# ---------------------------------------------------------------------- JSON paths
_PATH_TOKEN = re.compile(r"\.([A-Za-z0-9_\-$@]+)|\[(\d+)\]|\['([^']*)'\]|\[\"([^\"]*)\"\]")


def json_path(document: Any, path: str) -> Any:
    """The value at an EventBridge JSON path (`$`, `$.a.b`, `$.a[0]`, `$['a-b']`); KeyError if absent."""
    if not path.startswith("$"):
        raise KeyError(f"a JSON path starts with '$': {path!r}")
    position, node = 1, document
    while position < len(path):
        match = _PATH_TOKEN.match(path, position)
        if match is None:
            raise KeyError(f"unsupported JSON path syntax at {path[position:]!r} in {path!r}")
        key, index, quoted, double_quoted = match.groups()
        if index is not None:
            if not isinstance(node, list) or int(index) >= len(node):
                raise KeyError(f"{path}: no element {index}")
            node = node[int(index)]
        else:
            name = key if key is not None else (quoted if quoted is not None else double_quoted)
            if not isinstance(node, dict) or name not in node:
                raise KeyError(f"{path}: no field {name!r}")
            node = node[name]
        position = match.end()
    return node


# ---------------------------------------------------------------------- target input
def normalize_event(event: Mapping[str, Any]) -> dict[str, Any]:
    """The event as EventBridge delivers it: ISO-8601 `time`, no moto bookkeeping fields."""
    out = {k: v for k, v in event.items() if k != "ingestion-time"}
    stamp = out.get("time")
    if isinstance(stamp, (int, float)):
        out["time"] = datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    elif isinstance(stamp, datetime):
        out["time"] = stamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return out


_PLACEHOLDER = re.compile(r"<([A-Za-z0-9_.\-]+)>")


def _inside_string(template: str, position: int) -> bool:
    quotes, escaped = 0, False
    for char in template[:position]:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quotes += 1
    return quotes % 2 == 1


def render_input_template(template: str, values: Mapping[str, Any], *, as_json: bool = True) -> str:
    """Fill `<name>` placeholders as EventBridge does.

    In a JSON template a value goes in as JSON outside quotes and as escaped text inside them; in a
    plain-text template (`as_json=False`) strings go in as they are.
    """

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            return match.group(0)
        value = values[name]
        if not as_json:
            return value if isinstance(value, str) else json.dumps(value)
        if _inside_string(template, match.start()):
            text = value if isinstance(value, str) else json.dumps(value)
            return json.dumps(text)[1:-1]
        return json.dumps(value)

    return _PLACEHOLDER.sub(substitute, template)


def target_input(target: Mapping[str, Any], event: Mapping[str, Any], rule_arn: str = "") -> str:
    """The JSON text a rule target receives for `event` (already normalised)."""
    if "Input" in target:
        return str(target["Input"])
    if "InputPath" in target:
        return json.dumps(json_path(event, str(target["InputPath"])))
    transformer = target.get("InputTransformer")
    if transformer:
        values: dict[str, Any] = {}
        for name, path in (transformer.get("InputPathsMap") or {}).items():
            try:
                values[name] = json_path(event, str(path))
            except KeyError:
                values[name] = None
        values.setdefault("aws.events.rule-arn", rule_arn)
        values.setdefault("aws.events.rule-name", rule_arn.rsplit("/", 1)[-1])
        values.setdefault("aws.events.event", dict(event))
        values.setdefault("aws.events.event.json", dict(event))
        template = str(transformer["InputTemplate"])
        rendered = render_input_template(template, values)
        try:
            json.loads(rendered)
            return rendered
        except ValueError:  # a plain-text template: the target receives the text
            return json.dumps(render_input_template(template, values, as_json=False))
    return json.dumps(event)


# ---------------------------------------------------------------------- delivery
@dataclass(frozen=True)
class DeliveryRecord:
    """One delivery attempt to one target."""

    source_arn: str
    target_id: str
    target_arn: str
    ok: bool
    detail: str
    at: float


def _service(arn: str) -> str:
    parts = arn.split(":")
    return parts[2] if len(parts) > 2 else ""


class EventDelivery:
    """Delivers EventBridge rule and Scheduler targets; see the module docstring."""

    SERVICES = frozenset({"lambda", "states"})

    def __init__(
        self,
        invoker: LambdaInvoker,
        aws: AwsClients,
        *,
        check_permissions: bool = True,
        threads: int = 4,
        history_size: int = 1000,
    ) -> None:
        self.invoker = invoker
        self.aws = aws
        self.check_permissions = check_permissions
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="eventbridge")
        self._lock = threading.Condition()
        self._pending = 0
        self._records: list[DeliveryRecord] = []
        self._history_size = history_size

    def handles(self, target_arn: str) -> bool:
        """Whether rule targets with this ARN are delivered here (the rest stay with moto)."""
        return _service(target_arn) in self.SERVICES

    # ------------------------------------------------------------------ rules
    def deliver_rule_event(
        self, rule_arn: str, targets: Iterable[Mapping[str, Any]], event: dict[str, Any]
    ) -> None:
        """Queue `event` for each target (EventBridge delivers asynchronously)."""
        if event.get("id") == _S3_PLACEHOLDER_EVENT_ID:
            event["id"] = str(uuid.uuid4())  # shared by every rule this S3 event reaches
        shaped = normalize_event(event)
        for target in targets:
            target = dict(target)
            with self._lock:
                self._pending += 1
            self._executor.submit(self._deliver_rule_target, rule_arn, target, shaped)

    def _deliver_rule_target(self, rule_arn: str, target: dict[str, Any], event: dict[str, Any]) -> None:
        try:
            payload = target_input(target, event, rule_arn)
            self.deliver(rule_arn, target, payload, principal="events.amazonaws.com")
        except Exception as exc:  # a failed delivery must never break the caller
            self.record(rule_arn, target, False, f"{type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                self._pending -= 1
                self._lock.notify_all()

    # ------------------------------------------------------------------ any source
    def deliver(
        self, source_arn: str, target: Mapping[str, Any], payload: str, *, principal: str
    ) -> DeliveryRecord:
        """Send `payload` to the target now; the outcome is recorded and returned."""
        arn = str(target["Arn"])
        service = _service(arn)
        if service == "lambda":
            if self.check_permissions and principal == "events.amazonaws.com":
                denied = self._lambda_permission_problem(arn, source_arn, principal)
                if denied:
                    LOG.warning("EventBridge could not invoke %s: %s", arn, denied)
                    return self.record(source_arn, target, False, denied)
            self.invoker.invoke_async(arn, payload)
            return self.record(source_arn, target, True, "invoked asynchronously")
        if service == "states":
            if not target.get("RoleArn"):
                return self.record(source_arn, target, False, "a Step Functions target needs a RoleArn")
            started = self.aws.client("stepfunctions").start_execution(
                stateMachineArn=arn, name=str(uuid.uuid4()), input=payload
            )
            return self.record(source_arn, target, True, f"started {started['executionArn']}")
        if service == "sqs":
            queue = self.aws.client("sqs").get_queue_url(QueueName=arn.rsplit(":", 1)[-1])["QueueUrl"]
            self.aws.client("sqs").send_message(QueueUrl=queue, MessageBody=payload)
            return self.record(source_arn, target, True, "sent to queue")
        if service == "sns":
            self.aws.client("sns").publish(TopicArn=arn, Message=payload)
            return self.record(source_arn, target, True, "published")
        return self.record(
            source_arn, target, False, f"targets of service {service!r} are not delivered locally"
        )

    def _lambda_permission_problem(self, function_arn: str, source_arn: str, principal: str) -> str | None:
        try:
            policy = json.loads(self.aws.client("lambda").get_policy(FunctionName=function_arn)["Policy"])
        except Exception as exc:
            if "ResourceNotFound" in type(exc).__name__ or "ResourceNotFound" in str(exc):
                return f"the function has no resource policy allowing {principal} (add an AWS::Lambda::Permission)"
            raise
        for statement in policy.get("Statement", []):
            principals = statement.get("Principal", {})
            services = principals.get("Service", []) if isinstance(principals, dict) else principals
            services = [services] if isinstance(services, str) else services
            actions = statement.get("Action", [])
            actions = [actions] if isinstance(actions, str) else actions
            if (
                statement.get("Effect") == "Allow"
                and (principal in services or "*" in services)
                and any(a in {"lambda:InvokeFunction", "lambda:*", "*"} for a in actions)
                and conditions_hold(statement.get("Condition") or {}, {"AWS:SourceArn": source_arn})
            ):
                return None
        return f"no statement of the function's resource policy allows {principal} from {source_arn}"

    def record(self, source_arn: str, target: Mapping[str, Any], ok: bool, detail: str) -> DeliveryRecord:
        """Keep (and return) the outcome of one delivery attempt."""
        record = DeliveryRecord(
            source_arn, str(target.get("Id", "")), str(target.get("Arn", "")), ok, detail, time.time()
        )
        with self._lock:
            self._records.append(record)
            del self._records[: max(0, len(self._records) - self._history_size)]
        return record

    # ------------------------------------------------------------------ observing
    def records(self) -> list[DeliveryRecord]:
        """Every recorded delivery attempt, oldest first."""
        with self._lock:
            return list(self._records)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until queued rule deliveries have been handed to their targets; False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: not self._pending, timeout)

    def shutdown(self) -> None:
        """Stop accepting deliveries (queued ones are dropped)."""
        self._executor.shutdown(wait=False, cancel_futures=True)


# ---------------------------------------------------------------------- schedule expressions
_MONTHS = {name: i for i, name in enumerate(calendar.month_abbr) if name}
_MONTHS = {name.upper(): i for name, i in _MONTHS.items()}
_DAYS = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}
_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_AT = re.compile(r"^at\((\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\)$")
_CRON = re.compile(r"^cron\((.*)\)$")


def _field_values(text: str, low: int, high: int, names: Mapping[str, int], what: str) -> set[int]:
    values: set[int] = set()

    def number(token: str) -> int:
        token = token.upper()
        if token in names:
            return names[token]
        if not token.isdigit():
            raise ScheduleExpressionError(f"cron {what}: {token!r} is not a number or name")
        value = int(token)
        if not low <= value <= high:
            raise ScheduleExpressionError(f"cron {what}: {value} is outside {low}-{high}")
        return value

    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if step_text and (not step_text.isdigit() or step < 1):
            raise ScheduleExpressionError(f"cron {what}: bad step in {part!r}")
        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, _, last = base.partition("-")
            start, end = number(first), number(last)
        else:
            start = number(base)
            end = high if step_text else start
        if start > end:
            raise ScheduleExpressionError(f"cron {what}: range {part!r} runs backwards")
        values.update(range(start, end + 1, step))
    return values


class CronExpression:
    """AWS's six-field cron: minutes hours day-of-month month day-of-week year (UTC unless a timezone)."""

    def __init__(self, text: str) -> None:
        fields = text.split()
        if len(fields) != 6:
            raise ScheduleExpressionError(
                f"cron({text}) needs 6 fields (minutes hours day-of-month month day-of-week year)"
            )
        minute, hour, dom, month, dow, year = fields
        if (dom == "?") == (dow == "?"):
            raise ScheduleExpressionError(
                f"cron({text}): exactly one of day-of-month and day-of-week must be '?'"
            )
        self.text = text
        self.minutes = sorted(_field_values(minute, 0, 59, {}, "minutes"))
        self.hours = sorted(_field_values(hour, 0, 23, {}, "hours"))
        self.months = _field_values(month, 1, 12, _MONTHS, "month")
        self.years = _field_values(year, 1970, 2199, {}, "year")
        self._day: Callable[[date], bool] = self._dom_matcher(dom) if dom != "?" else self._dow_matcher(dow)

    @staticmethod
    def _dom_matcher(text: str) -> Callable[[date], bool]:
        if text == "L":
            return lambda d: d.day == calendar.monthrange(d.year, d.month)[1]
        if text == "LW":
            return lambda d: d == _last_weekday(d.year, d.month)
        if text.endswith("W") and text[:-1].isdigit():
            target = int(text[:-1])
            return lambda d: d == _nearest_weekday(d.year, d.month, target)
        days = _field_values(text, 1, 31, {}, "day-of-month")
        return lambda d: d.day in days

    @staticmethod
    def _dow_matcher(text: str) -> Callable[[date], bool]:
        def aws_day(d: date) -> int:  # 1 = Sunday ... 7 = Saturday
            return (d.weekday() + 1) % 7 + 1

        if text == "L":
            return lambda d: aws_day(d) == 7
        if "#" in text:
            day_text, _, nth_text = text.partition("#")
            day = _field_values(day_text, 1, 7, _DAYS, "day-of-week").pop()
            nth = int(nth_text)
            if not 1 <= nth <= 5:
                raise ScheduleExpressionError(f"cron day-of-week: {text!r} needs #1 to #5")
            return lambda d: aws_day(d) == day and (d.day - 1) // 7 + 1 == nth
        if text.endswith("L") and len(text) > 1:
            day = _field_values(text[:-1], 1, 7, _DAYS, "day-of-week").pop()
            return lambda d: aws_day(d) == day and d.day + 7 > calendar.monthrange(d.year, d.month)[1]
        days = _field_values(text, 1, 7, _DAYS, "day-of-week")
        return lambda d: aws_day(d) in days

    def next_after(self, after: datetime) -> datetime | None:
        """The first fire time strictly after `after` (aware; computed in `after`'s timezone)."""
        zone = after.tzinfo
        day = after.date()
        while day.year <= 2199:
            if day.year not in self.years:
                day = date(day.year + 1, 1, 1)
                continue
            if day.month not in self.months:
                day = date(day.year + (day.month == 12), day.month % 12 + 1, 1)
                continue
            if self._day(day):
                for hour in self.hours:
                    for minute in self.minutes:
                        candidate = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
                        if candidate > after:
                            return candidate
            day += timedelta(days=1)
        return None


def _last_weekday(year: int, month: int) -> date:
    day = date(year, month, calendar.monthrange(year, month)[1])
    while day.weekday() >= 5:
        day -= timedelta(days=1)
    return day


def _nearest_weekday(year: int, month: int, target: int) -> date:
    last = calendar.monthrange(year, month)[1]
    day = date(year, month, min(target, last))
    if day.weekday() == 5:  # Saturday -> Friday, unless that leaves the month
        return day - timedelta(days=1) if day.day > 1 else day + timedelta(days=2)
    if day.weekday() == 6:  # Sunday -> Monday, unless that leaves the month
        return day + timedelta(days=1) if day.day < last else day - timedelta(days=2)
    return day


def next_fire_time(
    expression: str,
    after: datetime,
    *,
    timezone: str = "UTC",
    anchor: datetime | None = None,
) -> datetime | None:
    """When a schedule next fires strictly after `after` (UTC), or None if it never does again.

    `rate(n unit)` fires every period counted from `anchor` (the start date or creation time);
    `cron(...)` and `at(...)` are read in `timezone`.
    """
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleExpressionError(f"unknown ScheduleExpressionTimezone {timezone!r}") from None
    after = after.astimezone(UTC)
    text = expression.strip()
    if rate := _RATE.match(text):
        value, unit = int(rate.group(1)), rate.group(2).rstrip("s")
        if value < 1:
            raise ScheduleExpressionError(f"{expression}: the rate must be at least 1")
        period = timedelta(**{f"{unit}s": value})
        start = (anchor or after).astimezone(UTC)
        if start > after:
            return start + period
        periods = (after - start) // period + 1
        return start + periods * period
    if at := _AT.match(text):
        year, month, day, hour, minute, second = (int(g) for g in at.groups())
        when = datetime(year, month, day, hour, minute, second, tzinfo=zone).astimezone(UTC)
        return when if when > after else None
    if cron := _CRON.match(text):
        local = CronExpression(cron.group(1)).next_after(after.astimezone(zone))
        return None if local is None else local.astimezone(UTC)
    raise ScheduleExpressionError(f"{expression!r} is not rate(...), cron(...) or at(...)")


def substitute_context(
    text: str, *, scheduled_time: datetime, execution_id: str, schedule_arn: str, attempt: int = 1
) -> str:
    """Scheduler's context attributes in a target `Input`, as EventBridge Scheduler substitutes them."""
    values = {
        "<aws.scheduler.scheduled-time>": scheduled_time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "<aws.scheduler.execution-id>": execution_id,
        "<aws.scheduler.schedule-arn>": schedule_arn,
        "<aws.scheduler.attempt-number>": str(attempt),
    }
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    return text


# ---------------------------------------------------------------------- the scheduler
@dataclass
class _Plan:
    key: tuple[Any, ...]
    next_at: datetime | None


class Scheduler:
    """Fires EventBridge Scheduler schedules stored in moto; `start()` runs it on a thread."""

    def __init__(
        self,
        aws: AwsClients,
        delivery: EventDelivery,
        *,
        poll_interval: float = 1.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.aws = aws
        self.delivery = delivery
        self.poll_interval = poll_interval
        self.clock = clock
        self._plans: dict[str, _Plan] = {}
        self._started = clock().astimezone(UTC)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def schedules(self) -> list[dict[str, Any]]:
        """Every schedule in every group, as GetSchedule returns it."""
        client = self.aws.client("scheduler")
        groups = [g["Name"] for g in client.list_schedule_groups().get("ScheduleGroups", [])]
        found: list[dict[str, Any]] = []
        for group in groups:
            kwargs: dict[str, Any] = {"GroupName": group}
            while True:
                page = client.list_schedules(**kwargs)
                for summary in page.get("Schedules", []):
                    found.append(client.get_schedule(Name=summary["Name"], GroupName=group))
                if not page.get("NextToken"):
                    break
                kwargs["NextToken"] = page["NextToken"]
        return found

    def tick(self, now: datetime | None = None) -> list[DeliveryRecord]:
        """Fire every ENABLED schedule once, at `now` (default: the clock)."""
        moment = now or self.clock()
        with self._lock:
            return [self._fire(s, moment) for s in self.schedules() if s.get("State", "ENABLED") == "ENABLED"]

    def run_due(self, now: datetime | None = None) -> list[DeliveryRecord]:
        """Fire the schedules whose next fire time has come; plan the following one."""
        moment = (now or self.clock()).astimezone(UTC)
        records: list[DeliveryRecord] = []
        with self._lock:
            seen: set[str] = set()
            for schedule in self.schedules():
                arn = schedule["Arn"]
                seen.add(arn)
                if schedule.get("State", "ENABLED") != "ENABLED":
                    self._plans.pop(arn, None)
                    continue
                plan = self._plan(schedule, moment)
                if plan.next_at is None or plan.next_at > moment:
                    continue
                records.append(self._fire(schedule, plan.next_at))
                plan.next_at = self._next(schedule, moment)
            for arn in set(self._plans) - seen:
                del self._plans[arn]
        return records

    def _plan(self, schedule: Mapping[str, Any], moment: datetime) -> _Plan:
        key = (
            schedule.get("ScheduleExpression"),
            schedule.get("ScheduleExpressionTimezone"),
            schedule.get("StartDate"),
            schedule.get("EndDate"),
            schedule.get("LastModificationDate"),
        )
        plan = self._plans.get(schedule["Arn"])
        if plan is None or plan.key != key:
            # Count from when the schedule was created or last changed (a slot between that and the
            # first poll still fires), but never from before this scheduler started.
            stamps = [schedule.get("CreationDate"), schedule.get("LastModificationDate"), self._started]
            origin = min(max(s.astimezone(UTC) for s in stamps if isinstance(s, datetime)), moment)
            plan = _Plan(key, self._next(schedule, origin))
            self._plans[schedule["Arn"]] = plan
        return plan

    def _next(self, schedule: Mapping[str, Any], after: datetime) -> datetime | None:
        start, end = schedule.get("StartDate"), schedule.get("EndDate")
        anchor = start or schedule.get("CreationDate")
        if start is not None and start > after:
            after = start - timedelta(microseconds=1)
        try:
            when = next_fire_time(
                str(schedule["ScheduleExpression"]),
                after,
                timezone=str(schedule.get("ScheduleExpressionTimezone") or "UTC"),
                anchor=anchor,
            )
        except ScheduleExpressionError as exc:
            LOG.warning("schedule %s never fires: %s", schedule.get("Arn"), exc)
            return None
        if when is not None and end is not None and when > end:
            return None
        return when

    def _fire(self, schedule: Mapping[str, Any], scheduled_time: datetime) -> DeliveryRecord:
        target = dict(schedule["Target"])
        payload = substitute_context(
            str(target.get("Input", "{}")),
            scheduled_time=scheduled_time,
            execution_id=str(uuid.uuid4()),
            schedule_arn=str(schedule["Arn"]),
        )
        try:
            record = self.delivery.deliver(
                str(schedule["Arn"]), target, payload, principal="scheduler.amazonaws.com"
            )
        except Exception as exc:
            LOG.warning("schedule %s could not deliver to %s: %s", schedule["Arn"], target.get("Arn"), exc)
            record = self.delivery.record(str(schedule["Arn"]), target, False, f"{type(exc).__name__}: {exc}")
        if (
            str(schedule.get("ScheduleExpression", "")).startswith("at(")
            and schedule.get("ActionAfterCompletion") == "DELETE"
        ):
            self.aws.client("scheduler").delete_schedule(
                Name=schedule["Name"], GroupName=schedule["GroupName"]
            )
        return record

    # ------------------------------------------------------------------ thread
    def start(self) -> Scheduler:
        """Poll and fire on a daemon thread until `stop()`."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_interval):
            try:
                self.run_due()
            except Exception:
                LOG.exception("the scheduler could not read or fire schedules")

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the polling thread (bounded)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
