"""The same stack under moto's `mock_aws` with the handlers run as Python in this process
(`InProcessLambda`): how tests of the functions and the state machine can use the template."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from moto import mock_aws

from modelops_local.aws_server import InProcessAws
from modelops_local.events import EventDelivery
from modelops_local.moto_patches import MotoPatches
from modelops_local.stack import deploy_stack
from tests.in_process_lambda import InProcessLambda

ROOT = Path(__file__).resolve().parents[4]
TEMPLATE = ROOT / "tests" / "fixtures" / "templates" / "runtime" / "template.yaml"
pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def in_process(monkeypatch, offline_aws):
    config = {
        "stepfunctions": {"execute_state_machine": True},
        "lambda": {"use_docker": False},
        "iam": {"load_aws_managed_policies": True},
    }
    with mock_aws(config=config), MotoPatches() as patches:  # type: ignore[call-overload]
        aws, functions = InProcessAws(), InProcessLambda()
        delivery = EventDelivery(functions, aws)
        patches.route_lambda(functions)
        patches.route_eventbridge(delivery)
        patches.s3_policy_conditions()
        stack = deploy_stack(TEMPLATE, "ip", {}, aws, lambda_runtime=functions)
        yield aws, functions, delivery, stack
        delivery.shutdown()
        functions.shutdown()


def test_the_state_machine_runs_with_handlers_invoked_as_python(in_process):
    # Given the fixture stack deployed under mock_aws with in-process handlers
    aws, functions, _, stack = in_process
    sfn = aws.client("stepfunctions")
    # When an execution runs and its callback task is resumed by the tokens handler
    execution = sfn.start_execution(
        stateMachineArn=stack.outputs["StateMachineArn"], name="e1", input=json.dumps({"name": "bob"})
    )["executionArn"]
    deadline = time.monotonic() + 20
    while not any(name == "ip-tokens" for name, _ in functions.invocations):
        assert time.monotonic() < deadline, "the callback task never parked its token"
        time.sleep(0.05)
    resumed = functions.invoke("ip-tokens", json.dumps({"action": "resume", "execution": "e1"}))
    assert resumed.function_error is None, resumed.payload
    while (described := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "the execution did not finish"
        time.sleep(0.05)
    # Then the run caught the handler's exception by its class name, as with worker processes
    output = json.loads(described["output"])
    assert described["status"] == "SUCCEEDED"
    assert output["greet"] == {"greeting": "hello, bob"}
    assert output["error"]["Error"] == "DatasetRejectedError"
    # And each handler ran with its own environment from the template
    assert [name for name, _ in functions.invocations][:2] == ["ip-greet", "ip-tokens"]


def test_s3_uploads_reach_the_handler_through_the_rule(in_process):
    aws, functions, delivery, stack = in_process
    aws.client("s3").put_object(Bucket=stack.outputs["BucketName"], Key="incoming/x.csv", Body=b"1")
    assert delivery.wait_idle(10)
    deadline = time.monotonic() + 10
    while not functions.invocations:
        assert time.monotonic() < deadline, "the rule did not invoke the handler"
        time.sleep(0.05)
    ((name, event),) = functions.invocations
    assert name == "ip-greet" and event["detail"]["object"]["key"] == "incoming/x.csv"
