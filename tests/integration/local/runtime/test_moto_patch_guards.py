"""Guards for every moto patch in modelops_local.moto_patches: they fail loudly when moto changes.

Each patched symbol must still exist with the parameters the patch was written against, and each
patch must still produce the behaviour the runtime relies on (checked under `mock_aws`, in-process).
"""

from __future__ import annotations

import importlib
import inspect
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from modelops_local.iam_conditions import conditions_hold
from modelops_local.lambda_runtime import FunctionSpec, LambdaThrottledError
from modelops_local.moto_patches import PATCHED_SYMBOLS, MotoPatches, RouteError
from tests.in_process_lambda import InProcessLambda
from tests.waiting import wait_for

REGION = "us-east-1"
ROLE_POLICY = json.dumps({"Version": "2012-10-17", "Statement": []})


def resolve(module: str, path: str) -> Any:
    owner: Any = importlib.import_module(module)
    for part in path.split(".")[:-1]:
        owner = getattr(owner, part)
    return owner, path.split(".")[-1]


@pytest.mark.parametrize(
    ("module", "path", "parameters"), PATCHED_SYMBOLS, ids=[p for _, p, _ in PATCHED_SYMBOLS]
)
def test_patched_symbols_keep_their_shape(module, path, parameters):
    # Given a moto symbol the runtime patches
    owner, name = resolve(module, path)
    # Then it exists with the parameters the patch expects (or, for an addition, is still missing)
    if parameters is None:
        assert name not in vars(owner), f"moto now implements {path}: drop the local addition"
    else:
        assert name in vars(owner), f"moto no longer defines {module}.{path}"
        assert tuple(inspect.signature(getattr(owner, name)).parameters) == parameters, (
            f"{path} changed signature"
        )


@pytest.fixture
def aws(offline_aws):
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}):
        yield


class DatasetRejectedError(Exception):
    pass


def reject(event: Any, context: Any) -> Any:
    raise DatasetRejectedError(f"dataset {event['name']} has no label column")


def create_function(name: str) -> str:
    role = boto3.client("iam", region_name=REGION).create_role(
        RoleName=f"{name}-role", AssumeRolePolicyDocument=ROLE_POLICY
    )
    return boto3.client("lambda", region_name=REGION).create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=role["Role"]["Arn"],
        Handler="app.handler",
        Code={"ZipFile": b"PK"},
    )["FunctionArn"]


def register(invoker: InProcessLambda, name: str, arn: str) -> None:
    invoker.register(FunctionSpec(name=name, arn=arn, code_dir=Path("."), handler="app.handler", timeout=5))


def test_lambda_invoke_reports_function_errors_as_lambda_does(aws):
    # Given a function whose handler raises, routed to Python
    invoker = InProcessLambda(overrides={"validate": reject, "echo": lambda event, context: {"got": event}})
    register(invoker, "validate", create_function("validate"))
    register(invoker, "echo", create_function("echo"))
    with MotoPatches() as patches:
        patches.route_lambda(invoker)
        client = boto3.client("lambda", region_name=REGION)
        # When it is invoked through the Lambda API
        failed = client.invoke(FunctionName="validate", Payload=json.dumps({"name": "d1"}))
        ok = client.invoke(FunctionName="echo", Payload=b'{"a": 1}')
        queued = client.invoke(FunctionName="echo", Payload=b'{"a": 2}', InvocationType="Event")
    # Then errors carry FunctionError and Lambda's error document; successes return the result
    document = json.loads(failed["Payload"].read())
    assert failed["FunctionError"] == "Unhandled"
    assert (
        document["errorType"] == "DatasetRejectedError"
        and document["errorMessage"] == "dataset d1 has no label column"
    )
    assert json.loads(ok["Payload"].read()) == {"got": {"a": 1}}
    assert queued["StatusCode"] == 202


def create_machine(definition: dict) -> str:
    """Create a state machine "m" running `definition`; returns its ARN."""
    role = boto3.client("iam", region_name=REGION).create_role(
        RoleName="sfn", AssumeRolePolicyDocument=ROLE_POLICY
    )["Role"]["Arn"]
    return str(
        boto3.client("stepfunctions", region_name=REGION).create_state_machine(
            name="m", definition=json.dumps(definition), roleArn=role
        )["stateMachineArn"]
    )


def finished(sfn: Any, arns: list[str], timeout: float = 20) -> dict[str, dict]:
    """DescribeExecution of each execution once none is RUNNING (bounded wait)."""
    deadline = time.monotonic() + timeout
    described: dict[str, dict] = {}
    while len(described) < len(arns):
        assert time.monotonic() < deadline, "executions did not finish"
        for arn in arns:
            result = sfn.describe_execution(executionArn=arn)
            if result["status"] != "RUNNING":
                described[arn] = result
        time.sleep(0.05)
    return described


