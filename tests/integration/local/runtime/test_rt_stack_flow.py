"""A SAM fixture stack deployed on the in-process moto server, driven the way the product is used:
a state machine with lambda:invoke, a callback task and a caught function error; S3 Object Created
through an EventBridge rule to a function; a schedule fired on demand; cold starts and timeouts."""

from __future__ import annotations

import json
import os
import time

import pytest

pytestmark = pytest.mark.timeout(120)


def seen_events(backbone, bucket: str) -> list[dict]:
    s3 = backbone.client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="seen/").get("Contents", [])]
    return [json.loads(s3.get_object(Bucket=bucket, Key=k)["Body"].read())["event"] for k in keys]


def test_outputs_conditions_and_functions_come_from_the_template(backbone, fixture_stack):
    # Given the fixture stack deployed with Stage left at its default (dev)
    outputs = fixture_stack.outputs
    # Then Outputs are resolved, the prod-only topic and its output are skipped
    assert outputs["StateMachineArn"] == "arn:aws:states:us-east-1:123456789012:stateMachine:fx-flow"
    assert outputs["StageLabel"] == "dev-aws"
    assert "TopicArn" not in outputs and "ProdOnlyTopic" not in fixture_stack.resources
    # And the SSM parameter holds values substituted from other resources
    config = json.loads(backbone.client("ssm").get_parameter(Name="/fixture/fx/config")["Parameter"]["Value"])
    assert config == {
        "bucket": outputs["BucketName"],
        "state_machine": outputs["StateMachineArn"],
        "greet": "arn:aws:lambda:us-east-1:123456789012:function:fx-greet",
    }
    # And each function runs from its own folder with the layer and its resolved environment
    greet = fixture_stack.functions["GreetFunction"]
    assert greet.code_dir.name == "greet" and [d.name for d in greet.layer_dirs] == ["shared"]
    assert (
        greet.environment["STAGE"] == "development"
        and greet.environment["BUCKET_NAME"] == outputs["BucketName"]
    )
    assert greet.timeout == 20 and greet.memory_mb == 256


def test_state_machine_runs_tasks_resumes_a_callback_and_catches_the_error_name(backbone, fixture_stack):
    # Given the flow state machine
    sfn, s3 = backbone.client("stepfunctions"), backbone.client("s3")
    bucket = fixture_stack.outputs["BucketName"]
    # When an execution starts and parks its task token through a function
    execution = sfn.start_execution(
        stateMachineArn=fixture_stack.outputs["StateMachineArn"],
        name="run-1",
        input=json.dumps({"name": "ada"}),
    )["executionArn"]
    backbone.wait_for(
        lambda: s3.list_objects_v2(Bucket=bucket, Prefix="tokens/run-1").get("KeyCount"),
        "the parked task token",
    )
    # And another function resumes it with SendTaskSuccess
    resumed = backbone.client("lambda").invoke(
        FunctionName="fx-tokens", Payload=json.dumps({"action": "resume", "execution": "run-1"})
    )
    assert "FunctionError" not in resumed
    described = backbone.wait_for(
        lambda: (d := sfn.describe_execution(executionArn=execution))["status"] != "RUNNING" and d,
        "the execution to finish",
    )
    # Then it went through every state and the Catch matched the exception class name
    history = sfn.get_execution_history(executionArn=execution, maxResults=1000)["events"]
    entered = [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]
    assert described["status"] == "SUCCEEDED"
    assert entered == ["Greet", "Park", "Validate", "Rejected"]
    output = json.loads(described["output"])
    assert output["greet"] == {"greeting": "hello, ada"} and output["resumed"] == {"resumed": True}
    assert output["error"]["Error"] == "DatasetRejectedError"
    cause = json.loads(output["error"]["Cause"])
    assert (
        cause["errorType"] == "DatasetRejectedError"
        and cause["errorMessage"] == "dataset ada has no label column"
    )
    failed = [e for e in history if e["type"] == "LambdaFunctionFailed"]
    assert failed[0]["lambdaFunctionFailedEventDetails"]["error"] == "DatasetRejectedError"


