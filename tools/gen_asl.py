"""Writes statemachines/retrain_and_rollout.asl.json.

The workflow has ~40 states that share Retry and Catch policies; writing them here keeps those
policies identical everywhere. The JSON file is what SAM deploys and what tests execute; a unit test
checks that it equals this script's output, so edit here and run `python tools/gen_asl.py`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent.parent / "statemachines" / "retrain_and_rollout.asl.json"

# Passing faults: Lambda's own, and our adapters' transient and Kubernetes-unavailable errors.
TRANSIENT = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "TransientError",
    "KubeUnavailableError",
    "KubeConflictError",
]
RETRY = [
    {
        "ErrorEquals": TRANSIENT,
        "IntervalSeconds": 2,
        "MaxAttempts": 4,
        "BackoffRate": 2.0,
        "JitterStrategy": "FULL",
    }
]
# The rollout function's actions are idempotent (modelops.steps.rollout), so an invocation that
# timed out or whose worker died (the patch may or may not have landed) is retried as well: Lambda
# reports these as Sandbox.Timedout / Runtime.ExitError (Lambda.Unknown through some integrations).
LAMBDA_DIED = ["Lambda.Unknown", "Sandbox.Timedout", "Runtime.ExitError"]
ROLLOUT_RETRY = [{**RETRY[0], "ErrorEquals": TRANSIENT + LAMBDA_DIED}]
# Rolling back is retried for minutes, not seconds (an API server restarting, a control-plane
# upgrade): giving up leaves the bad version serving. Backoff capped at 30 s, about 4.5 min in all.
ROLLBACK_RETRY = [{**ROLLOUT_RETRY[0], "MaxAttempts": 12, "MaxDelaySeconds": 30}]
# The rollout function's own timeout (template.yaml: 120 s) must fire before the task's, so that a
# hung invocation is a retried Sandbox.Timedout rather than a States.Timeout that is not retried.
ROLLOUT_TASK_TIMEOUT = 150
# Before the canary: any error records the failure and releases the lock.
CATCH_FAIL = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "RecordFailure"}]
# From DeployCanary on: any error rolls back.
CATCH_ROLLBACK = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Rollback"}]


def fn(
    arn: str,
    params: dict[str, Any],
    *,
    result: str | None,
    nxt: str | None,
    catch: list[Any] | None,
    comment: str = "",
    retry: list[Any] | None = None,
    timeout: int = 300,
) -> dict[str, Any]:
    state: dict[str, Any] = {
        "Type": "Task",
        "Resource": "${" + arn + "}",
        "Parameters": params,
        "ResultPath": result,
        "TimeoutSeconds": timeout,
        "Retry": RETRY if retry is None else retry,
    }
    if comment:
        state = {"Comment": comment, **state}
    if catch:
        state["Catch"] = catch
    if nxt is None:
        state["End"] = True
    else:
        state["Next"] = nxt
    return state


def rollout(
    action: str,
    extra: dict[str, Any],
    *,
    result: str | None,
    nxt: str,
    catch: list[Any] | None,
    comment: str = "",
    retry: list[Any] | None = None,
) -> dict[str, Any]:
    return fn(
        "RolloutFunctionArn",
        {"action": action, "run.$": "$.run", **extra},
        result=result,
        nxt=nxt,
        catch=catch,
        comment=comment,
        timeout=ROLLOUT_TASK_TIMEOUT,
        retry=ROLLOUT_RETRY if retry is None else retry,
    )


def wait_loop(prefix: str, check: dict[str, Any], ready_next: str) -> dict[str, dict[str, Any]]:
    """Wait poll_seconds, run `check` (a Task writing $.<prefix>_status with a `ready` flag), loop until ready.

    The check itself raises when its deadline passes, so the loop is bounded."""
    return {
        f"Wait{prefix}": {"Type": "Wait", "SecondsPath": "$.run.poll_seconds", "Next": f"Check{prefix}"},
        f"Check{prefix}": {**check, "Next": f"Is{prefix}"},
        f"Is{prefix}": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.status.ready", "BooleanEquals": True, "Next": ready_next}],
            "Default": f"Wait{prefix}",
        },
    }


def training_job(
    prefix: str, *, request: str, status: str, counter: str, done_next: str, what: str
) -> dict[str, dict[str, Any]]:
    """Start a SageMaker training job from the CreateTrainingJob request at `request` and poll it
    (at most $.run.limits.<counter>_polls times, then stop it) until it ends: `done_next` when
    Completed, Explain<prefix>Failure when it failed or was stopped. The training job and the
    judge job both run through these states."""
    name = f"{request}.TrainingJobName"
    polls, poll = f"$.{counter}_polls", f"$.{counter}_poll"
    parameters = {
        "TrainingJobName.$": name,
        "AlgorithmSpecification.$": f"{request}.AlgorithmSpecification",
        "RoleArn": "${SageMakerRoleArn}",
    }
    for field in (
        "InputDataConfig",
        "OutputDataConfig",
        "ResourceConfig",
        "StoppingCondition",
        "HyperParameters",
        "EnableManagedSpotTraining",
        "Tags",
    ):
        parameters[f"{field}.$"] = f"{request}.{field}"
    states: dict[str, dict[str, Any]] = {}
    states[f"Start{prefix}"] = {
        "Type": "Task",
        "Resource": "arn:${Partition}:states:::sagemaker:createTrainingJob",
        "Parameters": parameters,
        "ResultPath": None,
        "Retry": [
            {
                "ErrorEquals": [
                    "SageMaker.ThrottlingException",
                    "SageMaker.InternalFailure",
                    "SageMaker.ServiceUnavailable",
                ],
                "IntervalSeconds": 5,
                "MaxAttempts": 4,
                "BackoffRate": 2.0,
            }
        ],
        "Catch": [
            # A retried create whose first attempt went through: the job exists, so poll it.
            {
                "ErrorEquals": ["SageMaker.ResourceInUseException", "SageMaker.ResourceInUse"],
                "ResultPath": None,
                "Next": f"Init{prefix}Polls",
            },
            *CATCH_FAIL,
        ],
        "Next": f"Init{prefix}Polls",
    }
    states[f"Init{prefix}Polls"] = {"Type": "Pass", "Result": 0, "ResultPath": polls, "Next": f"Wait{prefix}"}
    states[f"Wait{prefix}"] = {
        "Type": "Wait",
        "SecondsPath": "$.run.poll_seconds",
        "Next": f"Describe{prefix}",
    }
    states[f"Describe{prefix}"] = {
        "Type": "Task",
        "Resource": "arn:${Partition}:states:::aws-sdk:sagemaker:describeTrainingJob",
        "Parameters": {"TrainingJobName.$": name},
        # Only plain fields: the response's timestamps do not survive as execution data.
        "ResultSelector": {"status.$": "$.TrainingJobStatus", "secondary.$": "$.SecondaryStatus"},
        "ResultPath": status,
        "Retry": [
            {
                "ErrorEquals": [
                    "SageMaker.ThrottlingException",
                    "SageMaker.SageMakerException",
                    "SageMaker.InternalFailure",
                    "States.Timeout",
                ],
                "IntervalSeconds": 5,
                "MaxAttempts": 5,
                "BackoffRate": 2.0,
            }
        ],
        "Catch": CATCH_FAIL,
        "Next": f"Count{prefix}Poll",
    }
    states[f"Count{prefix}Poll"] = {
        "Type": "Pass",
        "Parameters": {"n.$": f"States.MathAdd({polls}, 1)"},
        "ResultPath": poll,
        "Next": f"{prefix}Done",
    }
    states[f"{prefix}Done"] = {
        "Type": "Choice",
        "Choices": [
            {"Variable": f"{status}.status", "StringEquals": "Completed", "Next": done_next},
            {
                "Or": [
                    {"Variable": f"{status}.status", "StringEquals": "Failed"},
                    {"Variable": f"{status}.status", "StringEquals": "Stopped"},
                ],
                "Next": f"Explain{prefix}Failure",
            },
            {
                "Variable": f"{poll}.n",
                "NumericGreaterThanPath": f"$.run.limits.{counter}_polls",
                "Next": f"Stop{prefix}",
            },
        ],
        "Default": f"KeepPolling{prefix}",
    }
    states[f"KeepPolling{prefix}"] = {
        "Type": "Pass",
        "InputPath": f"{poll}.n",
        "ResultPath": polls,
        "Next": f"Wait{prefix}",
    }
    states[f"Stop{prefix}"] = {
        "Type": "Task",
        "Comment": "Our own bound on the poll loop (SageMaker enforces MaxRuntimeSeconds itself)",
        "Resource": "arn:${Partition}:states:::aws-sdk:sagemaker:stopTrainingJob",
        "Parameters": {"TrainingJobName.$": name},
        "ResultPath": None,
        "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": None, "Next": f"{prefix}TimedOut"}],
        "Next": f"{prefix}TimedOut",
    }
    states[f"{prefix}TimedOut"] = {
        "Type": "Pass",
        "Parameters": {
            "Error": "TrainingFailedError",
            "Cause.$": f"States.Format('{what} {{}} still {{}} after {{}} polls; stopped it',"
            f" {name}, {status}.status, {poll}.n)",
        },
        "ResultPath": "$.error",
        "Next": "RecordFailure",
    }
    return states


def finish(status: str, nxt: str, catch: list[Any] | None) -> dict[str, Any]:
    return fn(
        "RunStateFunctionArn",
        {"action": "finish", "status": status, "state.$": "$"},
        result="$.outcome",
        nxt=nxt,
        catch=catch,
        comment=f"Record the run as {status} in history",
    )


def definition() -> dict[str, Any]:
    states: dict[str, Any] = {}
    states["ResolveRequest"] = fn(
        "ResolveRequestFunctionArn",
        {"request.$": "$", "execution_name.$": "$$.Execution.Name"},
        result="$.run",
        nxt="AcquireLock",
        # ResultPath "$": the error replaces the input, which may not be an object (an input that
        # is a list or a string could not take an `error` field: States.Runtime instead of the reason)
        catch=[{"ErrorEquals": ["States.ALL"], "ResultPath": "$", "Next": "NotifyInvalidRequest"}],
        comment="Validate the input, load the model config, build the run context",
    )
    states["NotifyInvalidRequest"] = {
        "Type": "Task",
        "Resource": "arn:${Partition}:states:::sns:publish",
        "Parameters": {
            "TopicArn": "${NotificationTopicArn}",
            "Subject": "[modelops] run refused: invalid request",
            "Message.$": "States.Format('{}: {}', $.Error, $.Cause)",
        },
        "ResultPath": None,
        "Retry": [
            {"ErrorEquals": ["States.ALL"], "IntervalSeconds": 2, "MaxAttempts": 3, "BackoffRate": 2.0}
        ],
        "Next": "RequestRefused",
    }
    states["RequestRefused"] = {"Type": "Fail", "ErrorPath": "$.Error", "CausePath": "$.Cause"}
    states["AcquireLock"] = fn(
        "RunStateFunctionArn",
        {"action": "acquire", "run.$": "$.run"},
        result="$.lock",
        nxt="LockAcquired",
        catch=[{"ErrorEquals": ["States.ALL"], "ResultPath": "$", "Next": "NotifyInvalidRequest"}],
        comment="One rollout per model: a second trigger is coalesced into the running one",
    )
    states["LockAcquired"] = {
        "Type": "Choice",
        "Choices": [
            {
                "And": [
                    {"Variable": "$.lock.acquired", "BooleanEquals": True},
                    {"Variable": "$.run.restore", "IsNull": False},
                ],
                "Next": "PrepareRestore",
            },
            {"Variable": "$.lock.acquired", "BooleanEquals": True, "Next": "ValidateDataset"},
        ],
        "Default": "Coalesced",
    }
    # ---- `modelops rollback --to VERSION`: no training, the recorded version's image ---------------
    states["PrepareRestore"] = {
        "Type": "Pass",
        "Comment": "The version to bring back, as its own run recorded it, where the rollout reads a build",
        "Parameters": {
            "run.$": "$.run",
            "lock.$": "$.lock",
            "build": {
                "build_id": "restore",
                "tag.$": "$.run.restore.version",
                "done": True,
                "image.$": "$.run.restore.image",
            },
            "package": {
                "version.$": "$.run.restore.version",
                "package_arn.$": "$.run.restore.package_arn",
                "group.$": "$.run.restore.group",
            },
            "dataset": {"smoke_sample.$": "$.run.restore.smoke_sample"},
        },
        "ResultPath": "$",
        "Next": "RestoreHow",
    }
    states["RestoreHow"] = {
        "Type": "Choice",
        "Comment": "Through the canary and its checks, or (--now) straight to the stable Deployment",
        "Choices": [{"Variable": "$.run.restore.now", "BooleanEquals": True, "Next": "RestoreNow"}],
        "Default": "DeployCanary",
    }
    states["Coalesced"] = {
        "Type": "Succeed",
        "Comment": "Another run holds the lock; this request runs after it",
    }
    states["ValidateDataset"] = fn(
        "ValidateDatasetFunctionArn",
        {"run.$": "$.run"},
        result="$.dataset",
        nxt="StartTraining",
        catch=CATCH_FAIL,
    )
    states.update(
        training_job(
            "Training",
            request="$.run.training",
            status="$.training",
            counter="training",
            done_next="NeedsJudge",
            what="training job",
        )
    )
    states["NeedsJudge"] = {
        "Type": "Choice",
        "Comment": "A team image's candidate (training.image, no script) is scored by the stack's own judge job",
        "Choices": [{"Variable": "$.run.judge_job_name", "IsString": True, "Next": "PrepareJudge"}],
        "Default": "EvaluateModel",
    }
    states["PrepareJudge"] = fn(
        "EvaluateModelFunctionArn",
        {"action": "prepare_judge", "run.$": "$.run"},
        result="$.judge",
        nxt="StartJudge",
        catch=CATCH_FAIL,
        comment="The judge's CreateTrainingJob request, for the training job's model artifact",
    )
    states.update(
        training_job(
            "Judge",
            request="$.judge",
            status="$.judging",
            counter="judge",
            done_next="EvaluateModel",
            what="judge job",
        )
    )
    states["ExplainTrainingFailure"] = fn(
        "EvaluateModelFunctionArn",
        {"action": "explain_failure", "run.$": "$.run"},
        result=None,
        nxt="RecordFailure",
        catch=CATCH_FAIL,
        comment="Raises TrainingFailedError with SageMaker's FailureReason",
    )
    states["ExplainJudgeFailure"] = fn(
        "EvaluateModelFunctionArn",
        {"action": "explain_failure", "job": "judge", "run.$": "$.run"},
        result=None,
        nxt="RecordFailure",
        catch=CATCH_FAIL,
        comment="Raises TrainingFailedError with the judge job's FailureReason",
    )
    states["EvaluateModel"] = fn(
        "EvaluateModelFunctionArn",
        {"action": "evaluate", "run.$": "$.run"},
        result="$.evaluation",
        nxt="IsBetter",
        catch=CATCH_FAIL,
    )
    states["IsBetter"] = {
        "Type": "Choice",
        "Choices": [{"Variable": "$.evaluation.decision", "StringEquals": "better", "Next": "RegisterModel"}],
        "Default": "RecordRejection",
    }
    states["RecordRejection"] = finish("rejected", "ReleaseLock", CATCH_FAIL)
    states["RegisterModel"] = fn(
        "RegisterModelFunctionArn",
        {"run.$": "$.run", "evaluation.$": "$.evaluation"},
        result="$.package",
        nxt="StartBuild",
        catch=CATCH_FAIL,
    )
    states["StartBuild"] = fn(
        "BuildImageFunctionArn",
        {"action": "start", "run.$": "$.run", "evaluation.$": "$.evaluation", "package.$": "$.package"},
        result="$.build",
        nxt="WaitBuild",
        catch=CATCH_FAIL,
    )
    states["WaitBuild"] = {"Type": "Wait", "SecondsPath": "$.run.poll_seconds", "Next": "CheckBuild"}
    states["CheckBuild"] = fn(
        "BuildImageFunctionArn",
        {"action": "status", "run.$": "$.run", "build.$": "$.build"},
        result="$.build",
        nxt="BuildDone",
        catch=CATCH_FAIL,
        comment="Raises BuildFailedError; CodeBuild's own timeout bounds the loop",
    )
    states["BuildDone"] = {
        "Type": "Choice",
        "Choices": [{"Variable": "$.build.done", "BooleanEquals": True, "Next": "DeployCanary"}],
        "Default": "WaitBuild",
    }
    # ---- from here on, every error rolls back -----------------------------------------------------
    states["DeployCanary"] = rollout(
        "deploy_canary",
        {"image.$": "$.build.image", "version.$": "$.package.version"},
        result="$.canary",
        nxt="WaitCanaryReady",
        catch=CATCH_ROLLBACK,
        comment="Record the stable's image, then patch the canary Deployment (JSON Patch, image by digest)",
    )
    states["RestoreNow"] = rollout(
        "begin",
        {"image.$": "$.build.image", "version.$": "$.package.version"},
        result="$.canary",
        nxt="Promote",
        catch=CATCH_ROLLBACK,
        comment="Record the stable's image (what a rollback restores), then promote without a canary",
    )
    states.update(
        wait_loop(
            "CanaryReady",
            rollout(
                "status",
                {"target": "canary", "image.$": "$.build.image"},
                result="$.status",
                nxt="",
                catch=CATCH_ROLLBACK,
            ),
            "SmokeTest",
        )
    )
    states["SmokeTest"] = rollout(
        "smoke_test",
        {"sample.$": "$.dataset.smoke_sample"},
        result="$.smoke",
        nxt="StartSteps",
        catch=CATCH_ROLLBACK,
    )
    # ---- the canary's traffic steps: shift, wait for its pods, bake, analyse; the next step or
    # CanaryPassed after the last. A model without steps has one (its canary as sized).
    states["StartSteps"] = {
        "Type": "Pass",
        "Comment": "The step loop starts at the first of the model's canary steps",
        "Result": {"next": 0},
        "ResultPath": "$.step",
        "Next": "ShiftTraffic",
    }
    states["ShiftTraffic"] = rollout(
        "shift_traffic",
        {"index.$": "$.step.next"},
        result="$.step",
        nxt="CheckStepReady",
        catch=CATCH_ROLLBACK,
        comment="Give the canary this step's share of the traffic through the model's router",
    )
    # ShiftTraffic goes straight to CheckStepReady: a weighted router's step adds no pods, and is
    # ready at once; a step that added canary pods (the replicas router) waits for them.
    states.update(
        wait_loop(
            "StepReady",
            rollout(
                "status",
                {"target": "canary", "image.$": "$.build.image"},
                result="$.status",
                nxt="",
                catch=CATCH_ROLLBACK,
            ),
            "Bake",
        )
    )
    states["Bake"] = {
        "Type": "Task",
        "Comment": "Wait for the bake time; on_alarm fails this task at once when a canary alarm fires",
        "Resource": "arn:${Partition}:states:::lambda:invoke.waitForTaskToken",
        "Parameters": {
            "FunctionName": "${RolloutFunctionArn}",
            "Payload": {
                "action": "await_signal",
                "phase": "bake",
                "task_token.$": "$$.Task.Token",
                "run.$": "$.run",
            },
        },
        "TimeoutSecondsPath": "$.step.bake_seconds",
        "ResultPath": "$.bake",
        "Retry": ROLLOUT_RETRY,
        "Catch": [
            {"ErrorEquals": ["States.Timeout"], "ResultPath": "$.bake", "Next": "AnalyzeCanary"},
            *CATCH_ROLLBACK,
        ],
        # The bake ends in success only by `modelops promote` (SendTaskSuccess on its token): a
        # person skips the rest of the bake, the analysis and the approval.
        "Next": "Promote",
    }
    states["AnalyzeCanary"] = fn(
        "AnalyzeCanaryFunctionArn",
        {"run.$": "$.run"},
        result="$.analysis",
        nxt="CanaryVerdict",
        catch=CATCH_ROLLBACK,
    )
    states["CanaryVerdict"] = {
        "Type": "Choice",
        "Choices": [
            {
                "And": [
                    {"Variable": "$.analysis.verdict", "StringEquals": "pass"},
                    {"Variable": "$.step.last", "BooleanEquals": True},
                ],
                "Next": "CanaryPassed",
            },
            {"Variable": "$.analysis.verdict", "StringEquals": "pass", "Next": "ShiftTraffic"},
        ],
        "Default": "CanaryRejected",
    }
    # ---- the canary passed: the single entry to promotion -----------------------------------------
    states["CanaryPassed"] = {
        "Type": "Choice",
        "Comment": "A model with approval.required waits for a person before promotion",
        "Choices": [
            {"Variable": "$.run.config.approval.required", "BooleanEquals": True, "Next": "NotifyApproval"}
        ],
        "Default": "Promote",
    }
    states["NotifyApproval"] = {
        "Type": "Task",
        "Comment": "Tell the approvers exactly what to run",
        "Resource": "arn:${Partition}:states:::sns:publish",
        "Parameters": {
            "TopicArn": "${NotificationTopicArn}",
            "Subject.$": "States.Format('[modelops] {}: version {} waits for approval', $.run.model, "
            "$.package.version)",
            "Message.$": "States.Format('Version {} of model {} passed its canary (run {}, image {}) and waits "
            "for a person before promotion. To promote it, run: modelops --stack {} approve --model {} -- to "
            "roll it back, run: modelops --stack {} reject --model {} -- without an answer within {} s it is "
            "rolled back.', $.package.version, $.run.model, $.run.run_id, $.build.image, $.run.stack, "
            "$.run.model, $.run.stack, $.run.model, $.run.config.approval.timeout_seconds)",
        },
        "ResultPath": None,
        "Retry": [
            {"ErrorEquals": ["States.ALL"], "IntervalSeconds": 2, "MaxAttempts": 3, "BackoffRate": 2.0}
        ],
        # Unnotified, the wait still ends: by `modelops approve` / `reject` or its timeout.
        "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.notify_error", "Next": "AwaitApproval"}],
        "Next": "AwaitApproval",
    }
    states["AwaitApproval"] = {
        **states["Bake"],
        "Comment": "Wait for `modelops approve` (SendTaskSuccess: who and when) or `reject`/`abort` or a "
        "canary alarm (SendTaskFailure); roll back after approval.timeout_seconds",
        "Parameters": {
            "FunctionName": "${RolloutFunctionArn}",
            "Payload": {
                "action": "await_signal",
                "phase": "approval",
                "task_token.$": "$$.Task.Token",
                "run.$": "$.run",
            },
        },
        "TimeoutSecondsPath": "$.run.config.approval.timeout_seconds",
        "ResultPath": "$.approval",
        "Catch": [
            {"ErrorEquals": ["States.Timeout"], "ResultPath": "$.approval", "Next": "ApprovalTimedOut"},
            *CATCH_ROLLBACK,
        ],
        "Next": "Promote",
    }
    states["ApprovalTimedOut"] = {
        "Type": "Pass",
        "Parameters": {
            "Error": "ApprovalTimeoutError",
            "Cause.$": "States.Format('no approval of version {} within approval.timeout_seconds={}; rolled "
            "back', $.package.version, $.run.config.approval.timeout_seconds)",
        },
        "ResultPath": "$.error",
        "Next": "Rollback",
    }
    states["CanaryRejected"] = {
        "Type": "Pass",
        "Parameters": {"Error": "CanaryAnalysisError", "Cause.$": "States.JsonToString($.analysis.reasons)"},
        "ResultPath": "$.error",
        "Next": "Rollback",
    }
    states["Promote"] = rollout(
        "promote",
        {"image.$": "$.build.image", "version.$": "$.package.version"},
        result="$.promotion",
        nxt="WaitStableReady",
        catch=CATCH_ROLLBACK,
    )
    states.update(
        wait_loop(
            "StableReady",
            rollout(
                "status",
                {"target": "stable", "image.$": "$.build.image"},
                result="$.status",
                nxt="",
                catch=CATCH_ROLLBACK,
            ),
            "FinishPromotion",
        )
    )
    states["FinishPromotion"] = rollout(
        "finish_promotion",
        {},
        result=None,
        nxt="Watch",
        catch=CATCH_ROLLBACK,
        comment="All traffic to the stable (router weights 100/0), then the canary to 0, once the stable serves the new version",
    )
    states["Watch"] = {
        **states["Bake"],
        "Comment": "Watch window after promotion; an alarm on the stable variant rolls back",
        "Parameters": {
            "FunctionName": "${RolloutFunctionArn}",
            "Payload": {
                "action": "await_signal",
                "phase": "watch",
                "task_token.$": "$$.Task.Token",
                "run.$": "$.run",
            },
        },
        "TimeoutSecondsPath": "$.run.canary.watch_seconds",
        "ResultPath": "$.watch",
        "Catch": [
            {"ErrorEquals": ["States.Timeout"], "ResultPath": "$.watch", "Next": "RecordSuccess"},
            *CATCH_ROLLBACK,
        ],
        "Next": "RecordSuccess",
    }
    states["RecordSuccess"] = finish("promoted", "ReleaseLock", CATCH_FAIL)
    # ---- rollback ---------------------------------------------------------------------------------
    states["Rollback"] = rollout(
        "rollback",
        {},
        result="$.rollback",
        nxt="WaitRollbackReady",
        catch=[
            {"ErrorEquals": ["States.ALL"], "ResultPath": "$.rollback_error", "Next": "RecordRollbackFailure"}
        ],
        comment="Scale the canary to 0 and restore the stable's recorded image",
        retry=ROLLBACK_RETRY,
    )
    states.update(
        wait_loop(
            "RollbackReady",
            rollout(
                "status",
                {"target": "rollback"},
                result="$.status",
                nxt="",
                catch=[
                    {
                        "ErrorEquals": ["States.ALL"],
                        "ResultPath": "$.rollback_error",
                        "Next": "RecordRollbackFailure",
                    }
                ],
                retry=ROLLBACK_RETRY,
            ),
            "RecordRollback",
        )
    )
    states["RecordRollback"] = finish(
        "rolled_back",
        "ReleaseLock",
        [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.record_error", "Next": "ReleaseLock"}],
    )
    states["RecordRollbackFailure"] = finish(
        "rollback_failed",
        "ReleaseLock",
        [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.record_error", "Next": "ReleaseLock"}],
    )
    states["RecordFailure"] = finish(
        "failed",
        "ReleaseLock",
        [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.record_error", "Next": "ReleaseLock"}],
    )
    # ---- every path ends here ---------------------------------------------------------------------
    states["ReleaseLock"] = fn(
        "RunStateFunctionArn",
        {"action": "release", "run.$": "$.run"},
        result="$.release",
        nxt="Notify",
        catch=[{"ErrorEquals": ["States.ALL"], "ResultPath": "$.release_error", "Next": "Notify"}],
        retry=[{**RETRY[0], "ErrorEquals": ["States.ALL"], "MaxAttempts": 6}],
        comment="Release the model's lock (and start the coalesced follow-up, if any)",
    )
    states["Notify"] = {
        "Type": "Task",
        "Resource": "arn:${Partition}:states:::sns:publish",
        "Parameters": {
            "TopicArn": "${NotificationTopicArn}",
            "Subject.$": "$.outcome.subject",
            "Message.$": "$.outcome.message",
        },
        "ResultPath": None,
        "Retry": [
            {"ErrorEquals": ["States.ALL"], "IntervalSeconds": 2, "MaxAttempts": 3, "BackoffRate": 2.0}
        ],
        "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.notify_error", "Next": "Outcome"}],
        "Next": "Outcome",
    }
    states["Outcome"] = {
        "Type": "Choice",
        "Choices": [
            {"Variable": "$.outcome.status", "StringEquals": "promoted", "Next": "Promoted"},
            {"Variable": "$.outcome.status", "StringEquals": "rejected", "Next": "Rejected"},
        ],
        "Default": "RunFailed",
    }
    states["Promoted"] = {"Type": "Succeed"}
    states["Rejected"] = {"Type": "Succeed", "Comment": "The candidate was not better than the champion"}
    states["RunFailed"] = {"Type": "Fail", "ErrorPath": "$.outcome.error", "CausePath": "$.outcome.cause"}

    return {
        "Comment": "modelops: validate, train, evaluate, register, build, canary, promote, watch; roll back on any "
        "error or alarm after the canary starts. Every path releases the model's lock.",
        "StartAt": "ResolveRequest",
        "TimeoutSeconds": 7 * 24 * 3600,
        "States": states,
    }


def render() -> str:
    return json.dumps(definition(), indent=2) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    sys.stdout.write(f"wrote {OUT}\n")