def run_machine(definition: dict, invoker: InProcessLambda, payload: dict) -> tuple[dict, list[dict]]:
    """Create the state machine, run one execution with Lambda routed to `invoker` (bounded wait);
    returns DescribeExecution and the execution's history events."""
    sfn = boto3.client("stepfunctions", region_name=REGION)
    machine = create_machine(definition)
    with MotoPatches() as patches:
        patches.route_lambda(invoker)
        execution = sfn.start_execution(stateMachineArn=machine, name="e1", input=json.dumps(payload))[
            "executionArn"
        ]
        described = finished(sfn, [execution])[execution]
        return described, sfn.get_execution_history(executionArn=execution)["events"]


def test_step_functions_catches_the_exception_class_name(aws):
    # Given a state machine whose Task (plain function ARN) catches DatasetRejectedError
    invoker = InProcessLambda(overrides={"validate": reject})
    arn = create_function("validate")
    register(invoker, "validate", arn)
    definition = {
        "StartAt": "Validate",
        "States": {
            "Validate": {
                "Type": "Task",
                "Resource": arn,
                "Catch": [
                    {"ErrorEquals": ["DatasetRejectedError"], "ResultPath": "$.error", "Next": "Rejected"}
                ],
                "End": True,
            },
            "Rejected": {"Type": "Succeed"},
        },
    }
    # When it runs
    described, _ = run_machine(definition, invoker, {"name": "d1"})
    # Then the Catch saw Error = the class name and Cause = the error document, as on AWS
    error = json.loads(described["output"])["error"]
    assert described["status"] == "SUCCEEDED"
    assert error["Error"] == "DatasetRejectedError"
    assert json.loads(error["Cause"])["errorMessage"] == "dataset d1 has no label column"


def test_sagemaker_training_calls_reach_the_injected_stand_in(aws):
    # Given a training stand-in that keeps jobs in memory
    jobs: dict[str, dict[str, Any]] = {}

    def create(request: dict[str, Any]) -> dict[str, Any]:
        jobs[request["TrainingJobName"]] = {
            "TrainingJobName": request["TrainingJobName"],
            "TrainingJobStatus": "InProgress",
            "CreationTime": datetime(2026, 1, 1, tzinfo=UTC),
            "HyperParameters": request.get("HyperParameters", {}),
        }
        return {
            "TrainingJobArn": f"arn:aws:sagemaker:{REGION}:123456789012:training-job/{request['TrainingJobName']}"
        }

    def describe(name: str) -> dict[str, Any]:
        if name not in jobs:
            raise RouteError("ValidationException", "Requested resource not found.")
        return jobs[name]

    def stop(name: str) -> None:
        jobs[name]["TrainingJobStatus"] = "Stopping"

    sm = boto3.client("sagemaker", region_name=REGION)
    with MotoPatches() as patches:
        patches.route_sagemaker(create=create, describe=describe, stop=stop)
        # When a job is created, described, stopped, and an unknown job is described
        sm.create_training_job(
            TrainingJobName="t1",
            HyperParameters={"depth": "3"},
            AlgorithmSpecification={"TrainingImage": "img", "TrainingInputMode": "File"},
            RoleArn="arn:aws:iam::123456789012:role/sm",
            OutputDataConfig={"S3OutputPath": "s3://b/models"},
            ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
            StoppingCondition={"MaxRuntimeInSeconds": 600},
        )
        sm.stop_training_job(TrainingJobName="t1")
        described = sm.describe_training_job(TrainingJobName="t1")
        with pytest.raises(ClientError) as unknown:
            sm.describe_training_job(TrainingJobName="nope")
    # Then the stand-in saw the full request and its answers came back through the API
    assert described["TrainingJobStatus"] == "Stopping" and described["HyperParameters"] == {"depth": "3"}
    assert described["CreationTime"] == datetime(2026, 1, 1, tzinfo=UTC)
    assert unknown.value.response["Error"]["Code"] == "ValidationException"
    # And undoing the patches removed the local StopTrainingJob again
    with pytest.raises(NotImplementedError):
        sm.stop_training_job(TrainingJobName="t1")


