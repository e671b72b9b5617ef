"""EventBridge rule matching and target delivery: what each target receives, and when nothing is sent."""

from __future__ import annotations

import json
from concurrent.futures import Future
from typing import Any

import pytest
from moto.events.models import Rule

from modelops_local.events import (
    EventDelivery,
    json_path,
    normalize_event,
    render_input_template,
    target_input,
)
from modelops_local.lambda_runtime import InvocationResult
from modelops_local.moto_patches import MotoPatches

FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:s-greet"
MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:s-flow"
RULE_ARN = "arn:aws:events:us-east-1:123456789012:rule/s-data-arrived"
EVENT = {
    "version": "0",
    "id": "e-1",
    "detail-type": "Object Created",
    "source": "aws.s3",
    "account": "123456789012",
    "time": 1795335908.5,
    "region": "us-east-1",
    "resources": ["arn:aws:s3:::data"],
    "detail": {"bucket": {"name": "data"}, "object": {"key": "incoming/churn/a.csv", "size": 10}},
    "ingestion-time": 1795335908.6,
}


class FakeInvoker:
    """Records asynchronous invocations as the local runtime would receive them."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def invoke(
        self, function: str, payload: Any, *, invocation_type: str = "RequestResponse"
    ) -> InvocationResult:
        self.calls.append((function, json.loads(payload)))
        return InvocationResult(b"null")

    def invoke_async(self, function: str, payload: Any) -> Future[InvocationResult]:
        self.calls.append((function, json.loads(payload)))
        future: Future[InvocationResult] = Future()
        future.set_result(InvocationResult(b"null"))
        return future


class FakeLambda:
    """GetPolicy over a resource policy held in memory (None = the function has no policy)."""

    def __init__(self, policy: dict[str, Any] | None) -> None:
        self.policy = policy

    def get_policy(self, FunctionName: str) -> dict[str, Any]:
        if self.policy is None:
            raise RuntimeError("ResourceNotFoundException: The resource you requested does not exist.")
        return {"Policy": json.dumps(self.policy)}


class FakeStepFunctions:
    def __init__(self) -> None:
        self.started: list[dict[str, Any]] = []

    def start_execution(self, **kwargs: Any) -> dict[str, Any]:
        self.started.append(kwargs)
        return {"executionArn": f"{MACHINE}:{kwargs['name']}"}


class FakeAws:
    region = "us-east-1"
    account_id = "123456789012"

    def __init__(self, policy: dict[str, Any] | None) -> None:
        self.sfn = FakeStepFunctions()
        self.clients: dict[str, Any] = {"lambda": FakeLambda(policy), "stepfunctions": self.sfn}

    def client(self, service: str) -> Any:
        return self.clients[service]


def allow_events(source_arn: str = RULE_ARN) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "lambda:InvokeFunction",
                "Resource": FUNCTION,
                "Condition": {"ArnLike": {"AWS:SourceArn": source_arn}},
            }
        ],
    }


# ---------------------------------------------------------------------- target input
def test_json_paths_reach_fields_items_and_quoted_names():
    document = {"detail": {"object": {"key": "k"}, "items": [1, 2]}, "detail-type": "T"}
    assert json_path(document, "$.detail.object.key") == "k"
    assert json_path(document, "$.detail.items[1]") == 2
    assert json_path(document, "$['detail-type']") == "T"
    assert json_path(document, "$") == document
    with pytest.raises(KeyError, match="no field 'missing'"):
        json_path(document, "$.detail.missing")


def test_events_are_delivered_with_an_iso_time_and_without_moto_fields():
    shaped = normalize_event(EVENT)
    assert shaped["time"] == "2026-11-22T08:25:08Z"
    assert "ingestion-time" not in shaped


def test_a_target_without_input_settings_receives_the_whole_event():
    assert json.loads(target_input({"Id": "t", "Arn": FUNCTION}, normalize_event(EVENT))) == normalize_event(
        EVENT
    )


def test_input_replaces_the_event_and_input_path_selects_part_of_it():
    event = normalize_event(EVENT)
    assert target_input({"Input": '{"fixed": true}'}, event) == '{"fixed": true}'
    assert json.loads(target_input({"InputPath": "$.detail.object"}, event)) == {
        "key": "incoming/churn/a.csv",
        "size": 10,
    }


def test_input_transformer_quotes_strings_inside_quotes_and_inserts_json_outside():
    # Given a transformer using a string inside quotes, a number and an object outside quotes
    target = {
        "InputTransformer": {
            "InputPathsMap": {
                "key": "$.detail.object.key",
                "size": "$.detail.object.size",
                "bucket": "$.detail.bucket",
            },
            "InputTemplate": '{"message": "got <key> (<size> bytes)", "size": <size>, "bucket": <bucket>, "rule": "<aws.events.rule-name>"}',
        }
    }
    # When the input is rendered
    rendered = json.loads(target_input(target, normalize_event(EVENT), RULE_ARN))
    # Then each placeholder is substituted as EventBridge documents
    assert rendered == {
        "message": "got incoming/churn/a.csv (10 bytes)",
        "size": 10,
        "bucket": {"name": "data"},
        "rule": "s-data-arrived",
    }


def test_a_plain_text_template_is_delivered_as_a_json_string():
    target = {
        "InputTransformer": {
            "InputPathsMap": {"key": "$.detail.object.key"},
            "InputTemplate": "new object <key>",
        }
    }
    assert json.loads(target_input(target, normalize_event(EVENT))) == "new object incoming/churn/a.csv"


def test_placeholders_inside_strings_are_escaped():
    assert render_input_template('{"a": "<v>"}', {"v": 'say "hi"'}) == '{"a": "say \\"hi\\""}'


# ---------------------------------------------------------------------- rule matching (moto's matcher)
class RecordingDelivery:
    def __init__(self) -> None:
        self.delivered: list[tuple[str, list[str], dict[str, Any]]] = []

    def handles(self, arn: str) -> bool:
        return arn.split(":")[2] in {"lambda", "states"}

    def deliver_rule_event(self, rule_arn: str, targets: Any, event: dict[str, Any]) -> None:
        self.delivered.append((rule_arn, [t["Id"] for t in targets], event))


def s3_rule(state: str = "ENABLED") -> Rule:
    pattern = {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {"bucket": {"name": ["data"]}, "object": {"key": [{"prefix": "incoming/"}]}},
    }
    rule = Rule(  # type: ignore[abstract]
        "s-data-arrived", "123456789012", "us-east-1", None, json.dumps(pattern), None, None, "default", state
    )
    rule.put_targets(
        [{"Id": "fn", "Arn": FUNCTION}, {"Id": "flow", "Arn": MACHINE, "RoleArn": "arn:aws:iam::1:role/r"}]
    )
    return rule


@pytest.fixture
def routed():
    delivery = RecordingDelivery()
    with MotoPatches() as patches:
        patches.route_eventbridge(delivery)  # type: ignore[arg-type,unused-ignore]
        yield delivery


def test_a_matching_event_reaches_lambda_and_step_functions_targets(routed):
    # Given an enabled rule on Object Created under incoming/
    rule = s3_rule()
    # When a matching event is sent to its targets
    rule.send_to_targets(dict(EVENT), transform_input=False)  # type: ignore[arg-type]
    # Then both targets are handed to the delivery once
    assert [(arn, ids) for arn, ids, _ in routed.delivered] == [(rule.arn, ["fn", "flow"])]


def test_non_matching_events_and_disabled_rules_deliver_nothing(routed):
    other_prefix = {**EVENT, "detail": {"bucket": {"name": "data"}, "object": {"key": "models/a.tar.gz"}}}
    s3_rule().send_to_targets(other_prefix, transform_input=False)  # type: ignore[arg-type]
    s3_rule(state="DISABLED").send_to_targets(dict(EVENT), transform_input=False)  # type: ignore[arg-type]
    assert routed.delivered == []


# ---------------------------------------------------------------------- delivery
def test_lambda_targets_need_a_resource_policy_allowing_the_rule():
    # Given a function whose policy allows this rule, and one whose policy allows another rule
    allowed, other = FakeInvoker(), FakeInvoker()
    ok = EventDelivery(allowed, FakeAws(allow_events())).deliver(
        RULE_ARN, {"Id": "fn", "Arn": FUNCTION}, "{}", principal="events.amazonaws.com"
    )
    denied = EventDelivery(other, FakeAws(allow_events(RULE_ARN + "-other"))).deliver(
        RULE_ARN, {"Id": "fn", "Arn": FUNCTION}, "{}", principal="events.amazonaws.com"
    )
    missing = EventDelivery(FakeInvoker(), FakeAws(None)).deliver(
        RULE_ARN, {"Id": "fn", "Arn": FUNCTION}, "{}", principal="events.amazonaws.com"
    )
    # Then only the permitted one is invoked; the others are recorded as failed deliveries
    assert ok.ok and allowed.calls == [(FUNCTION, {})]
    assert not denied.ok and other.calls == [] and "no statement" in denied.detail
    assert not missing.ok and "AWS::Lambda::Permission" in missing.detail


def test_step_functions_targets_start_a_uniquely_named_execution_with_the_input():
    aws = FakeAws(None)
    delivery = EventDelivery(FakeInvoker(), aws)
    target = {"Id": "flow", "Arn": MACHINE, "RoleArn": "arn:aws:iam::123456789012:role/events"}
    first = delivery.deliver(RULE_ARN, target, '{"a": 1}', principal="events.amazonaws.com")
    delivery.deliver(RULE_ARN, target, '{"a": 2}', principal="events.amazonaws.com")
    started = aws.sfn.started
    assert first.ok and [s["input"] for s in started] == ['{"a": 1}', '{"a": 2}']
    assert started[0]["name"] != started[1]["name"]
    without_role = delivery.deliver(
        RULE_ARN, {"Id": "flow", "Arn": MACHINE}, "{}", principal="events.amazonaws.com"
    )
    assert not without_role.ok and "RoleArn" in without_role.detail


def test_rule_events_are_delivered_in_the_background_with_a_fresh_id_for_moto_s3_events():
    # Given moto's S3 event, which always carries the same placeholder id
    invoker = FakeInvoker()
    delivery = EventDelivery(invoker, FakeAws(allow_events()))
    event = {**EVENT, "id": "17793124-05d4-b198-2fde-7ededc63b103"}
    # When a rule delivers it
    delivery.deliver_rule_event(RULE_ARN, [{"Id": "fn", "Arn": FUNCTION}], event)
    assert delivery.wait_idle(5)
    # Then the function got the shaped event with a new id
    ((function, payload),) = invoker.calls
    assert function == FUNCTION and payload["id"] != "17793124-05d4-b198-2fde-7ededc63b103"
    assert payload["time"] == "2026-11-22T08:25:08Z"
    delivery.shutdown()
