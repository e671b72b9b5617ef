"""Runs the real state machine definition in moto's Step Functions interpreter with the real
handlers from functions/ invoked as Python (moto's Lambda invoke routed to them in-process).

SageMaker training, CodeBuild and ECR are moto's, with the few behaviours moto lacks supplied
here: a training job's model.tar.gz (with the evaluation the test chooses) or its failure, and
the image a successful build pushes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.util
import io
import json
import sys
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
from modelops import wiring
from modelops.adapters.aws import client as cached_client
from modelops.adapters.store import StateStore
from modelops.config import load_config_file
from modelops.ports import ImageBuilds, Kube

from modelops_local.lambda_runtime import (
    InvocationFaults,
    InvocationResult,
    LambdaThrottledError,
    function_name_of,
)
from modelops_local.moto_patches import MotoPatches
from tests.integration.fake_kube import deployment
from tests.state_table import create_state_table

ROOT = Path(__file__).resolve().parents[3]
REGION = "us-east-1"
ACCOUNT = "123456789012"
STACK = "modelops"
#: Concurrent invocations per function, as the local runtime's default `max_workers`; more wait.
#: (Every execution runs in its own moto thread: unbounded, a burst's handlers would share one
#: interpreter lock with everything else at once.)
CONCURRENCY = 4
BUCKET = "modelops-pipeline"
TABLE = "modelops-state"
PROJECT = "modelops-image-build"
REPO = "modelops-serving"
FUNCTIONS = [
    "start_pipeline",
    "resolve_request",
    "run_state",
    "validate_dataset",
    "evaluate_model",
    "register_model",
    "build_image",
    "rollout",
    "analyze_canary",
    "on_alarm",
]
SUBSTITUTIONS = {
    "ResolveRequestFunctionArn": "resolve_request",
    "RunStateFunctionArn": "run_state",
    "ValidateDatasetFunctionArn": "validate_dataset",
    "EvaluateModelFunctionArn": "evaluate_model",
    "RegisterModelFunctionArn": "register_model",
    "BuildImageFunctionArn": "build_image",
    "RolloutFunctionArn": "rollout",
    "AnalyzeCanaryFunctionArn": "analyze_canary",
}


class Context:
    def __init__(self, name: str) -> None:
        self.function_name = name
        self.memory_limit_in_mb = 512
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
        self.aws_request_id = str(uuid.uuid4())

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def load_handler(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"fn_{name}", ROOT / "functions" / name / "app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as a normal import would; pydantic resolves annotations through it
    spec.loader.exec_module(module)
    return module


def function_arn(name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{STACK}-{name}"


def model_tarball(evaluation: dict[str, Any] | None, extra: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        files = {"model.joblib": b"model-bytes", **(extra or {})}
        if evaluation is not None:
            files["evaluation.json"] = json.dumps(evaluation).encode()
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class WorkerGone(BaseException):
    """Raised inside a handler (by a test's fault hook) to end its invocation as the Lambda runtime
    ends one whose worker died (`Runtime.ExitError`) or timed out (`Sandbox.Timedout`): nothing after
    that point runs. A BaseException, as a killed process is: the handler's `except Exception` does
    not see it."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


def _error(error_type: str, message: str) -> InvocationResult:
    return InvocationResult(
        json.dumps({"errorMessage": message, "errorType": error_type}).encode(), "Unhandled"
    )


class HarnessServices(wiring.Services):
    """The AWS adapters (over moto) except two ports: the in-process Kubernetes fake, and a build
    service that remembers the tag each build is started for (moto's start_build drops the
    environment overrides, and the harness pushes that tag's image when the build "runs")."""

    def __init__(self, harness: Harness) -> None:
        super().__init__()
        self.harness = harness

    def kube(self) -> Kube:
        return self.harness.kube  # type: ignore[no-any-return]

    def image_builds(self) -> ImageBuilds:
        return _TagRecordingBuilds(
            super().image_builds(), self.harness._build, lambda: self.harness.build_failure
        )


class _TagRecordingBuilds:
    def __init__(
        self, builds: ImageBuilds, current: threading.local, failure: Callable[[], tuple[str, str] | None]
    ) -> None:
        self.builds = builds
        self.current = current
        self.failure = failure

    def start(self, *, idempotency_token: str, variables: dict[str, str]) -> str:
        self.current.tag = variables["IMAGE_TAG"]
        return self.builds.start(idempotency_token=idempotency_token, variables=variables)

    def state(self, build_id: str) -> Any:
        state = self.builds.state(build_id)
        failure = self.failure()
        if state is None or failure is None:
            return state
        # What BatchGetBuilds says of a build that failed in `phase` (moto's always succeed)
        phase, message = failure
        return dataclasses.replace(
            state, status="FAILED", phase="COMPLETED", failures=(f"{phase}: {message}",)
        )


class _Handlers:
    """The Lambda runtime moto's Invoke is routed to: each function's real handler, called in this
    process, at most CONCURRENCY invocations of a function at a time (more wait, bounded)."""

    def __init__(self, harness: Harness) -> None:
        self.harness = harness
        self.slots = {name: threading.BoundedSemaphore(CONCURRENCY) for name in FUNCTIONS}
        self.queued = ThreadPoolExecutor(max_workers=CONCURRENCY, thread_name_prefix="harness-lambda")

    def invoke(
        self, function: str, payload: bytes | str | None, *, invocation_type: str = "RequestResponse"
    ) -> InvocationResult:
        name = function_name_of(function).removeprefix(f"{STACK}-")
        event = json.loads(payload) if payload else {}
        self.harness.invocations.append((name, event))
        if not self.slots[name].acquire(timeout=300):
            raise LambdaThrottledError(f"no free {name} slot for 300 s")
        fault = self.harness.lambda_faults.take(name, event)
        try:
            if fault is not None and fault.timeout is not None:
                return self._with_timeout(name, event, fault.timeout)
            result = self.harness.modules[name].handler(event, Context(name))
        except WorkerGone as gone:
            return _error(gone.error_type, str(gone))
        except Exception as exc:  # the Lambda error contract: errorType is the class name
            return _error(type(exc).__name__, str(exc))
        finally:
            self.slots[name].release()
        return InvocationResult(json.dumps(result).encode())

    def _with_timeout(self, name: str, event: Any, timeout: float) -> InvocationResult:
        """The handler with Lambda's timeout: past `timeout` s the invocation ends Sandbox.Timedout.
        (A thread cannot be killed: the one still running goes on until it returns or a fault hook
        ends it with WorkerGone; what it changes meanwhile is what a request the dead worker had
        already sent would change.)"""
        outcome: list[InvocationResult] = []

        def call() -> None:
            try:
                result = self.harness.modules[name].handler(event, Context(name))
                outcome.append(InvocationResult(json.dumps(result).encode()))
            except WorkerGone as gone:
                outcome.append(_error(gone.error_type, str(gone)))
            except Exception as exc:
                outcome.append(_error(type(exc).__name__, str(exc)))

        worker = threading.Thread(target=call, name=f"harness-{name}-timed", daemon=True)
        worker.start()
        worker.join(timeout)
        if outcome:
            return outcome[0]
        return _error("Sandbox.Timedout", f"Task timed out after {timeout:.2f} seconds")

    def invoke_async(self, function: str, payload: bytes | str | None) -> Future[InvocationResult]:
        return self.queued.submit(self.invoke, function, payload)


class Harness:
    """Use inside `wiring.installed(harness.services())`: the handlers then reach the fakes."""

    def __init__(self, kube: Any, monkeypatch: Any, patches: MotoPatches) -> None:
        self.kube = kube
        self.s3 = boto3.client("s3", region_name=REGION)
        self.sfn = boto3.client("stepfunctions", region_name=REGION)
        self.ddb = boto3.client("dynamodb", region_name=REGION)
        self.cw = boto3.client("cloudwatch", region_name=REGION)
        self.invocations: list[tuple[str, dict[str, Any]]] = []
        # What the next training jobs produce: an evaluation document, or a failure reason.
        self.training_evaluation: dict[str, Any] | None = {
            "metric": "auc",
            "candidate": 0.9,
            "champion": None,
            "n_validation": 100,
        }
        self.training_failure: str | None = None
        # A training job SageMaker stops instead: (SecondaryStatus, FailureReason) as it reports a
        # job stopped by StopTrainingJob ("Stopped") or by its StoppingCondition ("MaxRuntimeExceeded").
        self.training_stopped: tuple[str, str] | None = None
        # A build that fails: (phase, message) as BatchGetBuilds reports it; nothing is pushed.
        self.build_failure: tuple[str, str] | None = None
        # Faults on the next invocations of a function (a `timeout` ends one Sandbox.Timedout).
        self.lambda_faults = InvocationFaults()
        # What the next judge jobs (hyperparameter modelops_judge) produce, and every training
        # job created, as (name, image, hyperparameters).
        self.judge_evaluation: dict[str, Any] | None = None
        # More files in the model.tar.gz of the next training jobs and judge jobs (a servable
        # model's metadata.json, the judge's baseline.json).
        self.training_files: dict[str, bytes] = {}
        self.judge_files: dict[str, bytes] = {}
        self.judge_failure: str | None = None
        self.training_jobs: list[tuple[str, str, dict[str, str]]] = []
        self._build = threading.local()  # the tag of the build this thread is starting
        self._setup_resources()
        self._env(monkeypatch)
        self.modules = {name: load_handler(name) for name in FUNCTIONS}
        self._route(patches)

    # --- resources ---------------------------------------------------------------------------------
    def _setup_resources(self) -> None:
        self.s3.create_bucket(Bucket=BUCKET)
        create_state_table(self.ddb, TABLE)
        self.topic_arn = boto3.client("sns", region_name=REGION).create_topic(Name="modelops-notify")[
            "TopicArn"
        ]
        self.sqs = boto3.client("sqs", region_name=REGION)
        queue = self.sqs.create_queue(QueueName="notifications")["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        boto3.client("sns", region_name=REGION).subscribe(
            TopicArn=self.topic_arn,
            Protocol="sqs",
            Endpoint=queue_arn,
            Attributes={"RawMessageDelivery": "true"},
        )
        self.queue_url = queue
        iam = boto3.client("iam", region_name=REGION)
        self.role_arn = iam.create_role(RoleName="sm", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        ecr = boto3.client("ecr", region_name=REGION)
        self.repo_uri = ecr.create_repository(repositoryName=REPO)["repository"]["repositoryUri"]
        boto3.client("codebuild", region_name=REGION).create_project(
            name=PROJECT,
            source={"type": "S3", "location": f"{BUCKET}/source/serving_image.zip"},
            artifacts={"type": "NO_ARTIFACTS"},
            environment={
                "type": "LINUX_CONTAINER",
                "image": "aws/codebuild/standard:7.0",
                "computeType": "BUILD_GENERAL1_SMALL",
            },
            serviceRole=self.role_arn,
        )
        text = (ROOT / "statemachines" / "retrain_and_rollout.asl.json").read_text()
        subs = {key: function_arn(fn) for key, fn in SUBSTITUTIONS.items()}
        subs.update(NotificationTopicArn=self.topic_arn, SageMakerRoleArn=self.role_arn, Partition="aws")
        for key, value in subs.items():
            text = text.replace("${" + key + "}", value)
        assert "${" not in text, "unsubstituted key in the definition"
        self.state_machine_arn = self.sfn.create_state_machine(
            name=f"{STACK}-retrain-and-rollout", definition=text, roleArn=self.role_arn
        )["stateMachineArn"]

    def _env(self, monkeypatch: Any) -> None:
        for key, value in {
            "TABLE_NAME": TABLE,
            "STACK_NAME": STACK,
            "BUCKET_NAME": BUCKET,
            "TOPIC_ARN": self.topic_arn,
            "STATE_MACHINE_ARN": self.state_machine_arn,
            "SAGEMAKER_ROLE_ARN": self.role_arn,
            "TRAINING_IMAGE": f"{self.repo_uri}:train",
            "POLL_SECONDS": "0",
            "PROJECT_NAME": PROJECT,
            "IMAGE_REPOSITORY_NAME": REPO,
            "IMAGE_REPOSITORY_URI": self.repo_uri,
            "CLUSTER_NAME": "test",
            "ALARM_PREFIX": f"{STACK}-",
            "METRIC_NAMESPACE": "ModelOps",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_SERVICE_NAME": "modelops",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
        }.items():
            monkeypatch.setenv(key, value)
        cached_client.cache_clear()

    def services(self) -> HarnessServices:
        return HarnessServices(self)

    # --- routing moto to Python handlers and supplying what moto does not do -------------------------
    def _route(self, patches: MotoPatches) -> None:
        """Every moto patch through MotoPatches (one module, one guard list): Lambda Invoke runs the
        real handlers here; a training job writes its model.tar.gz (or fails); a build pushes its
        image. (A failed build is the local runtime's to show: its CodeBuild runs the buildspec.)"""
        role = self.role_arn
        lambdas = boto3.client("lambda", region_name=REGION)
        for name in FUNCTIONS:
            lambdas.create_function(
                FunctionName=f"{STACK}-{name}",
                Runtime="python3.11",
                Role=role,
                Handler="app.handler",
                Code={"ZipFile": b"PK"},
            )
        patches.route_lambda(_Handlers(self))
        patches.serialize_dynamodb()
        patches.after_training_job_created(self._training_job_created)
        patches.after_build_started(self._build_started)

    def _training_job_created(self, job: Any) -> None:
        hyper = dict(job.hyper_parameters or {})
        self.training_jobs.append(
            (job.training_job_name, job.algorithm_specification["TrainingImage"], hyper)
        )
        judging = hyper.get("modelops_judge") == "true"
        failure = self.judge_failure if judging else self.training_failure
        if not judging and self.training_stopped is not None:
            job.training_job_status = "Stopped"
            job.secondary_status, job.failure_reason = self.training_stopped
            return
        if failure is not None:
            job.training_job_status = "Failed"
            job.secondary_status = "Failed"
            job.failure_reason = failure
            return
        bucket, _, key = job.model_artifacts["S3ModelArtifacts"][5:].partition("/")
        evaluation = self.judge_evaluation if judging else self.training_evaluation
        files = self.judge_files if judging else self.training_files
        self.s3.put_object(Bucket=bucket, Key=key, Body=model_tarball(evaluation, files))

    def _build_started(self, build: dict[str, Any]) -> None:
        """Push the image of the tag this thread's build was started for (none if it fails)."""
        tag = self._build.tag
        if self.build_failure is not None:
            return
        # moto digests a manifest by its layers (one without layers gets one of 101 random
        # digests, so two builds could share one): a layer of its own per build.
        layer = "sha256:" + hashlib.sha256(tag.encode()).hexdigest()
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer, "size": 1}
            ],
        }
        boto3.client("ecr", region_name=REGION).put_image(
            repositoryName=REPO, imageTag=tag, imageManifest=json.dumps(manifest)
        )

    # --- driving -----------------------------------------------------------------------------------
    def put_model(self, path: Path = ROOT / "models" / "churn.yaml", **overrides: Any) -> dict[str, Any]:
        document = load_config_file(path).to_document()
        for dotted, value in overrides.items():
            node = document
            *parents, leaf = dotted.split("__")
            for part in parents:
                node = node[part]
            node[leaf] = value
        StateStore(TABLE, cached_client("dynamodb")).put_model_document(document["name"], document)
        return document

    @contextlib.contextmanager
    def executions_held(self, timeout: float = 300) -> Iterator[None]:
        """Executions started inside the block are RUNNING but evaluate nothing until it ends (as
        Step Functions starting a burst's executions late); then all begin at once. Bounded: a
        held execution begins anyway after `timeout` s."""
        released = threading.Event()
        with MotoPatches() as patches:
            patches.hold_executions(released, timeout)
            try:
                yield
            finally:
                released.set()

    def add_model(self, name: str, image: str, **overrides: Any) -> dict[str, Any]:
        """Put `name`'s config (churn's shape, its own namespace, Deployments and Services) and
        create its stable (running `image`) and canary Deployments in that namespace."""
        kubernetes = {
            "namespace": f"ns-{name}",
            "stable_deployment": f"{name}-stable",
            "canary_deployment": f"{name}-canary",
            "service": name,
            "canary_service": f"{name}-canary",
        }
        for variant, replicas in (("stable", 3), ("canary", 0)):
            self.kube.add(
                deployment(f"{name}-{variant}", variant, image, replicas, namespace=f"ns-{name}", app=name)
            )
        return self.put_model(
            name=name, **{f"kubernetes__{key}": value for key, value in kubernetes.items()}, **overrides
        )

    def upload(self, key: str, body: bytes) -> dict[str, Any]:
        """PutObject; returns its response (ETag, and VersionId when the bucket is versioned)."""
        return dict(self.s3.put_object(Bucket=BUCKET, Key=key, Body=body))

    def start(self, request: dict[str, Any]) -> dict[str, Any]:
        return self.modules["start_pipeline"].handler(request, Context("start_pipeline"))

    def wait(self, execution_arn: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            described = self.sfn.describe_execution(executionArn=execution_arn)
            if described["status"] != "RUNNING":
                return described
            time.sleep(0.05)
        raise TimeoutError(f"execution still running after {timeout}s; states: {self.states(execution_arn)}")

    def wait_for_state(self, execution_arn: str, state: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if state in self.states(execution_arn):
                return
            if self.sfn.describe_execution(executionArn=execution_arn)["status"] != "RUNNING":
                raise AssertionError(f"execution ended before {state}: {self.states(execution_arn)}")
            time.sleep(0.05)
        raise TimeoutError(f"{state} not entered within {timeout}s: {self.states(execution_arn)}")

    def executions(self) -> list[dict[str, Any]]:
        """Every execution of the state machine (ListExecutions, all pages)."""
        pages = self.sfn.get_paginator("list_executions").paginate(stateMachineArn=self.state_machine_arn)
        return [e for page in pages for e in page["executions"]]

    def states(self, execution_arn: str) -> list[str]:
        events = self.sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
        return [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]

    def notifications(self) -> list[str]:
        messages = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get(
            "Messages", []
        )
        return [m["Body"] for m in messages]

    def store(self) -> StateStore:
        return StateStore(TABLE, cached_client("dynamodb"))

    def alarm(self, name: str, state: str = "ALARM") -> dict[str, Any]:
        event = json.loads((ROOT / "events" / "alarm_state_change.json").read_text())
        event["detail"]["alarmName"] = name
        event["detail"]["state"]["value"] = state
        return self.modules["on_alarm"].handler(event, Context("on_alarm"))