def test_codebuild_calls_reach_the_injected_stand_in_with_every_member(aws):
    builds: dict[str, dict[str, Any]] = {}

    def start(request: dict[str, Any]) -> dict[str, Any]:
        build: dict[str, Any] = {
            "id": f"{request['projectName']}:b1",
            "buildStatus": "IN_PROGRESS",
            "environment": {"environmentVariables": request["environmentVariablesOverride"]},
        }
        builds[build["id"]] = build
        return build

    cb = boto3.client("codebuild", region_name=REGION)
    with MotoPatches() as patches:
        patches.route_codebuild(start=start, batch_get=lambda ids: [builds[i] for i in ids if i in builds])
        started = cb.start_build(
            projectName="p",
            environmentVariablesOverride=[{"name": "TAG", "value": "v1", "type": "PLAINTEXT"}],
        )
        got = cb.batch_get_builds(ids=["p:b1", "p:missing"])
    assert started["build"]["environment"]["environmentVariables"][0]["value"] == "v1"
    assert [b["id"] for b in got["builds"]] == ["p:b1"] and got["buildsNotFound"] == ["p:missing"]


def test_eks_describe_cluster_reports_the_local_api_server(aws):
    eks = boto3.client("eks", region_name=REGION)
    eks.create_cluster(
        name="local", roleArn="arn:aws:iam::123456789012:role/eks", resourcesVpcConfig={"subnetIds": []}
    )
    with MotoPatches() as patches:
        patches.route_eks_describe_cluster("https://127.0.0.1:6443", "-----BEGIN CERTIFICATE-----\nX\n")
        cluster = eks.describe_cluster(name="local")["cluster"]
        with pytest.raises(ClientError) as unknown:
            eks.describe_cluster(name="other")
    assert cluster["endpoint"] == "https://127.0.0.1:6443"
    assert cluster["certificateAuthority"]["data"] == "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tClgK"
    assert unknown.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_bucket_policy_conditions_are_evaluated_not_assumed(aws):
    # Given the template's TLS-only Deny on a bucket
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="data")
    deny = {
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": ["arn:aws:s3:::data", "arn:aws:s3:::data/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    s3.put_bucket_policy(Bucket="data", Policy=json.dumps({"Version": "2012-10-17", "Statement": [deny]}))
    # When objects are written without the patch, then with it
    with pytest.raises(ClientError, match="403"):
        s3.put_object(Bucket="data", Key="a", Body=b"x")  # moto still ignores the Condition
    with MotoPatches() as patches:
        patches.s3_policy_conditions()
        s3.put_object(Bucket="data", Key="a", Body=b"x")
        # And a Deny whose condition holds still denies
        s3.put_bucket_policy(
            Bucket="data",
            Policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{**deny, "Condition": {"Bool": {"aws:SecureTransport": "true"}}}],
                }
            ),
        )
        with pytest.raises(ClientError, match="403"):
            s3.put_object(Bucket="data", Key="b", Body=b"x")


def test_condition_operators():
    context = {"aws:SecureTransport": "true", "AWS:SourceArn": "arn:aws:events:us-east-1:1:rule/r1"}
    assert conditions_hold({"Bool": {"aws:securetransport": "true"}}, context)
    assert conditions_hold({"ArnLike": {"AWS:SourceArn": "arn:aws:events:*:1:rule/*"}}, context)
    assert not conditions_hold({"StringEquals": {"aws:SourceAccount": "1"}}, context)
    assert conditions_hold({"StringEqualsIfExists": {"aws:SourceAccount": "1"}}, context)
    assert conditions_hold({"Null": {"aws:SourceAccount": "true"}}, context)
    assert not conditions_hold({"NumericLessThan": {"aws:MultiFactorAuthAge": "3600"}}, context)


def test_undo_restores_moto():
    from moto.awslambda_simple.models import LambdaSimpleBackend
    from moto.events.models import Rule

    before = (LambdaSimpleBackend.invoke, Rule.send_to_targets)
    patches = MotoPatches()
    patches.route_lambda(InProcessLambda())
    patches.route_eventbridge(object())  # type: ignore[arg-type,unused-ignore]
    assert (LambdaSimpleBackend.invoke, Rule.send_to_targets) != before
    patches.undo()
    assert (LambdaSimpleBackend.invoke, Rule.send_to_targets) == before