def test_an_s3_upload_under_the_rule_prefix_invokes_the_function_once(backbone, fixture_stack):
    # Given the rule on Object Created under incoming/ of the data bucket
    bucket = fixture_stack.outputs["BucketName"]
    s3 = backbone.client("s3")
    before = len([r for r in backbone.runtime.history() if r.function_name == "fx-greet"])
    # When one object lands under incoming/ and one elsewhere
    s3.put_object(Bucket=bucket, Key="incoming/churn/2026-11-22.csv", Body=b"a,b\n1,2\n")
    s3.put_object(Bucket=bucket, Key="other/ignored.csv", Body=b"x")
    backbone.settle()
    # Then the function ran exactly once, asynchronously, and received the S3 event
    runs = [r for r in backbone.runtime.history() if r.function_name == "fx-greet"][before:]
    assert [(r.invocation_type, r.error_type) for r in runs] == [("Event", None)]
    events = [e for e in seen_events(backbone, bucket) if e.get("source") == "aws.s3"]
    assert [e["detail"]["object"]["key"] for e in events] == ["incoming/churn/2026-11-22.csv"]
    assert events[0]["detail-type"] == "Object Created" and events[0]["time"].endswith("Z")


def test_a_schedule_tick_invokes_its_target_with_the_context_attributes(backbone, fixture_stack):
    # Given an enabled nightly schedule and a disabled one, both targeting the greet function
    bucket = fixture_stack.outputs["BucketName"]
    # When the schedules are ticked
    records = backbone.scheduler.tick()
    backbone.settle()
    # Then only the enabled schedule fired, and its Input had the context attributes substituted
    assert [(r.source_arn.rsplit("/", 1)[-1], r.ok) for r in records] == [("nightly", True)]
    fired = [e for e in seen_events(backbone, bucket) if e.get("source") == "modelops.schedule"]
    assert len(fired) == 1
    assert fired[0]["schedule"] == "arn:aws:scheduler:us-east-1:123456789012:schedule/fx/nightly"
    assert fired[0]["at"].endswith("Z") and "<aws.scheduler" not in json.dumps(fired[0])


def test_cold_start_is_recorded_once_and_the_worker_is_reused(backbone, fixture_stack):
    # Given a function not invoked yet
    client = backbone.client("lambda")
    before = backbone.runtime.metrics().get("fx-slow")
    assert before is not None and before.invocations == 0
    # When it is invoked twice
    first = client.invoke(FunctionName="fx-slow", Payload=b'{"sleep": 0}')
    second = client.invoke(FunctionName="fx-slow", Payload=b'{"sleep": 0}')
    # Then one init duration was recorded and the same worker process answered both
    metrics = backbone.runtime.metrics()["fx-slow"]
    assert metrics.invocations == 2 and len(metrics.init_durations) == 1 and metrics.init_durations[0] > 0
    assert json.loads(first["Payload"].read())["pid"] == json.loads(second["Payload"].read())["pid"]
    runs = [r.cold_start for r in backbone.runtime.history() if r.function_name == "fx-slow"]
    assert runs == [True, False]


def test_a_timeout_kills_the_worker_and_the_next_invocation_starts_fresh(backbone, fixture_stack):
    # Given the slow function (Timeout: 1) warmed up
    client = backbone.client("lambda")
    warm_pid = json.loads(client.invoke(FunctionName="fx-slow", Payload=b'{"sleep": 0}')["Payload"].read())[
        "pid"
    ]
    # When an invocation runs past its timeout
    started = time.monotonic()
    timed_out = client.invoke(FunctionName="fx-slow", Payload=b'{"sleep": 5}')
    elapsed = time.monotonic() - started
    # Then Lambda's timeout error comes back after about the timeout, and the worker is gone
    document = json.loads(timed_out["Payload"].read())
    assert timed_out["FunctionError"] == "Unhandled"
    assert (
        document["errorType"] == "Sandbox.Timedout"
        and "Task timed out after 1.00 seconds" in document["errorMessage"]
    )
    assert elapsed < 4
    with pytest.raises(ProcessLookupError):
        os.kill(warm_pid, 0)
    # And the next invocation gets a new worker
    fresh = json.loads(client.invoke(FunctionName="fx-slow", Payload=b'{"sleep": 0}')["Payload"].read())
    assert fresh["pid"] != warm_pid
    assert backbone.runtime.metrics()["fx-slow"].timeouts == 1
    assert "Task timed out after 1.00 seconds" in backbone.runtime.log_path("fx-slow").read_text()