def test_executions_emit_their_status_change_and_a_stop_aborts_at_once(aws):
    # Given a state machine that would wait 30 s, and one that ends at once
    sfn = boto3.client("stepfunctions", region_name=REGION)
    role = boto3.client("iam", region_name=REGION).create_role(
        RoleName="sfn-events", AssumeRolePolicyDocument=ROLE_POLICY
    )["Role"]["Arn"]

    def machine(name: str, state: dict[str, Any]) -> str:
        definition = {"StartAt": "Only", "States": {"Only": {**state, "End": True}}}
        return sfn.create_state_machine(name=name, definition=json.dumps(definition), roleArn=role)[
            "stateMachineArn"
        ]

    slow = machine("slow", {"Type": "Wait", "Seconds": 30})
    quick = machine("quick", {"Type": "Pass"})
    events: list[dict[str, Any]] = []
    with MotoPatches() as patches:
        patches.execution_status_events(events.append)
        # When one is stopped mid-wait and the other runs to its end
        stopped = sfn.start_execution(stateMachineArn=slow, name="s1", input='{"model": "churn"}')[
            "executionArn"
        ]
        time.sleep(0.3)
        sfn.stop_execution(executionArn=stopped)
        status_after_stop = sfn.describe_execution(executionArn=stopped)["status"]
        done = sfn.start_execution(stateMachineArn=quick, name="q1", input="{}")["executionArn"]
        # 30 s: 10 s was too short for the Pass state's execution beside the e2e lanes under a
        # CPU hog; the wait ends as soon as both have emitted
        wait_for(
            lambda: {stopped, done} <= {e["detail"]["executionArn"] for e in events},
            "both executions' status change events",
            timeout=30,
        )
    # Then the stopped one is ABORTED at once (moto alone keeps it RUNNING until its state ends)
    assert status_after_stop == "ABORTED"
    by_arn = {e["detail"]["executionArn"]: e for e in events}
    aborted, succeeded = by_arn[stopped], by_arn[done]
    # And each emitted the event EventBridge carries on AWS, once
    assert (
        aborted["source"] == "aws.states"
        and aborted["detail-type"] == "Step Functions Execution Status Change"
    )
    assert aborted["detail"]["status"] == "ABORTED" and aborted["detail"]["stateMachineArn"] == slow
    assert json.loads(aborted["detail"]["input"]) == {"model": "churn"} and aborted["detail"]["stopDate"]
    assert succeeded["detail"]["status"] == "SUCCEEDED" and succeeded["detail"]["output"] == "{}"
    assert len(events) == 2


class ThrottledOnce(InProcessLambda):
    """Throttles the first synchronous invoke (no free worker), then runs normally."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.throttled = 0

    def invoke(self, arn: str, payload: bytes) -> Any:
        if self.throttled == 0:
            self.throttled += 1
            raise LambdaThrottledError(f"function {arn}: all workers stayed busy")
        return super().invoke(arn, payload)


def test_a_throttled_invoke_reaches_retry_as_lambda_too_many_requests(aws):
    # Given a Task that retries Lambda.TooManyRequestsException, as the workflow's Tasks do
    invoker = ThrottledOnce(overrides={"echo": lambda event, context: {"ok": True}})
    arn = create_function("echo")
    register(invoker, "echo", arn)
    retry = [{"ErrorEquals": ["Lambda.TooManyRequestsException"], "IntervalSeconds": 1, "MaxAttempts": 2}]
    definition = {
        "StartAt": "Echo",
        "States": {"Echo": {"Type": "Task", "Resource": arn, "Retry": retry, "End": True}},
    }
    # When the first invoke is throttled
    described, events = run_machine(definition, invoker, {})
    # Then the error is named as Step Functions names it, the Retry matched, and the run succeeded
    failed = [
        e["lambdaFunctionFailedEventDetails"] for e in events if "lambdaFunctionFailedEventDetails" in e
    ]
    assert [f["error"] for f in failed] == ["Lambda.TooManyRequestsException"]
    assert invoker.throttled == 1 and described["status"] == "SUCCEEDED", described


def test_a_definition_parsed_once_still_runs_each_execution_on_its_own_input(aws, monkeypatch):
    # Given a state machine with a Choice, a Retry-free Pass and a Fail path, parsed once
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

    parses = []
    original = AmazonStateLanguageParser.parse
    monkeypatch.setattr(
        AmazonStateLanguageParser, "parse", staticmethod(lambda text: parses.append(1) or original(text))
    )
    definition = {
        "StartAt": "Which",
        "States": {
            "Which": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.n", "NumericGreaterThan": 0, "Next": "Double"}],
                "Default": "Refuse",
            },
            "Double": {"Type": "Pass", "Parameters": {"n.$": "States.MathAdd($.n, $.n)"}, "End": True},
            "Refuse": {"Type": "Fail", "Error": "NotPositiveError", "Cause": "n <= 0"},
        },
    }
    sfn = boto3.client("stepfunctions", region_name=REGION)
    machine = create_machine(definition)
    parses.clear()  # CreateStateMachine validates by parsing; executions are what is cached
    with MotoPatches() as patches:
        patches.parse_definitions_once()
        # When eight executions with different inputs run at once
        arns = [
            sfn.start_execution(stateMachineArn=machine, name=f"e{n}", input=json.dumps({"n": n}))[
                "executionArn"
            ]
            for n in range(-3, 5)
        ]
        described = finished(sfn, arns)
    # Then the definition was parsed once and each execution followed its own input
    assert len(parses) == 1
    for n, arn in zip(range(-3, 5), arns, strict=True):
        if n > 0:
            assert described[arn]["status"] == "SUCCEEDED" and json.loads(described[arn]["output"]) == {
                "n": 2 * n
            }
        else:
            assert described[arn]["status"] == "FAILED" and described[arn]["error"] == "NotPositiveError"


def test_interpreter_tasks_share_one_client_per_service_and_each_gets_its_own_answer(aws, monkeypatch):
    # Given a state machine whose two Lambda Tasks (a plain function ARN and lambda:invoke) each
    # add to the input, and a count of the clients moto's interpreter creates
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
    from moto.stepfunctions.parser.asl.utils import boto_client

    mine = lambda_eval_utils.boto_client_for
    created: list[str] = []
    original = boto_client.boto_client_for

    def counting(region: str, service: str, state_credentials: Any = None) -> Any:
        created.append(service)
        return original(region=region, service=service, state_credentials=state_credentials)

    monkeypatch.setattr(boto_client, "boto_client_for", counting)
    invoker = InProcessLambda(overrides={"add": lambda event, context: {"n": event["n"] + event["by"]}})
    arn = create_function("add")
    register(invoker, "add", arn)
    definition = {
        "StartAt": "Plain",
        "States": {
            "Plain": {
                "Type": "Task",
                "Resource": arn,
                "Parameters": {"n.$": "$.n", "by": 1},
                "Next": "Invoke",
            },
            "Invoke": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": arn, "Payload": {"n.$": "$.n", "by": 10}},
                "OutputPath": "$.Payload",
                "End": True,
            },
        },
    }
    sfn = boto3.client("stepfunctions", region_name=REGION)
    machine = create_machine(definition)
    with MotoPatches() as patches:
        patches.route_lambda(invoker)
        patches.reuse_interpreter_clients()
        # When eight executions with different inputs run at once (16 Tasks)
        arns = [
            sfn.start_execution(stateMachineArn=machine, name=f"e{n}", input=json.dumps({"n": n}))[
                "executionArn"
            ]
            for n in range(8)
        ]
        described = finished(sfn, arns)
    # Then one Lambda client served all 16 Tasks, and each execution got its own answer
    assert created == ["lambda"]
    for n, arn_ in enumerate(arns):
        assert described[arn_]["status"] == "SUCCEEDED" and json.loads(described[arn_]["output"]) == {
            "n": n + 11
        }, described[arn_]
    # And undoing the patch gives moto its own function back
    assert lambda_eval_utils.boto_client_for is mine


def test_execution_history_pages_as_aws_documents(aws):
    # Given an execution of ten Pass states, each passing on a payload (its input and output)
    states = {
        f"P{i}": {"Type": "Pass", "Result": {"payload": "x" * 100}, "Next": f"P{i + 1}"} for i in range(10)
    }
    states["P10"] = {"Type": "Succeed"}
    sfn = boto3.client("stepfunctions", region_name=REGION)
    machine = create_machine({"StartAt": "P0", "States": states})
    with MotoPatches() as patches:
        patches.execution_history_pages()
        arn = sfn.start_execution(stateMachineArn=machine, name="e1", input="{}")["executionArn"]
        finished(sfn, [arn])
        whole = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
        ids = [e["id"] for e in whole]
        # Then one call returns at most maxResults events (100 by default) and a token for the rest
        assert (
            len(whole) > 20
            and ids == sorted(ids)
            and "nextToken" not in sfn.get_execution_history(executionArn=arn)
        )
        paged, kwargs = [], {"executionArn": arn, "maxResults": 7, "reverseOrder": True}
        while True:
            page = sfn.get_execution_history(**kwargs)
            assert len(page["events"]) <= 7
            paged += page["events"]
            if "nextToken" not in page:
                break
            kwargs["nextToken"] = page["nextToken"]
        # And the pages, newest first, are the whole history reversed, each event once
        assert [e["id"] for e in paged] == ids[::-1]
        # And without execution data no event carries a state's input or output
        bare = sfn.get_execution_history(executionArn=arn, maxResults=1000, includeExecutionData=False)[
            "events"
        ]
        assert [e["id"] for e in bare] == ids
        entered = [e["stateEnteredEventDetails"] for e in bare if "stateEnteredEventDetails" in e]
        assert [d["name"] for d in entered][:3] == ["P0", "P1", "P2"]
        assert not any(
            "input" in d or "output" in d for e in bare for k, d in e.items() if k.endswith("Details")
        )
        assert "x" * 100 in json.dumps(whole, default=str) and "x" * 100 not in json.dumps(bare, default=str)
        # And a token of another order, a made-up token or maxResults over 1000 is refused
        token = sfn.get_execution_history(executionArn=arn, maxResults=2)["nextToken"]
        for bad in (
            {"maxResults": 2, "nextToken": token, "reverseOrder": True},
            {"nextToken": "not-a-token"},
            {"maxResults": 1001},
        ):
            with pytest.raises(ClientError) as refused:
                sfn.get_execution_history(executionArn=arn, **bad)
            assert refused.value.response["Error"]["Code"] in {"InvalidToken", "ValidationException"}, bad


def test_a_history_page_after_a_token_neither_repeats_nor_skips_events_added_meanwhile():
    from modelops_local.moto_patches import history_page

    events = [{"id": i, "type": "Pass"} for i in range(1, 11)]
    first = history_page(events, "arn:e", max_results=3, reverse=True)
    assert [e["id"] for e in first["events"]] == [10, 9, 8]
    events += [{"id": 11, "type": "Pass"}, {"id": 12, "type": "Pass"}]  # the execution went on
    second = history_page(events, "arn:e", max_results=3, reverse=True, next_token=first["nextToken"])
    assert [e["id"] for e in second["events"]] == [7, 6, 5]
    with pytest.raises(Exception, match="InvalidToken|Invalid Token"):
        history_page(events, "arn:other", max_results=3, reverse=True, next_token=first["nextToken"])


def test_timestamps_parsed_once_parse_as_botocore_does():
    import botocore.parsers
    import botocore.utils

    original = botocore.utils.parse_timestamp
    texts = [
        "2026-12-01T10:00:00.000Z",
        "2026-12-01T10:00:00Z",
        "Tue, 01 Dec 2026 10:00:00 GMT",
        1796119200,
        "1796119200.5",
    ]
    with MotoPatches() as patches:
        patches.memoize_timestamp_parsing()
        parse = botocore.utils.parse_timestamp
        # Then every form parses to what botocore gives, the second time from the cache
        assert [parse(t) for t in texts] == [original(t) for t in texts]
        assert all(parse(t) is parse(t) for t in texts)
        assert botocore.parsers.DEFAULT_TIMESTAMP_PARSER is parse
        with pytest.raises(ValueError):
            parse("not a time")
    assert (
        botocore.utils.parse_timestamp is original and botocore.parsers.DEFAULT_TIMESTAMP_PARSER is original
    )


SHARING = """
import botocore.loaders, botocore.session
from modelops_local.moto_patches import MotoPatches

def model(session):
    return session.get_component("data_loader").load_service_model("dynamodb", "service-2")

a, b = botocore.session.get_session(), botocore.session.get_session()
assert model(a) is not model(b), "botocore itself shares: the patch is not needed"
expected = model(a)
with MotoPatches() as patches:
    patches.share_loader_caches()
    first, second = botocore.session.get_session(), botocore.session.get_session()
    assert model(first) is model(second), "two sessions parsed the model twice"
    assert model(first) == expected, "the shared model differs from botocore's own"
    other = botocore.loaders.Loader(extra_search_paths=[__import__("tempfile").mkdtemp()])
    assert other._cache is not first.get_component("data_loader")._cache, "other folders, one cache"
a, b = botocore.session.get_session(), botocore.session.get_session()
assert model(a) is not model(b), "undo left loaders sharing"
"""


def test_sessions_share_what_their_loaders_parsed_and_each_client_still_works(aws):
    import subprocess
    import sys
    import threading

    # Given a fresh interpreter (this test process shares loader caches already: tests/conftest.py)
    # Then two sessions share what one parsed, equal to botocore's own, and undo stops it
    done = subprocess.run([sys.executable, "-c", SHARING], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    # And clients made from sessions in threads at once all work (extras merge under one lock)
    with MotoPatches() as patches:
        patches.share_loader_caches()
        answers: list[Any] = []

        def table_names() -> None:
            client = boto3.session.Session().client("dynamodb", region_name=REGION)
            answers.append(client.list_tables()["TableNames"])

        threads = [threading.Thread(target=table_names) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert answers == [[]] * 6


def test_a_created_training_job_reaches_the_hook_and_what_it_sets_is_described(aws):
    # Given a hook that fails every training job with a reason
    seen: list[str] = []

    def fail(job: Any) -> None:
        seen.append(job.training_job_name)
        job.training_job_status, job.secondary_status, job.failure_reason = "Failed", "Failed", "OOM"

    sagemaker = boto3.client("sagemaker", region_name=REGION)
    role = boto3.client("iam", region_name=REGION).create_role(RoleName="sm", AssumeRolePolicyDocument="{}")
    with MotoPatches() as patches:
        patches.after_training_job_created(fail)
        # When a job is created through the API
        sagemaker.create_training_job(
            TrainingJobName="job-1",
            AlgorithmSpecification={"TrainingImage": "img:1", "TrainingInputMode": "File"},
            RoleArn=role["Role"]["Arn"],
            OutputDataConfig={"S3OutputPath": "s3://b/m"},
            ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
            StoppingCondition={"MaxRuntimeInSeconds": 60},
        )
        job = sagemaker.describe_training_job(TrainingJobName="job-1")
    # Then the hook saw it and DescribeTrainingJob reports what the hook set
    assert seen == ["job-1"]
    assert (job["TrainingJobStatus"], job["FailureReason"]) == ("Failed", "OOM")


def test_a_started_build_reaches_the_hook_before_start_build_returns(aws):
    # Given a hook that records each build it is given (the harness pushes the build's image there)
    seen: list[dict[str, Any]] = []
    codebuild = boto3.client("codebuild", region_name=REGION)
    role = boto3.client("iam", region_name=REGION).create_role(RoleName="cb", AssumeRolePolicyDocument="{}")
    codebuild.create_project(
        name="build",
        source={"type": "S3", "location": "b/source.zip"},
        artifacts={"type": "NO_ARTIFACTS"},
        environment={"type": "LINUX_CONTAINER", "image": "i", "computeType": "BUILD_GENERAL1_SMALL"},
        serviceRole=role["Role"]["Arn"],
    )
    with MotoPatches() as patches:
        patches.after_build_started(seen.append)
        # When a build starts
        started = codebuild.start_build(projectName="build")["build"]
    # Then the hook had it, by the id StartBuild answered, before the call returned
    assert [build["id"] for build in seen] == [started["id"]] and seen[0]["projectName"] == "build"


def test_held_executions_evaluate_nothing_until_released(aws):
    import threading

    sfn = boto3.client("stepfunctions", region_name=REGION)
    role = boto3.client("iam", region_name=REGION).create_role(RoleName="sf", AssumeRolePolicyDocument="{}")
    definition = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
    machine = sfn.create_state_machine(
        name="m", definition=json.dumps(definition), roleArn=role["Role"]["Arn"]
    )
    released = threading.Event()
    with MotoPatches() as patches:
        patches.hold_executions(released, timeout=30)
        # Given an execution started while held
        arn = sfn.start_execution(stateMachineArn=machine["stateMachineArn"], name="held")["executionArn"]
        time.sleep(0.3)  # not a race guard: a window in which a held execution must not move
        # Then it is RUNNING and entered no state
        assert sfn.describe_execution(executionArn=arn)["status"] == "RUNNING"
        history = sfn.get_execution_history(executionArn=arn)["events"]
        assert not [e for e in history if e["type"].endswith("StateEntered")]
        # When released, Then it runs to its end (bounded wait)
        released.set()
        assert finished(sfn, [arn], timeout=10)[arn]["status"] == "SUCCEEDED"


def test_a_task_failure_carries_its_cause_to_the_waiting_task(aws):
    # Given an execution waiting on a task token (sent to a queue)
    sqs = boto3.client("sqs", region_name=REGION)
    queue = sqs.create_queue(QueueName="tokens")["QueueUrl"]
    role = boto3.client("iam", region_name=REGION).create_role(
        RoleName="sfn-token", AssumeRolePolicyDocument=ROLE_POLICY
    )["Role"]["Arn"]
    wait = {
        "Type": "Task",
        "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
        "Parameters": {"QueueUrl": queue, "MessageBody": {"token.$": "$$.Task.Token"}},
        "TimeoutSeconds": 30,
        "End": True,
    }
    sfn = boto3.client("stepfunctions", region_name=REGION)
    machine = sfn.create_state_machine(
        name="token", definition=json.dumps({"StartAt": "Wait", "States": {"Wait": wait}}), roleArn=role
    )["stateMachineArn"]
    with MotoPatches() as patches:
        patches.task_failure_cause()
        arn = sfn.start_execution(stateMachineArn=machine, name="t1", input="{}")["executionArn"]
        deadline = time.monotonic() + 10
        messages: list[Any] = []
        while not messages and time.monotonic() < deadline:
            messages = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=0).get("Messages", [])
        token = json.loads(messages[0]["Body"])["token"]
        # When the task is failed with an error and a cause
        sfn.send_task_failure(taskToken=token, error="ApprovalRejectedError", cause="rejected by alice")
        while sfn.describe_execution(executionArn=arn)["status"] == "RUNNING" and time.monotonic() < deadline:
            time.sleep(0.05)
    # Then the execution fails with both, as on AWS (moto alone drops the cause)
    described = sfn.describe_execution(executionArn=arn)
    assert described["status"] == "FAILED"
    assert described["error"] == "ApprovalRejectedError" and described["cause"] == "rejected by alice"


def test_dynamodb_answers_one_request_at_a_time_so_a_read_never_sees_an_item_mid_update(aws):
    """A GetItem racing UpdateItems on one item (moto's backend has no lock of its own)."""
    import threading

    with MotoPatches() as patches:
        patches.serialize_dynamodb()
        db = boto3.client("dynamodb", region_name=REGION)
        db.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        # (b0 is there before any read: every later update swaps one b attribute for the next)
        item = {"pk": {"S": "k"}, "b0": {"N": "1"}, **{f"a{i}": {"N": str(i)} for i in range(200)}}
        db.put_item(TableName="t", Item=item)
        errors: list[BaseException] = []
        stop = threading.Event()

        def writer() -> None:
            n = 1
            while not stop.is_set() and n < 2000:
                db.update_item(
                    TableName="t",
                    Key={"pk": {"S": "k"}},
                    UpdateExpression=f"SET b{n} = :v REMOVE b{n - 1}",
                    ExpressionAttributeValues={":v": {"N": "1"}},
                )
                n += 1

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            for _ in range(300):
                try:
                    item = db.get_item(TableName="t", Key={"pk": {"S": "k"}})["Item"]
                except Exception as exc:  # what moto raises without the lock
                    errors.append(exc)
                    break
                assert sum(1 for key in item if key.startswith("b")) == 1
        finally:
            stop.set()
            thread.join(timeout=60)
        assert not errors, errors


class TransientError(Exception):
    pass


def test_scaled_retry_waits_keep_moto_s_attempts_backoff_and_cap_and_only_wait_less(aws):
    # Given a Task that fails three times, then succeeds, under a Retry with backoff and a cap
    calls: list[float] = []

    def flaky(event: Any, context: Any) -> Any:
        calls.append(time.monotonic())
        if len(calls) <= 3:
            raise TransientError(f"attempt {len(calls)} failed")
        return {"attempts": len(calls)}

    invoker = InProcessLambda(overrides={"flaky": flaky})
    arn = create_function("flaky")
    register(invoker, "flaky", arn)
    retry = [
        {
            "ErrorEquals": ["TransientError"],
            "IntervalSeconds": 1,
            "BackoffRate": 2.0,
            "MaxAttempts": 3,
            "MaxDelaySeconds": 3,
        }
    ]
    definition = {
        "StartAt": "Flaky",
        "States": {"Flaky": {"Type": "Task", "Resource": arn, "Retry": retry, "End": True}},
    }
    requested: list[float] = []
    with MotoPatches() as patches:
        # When it runs with the waits scaled to 1/100
        patches.scale_retry_waits(0.01, requested)
        described, events = run_machine(definition, invoker, {})
    # Then moto computed the real intervals (1 s, 2 s, 4 s capped at 3 s), retried exactly
    # MaxAttempts times, and the run succeeded on the fourth attempt
    assert requested == [1.0, 2.0, 3.0]
    failed = [e for e in events if "lambdaFunctionFailedEventDetails" in e]
    assert [e["lambdaFunctionFailedEventDetails"]["error"] for e in failed] == ["TransientError"] * 3
    assert described["status"] == "SUCCEEDED" and json.loads(described["output"]) == {"attempts": 4}
    # And the three waits together took far less than their real 6 s
    assert calls[-1] - calls[0] < 3.0, calls
    # And leaving the block restores moto's real waits
    from moto.stepfunctions.parser.asl.component.common.retry.jitter_strategy_decl import (
        JitterStrategyDecl,
    )

    assert JitterStrategyDecl._eval_body.__module__.startswith("moto.")


def test_a_retry_wait_scale_outside_zero_to_one_is_refused():
    with MotoPatches() as patches, pytest.raises(ValueError, match="scale must be in"):
        patches.scale_retry_waits(0)
