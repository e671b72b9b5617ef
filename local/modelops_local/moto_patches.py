"""Every patch of moto's internals the local runtime makes, in one place (moto 5.2.5).

`MotoPatches` applies patches and undoes them (LIFO). Each patch replaces one moto symbol listed in
`PATCHED_SYMBOLS`; `tests/integration/local/runtime/test_moto_patch_guards.py` fails loudly when one of
them moves or changes signature.

- `route_lambda(invoker)`: Lambda Invoke (RequestResponse, Event, DryRun) runs the function in the
  local runtime. A function error sets `X-Amz-Function-Error: Unhandled` and the payload is
  Lambda's error document, which moto's Step Functions interpreter turns into Error = errorType,
  Cause = payload, as AWS does. No free worker -> TooManyRequestsException (429). And a Lambda API
  error (throttling, service errors) reaches a Task's Retry/Catch as `Lambda.<ErrorCode>` (e.g.
  `Lambda.TooManyRequestsException`), as Step Functions names it; moto calls them all `Exception`.
- `route_eventbridge(delivery)`: rules deliver to Lambda and Step Functions targets (moto raises
  NotImplementedError for both) through `events.EventDelivery`; disabled rules deliver nothing.
  moto keeps delivering its own target kinds (SQS, logs, buses, archives, API destinations).
- `server_port(port)`: moto's Step Functions interpreter (and anything else of moto that calls back
  into its own server) reaches the server on `port`; moto reads it from `MOTO_PORT` in the process
  environment otherwise, which the local runtime leaves alone.
- `route_sagemaker(create=, describe=, stop=)`, `route_codebuild(start=, batch_get=)`,
  `route_eks_describe_cluster(endpoint, ca_pem)`: hand these APIs to other stand-ins.
- `execution_status_events(emit)`: when a Step Functions execution ends (SUCCEEDED, FAILED,
  TIMED_OUT or ABORTED), `emit(event)` gets the `Step Functions Execution Status Change` event
  EventBridge would carry on AWS (moto emits none); the caller puts it on the default bus. And
  StopExecution behaves as on AWS: the execution is ABORTED (with its stop date) at once, its event
  emitted then, and it stays ABORTED. moto's interpreter otherwise keeps a stopped execution
  RUNNING until its current task ends (a bake's task-token wait: until its timeout) and then
  reports it FAILED with that task's error.
- `execution_history_pages()`: GetExecutionHistory pages as AWS documents it: `maxResults` events
  per call (default 100, at most 1000), `nextToken` for the rest (an unknown token: 400
  InvalidToken), `reverseOrder` (newest first) and `includeExecutionData` (false: no input or
  output in any event). moto ignores all four and returns the whole history with every state's
  input and output (hundreds of kilobytes for one of our runs), so a client following a run
  re-read, and moto re-serialised, the whole of it on every poll. Only the page is copied (moto
  deep-copied every event of the execution on every call).
- `task_failure_cause()`: SendTaskFailure's `cause` reaches the failed task's error (its Catch's
  `Cause`, the execution's cause), as on AWS; moto's API handler passes on the error only.
- `parse_definitions_once()`: moto's interpreter parses a state machine's definition (ANTLR, about
  0.25 s for ours) again for every execution; AWS compiles a definition once. The evaluation
  components hold no per-execution state (that lives in the execution's Environment, and moto's
  own Map state evaluates one set of components from many threads), so one parsed program per
  definition text serves every execution of it. A speed-up only: what an execution does is unchanged.
- `reuse_interpreter_clients()`: moto's interpreter creates a new boto3 client (about 10 ms of
  botocore set-up) for every Task it runs: a fifth of a 1,000-execution burst's time. Its clients
  differ only by region and service (fixed credentials and config; the endpoint follows the server
  port), and boto3's clients are safe to share between threads, so one client per region, service
  and endpoint serves every Task of the service integrations our definition uses (Lambda, the
  AWS SDK integrations, SageMaker, SNS). A speed-up only: the calls are unchanged.
- `share_loader_caches()`: botocore reads and parses its JSON data (service models, endpoints,
  partitions, retry rules) once per `Session`: each session has its own `Loader`, whose cache is per
  instance. The product makes one client per service and the tests reset that cache for each test
  (a new environment), so a test process parsed the same files again and again: about 0.15 s of
  CPU per client, a quarter of the workflow tests' time. Loaders with the same search paths, extras
  and file loader now share one cache (what botocore already does for the clients of one session),
  and loading a service model, which merges the extras into what it loaded, is done under one lock.
  A speed-up only: the same files give the same data.
- `memoize_timestamp_parsing()`: botocore parses every timestamp text with dateutil, on both sides
  of an in-process moto call (moto's serializer and the client's parser): half the cost of listing
  1,000 S3 objects. `parse_timestamp` is a pure function with an immutable result, so each text is
  parsed once. A speed-up only.
- `serialize_dynamodb()`: DynamoDB answers one request at a time. moto's DynamoDB backend keeps
  items in plain dicts with no lock, so a GetItem that serialises an item while another thread's
  UpdateItem adds an attribute fails with "dictionary changed size during iteration" (seen when an
  alarm's handler recorded on the rollout while the workflow's rollout function read it). DynamoDB
  itself gives every single-item read a consistent item; one lock around moto's DynamoDB handler
  gives the same. DynamoDB calls never call back into moto, so the lock never nests across threads.
- For tests on moto's own stand-ins (`tests/integration/workflow/harness.py`), which complete a
  training job or a build at once and produce nothing: `after_training_job_created(hook)` and
  `after_build_started(hook)` run `hook` on what moto just created (to write the job's
  model.tar.gz or fail it; to push the build's image: moto reports every build SUCCEEDED), and `hold_executions(released)`
  keeps executions started meanwhile RUNNING but idle until `released` is set (as Step Functions
  starting a burst's executions late).
- `scale_retry_waits(scale, requested=)`, for tests only: a Retry's wait between attempts lasts
  `scale` times the interval moto's interpreter computed for it (IntervalSeconds x BackoffRate^n,
  capped at MaxDelaySeconds, jittered), so an integration test that retries through faults does not
  sleep the definition's real seconds. Which errors match, how many attempts, the backoff sequence
  and every outcome are moto's, unchanged; `requested` (a list) gets each unscaled interval. The
  real intervals are proven by reading the definition (tests/unit/domain/test_asl_fault_policies.py).
- `s3_policy_conditions(context)`: moto applies a bucket policy statement whatever its Condition
  says (it only understands StringEquals and ignores missing keys), so the template's TLS-only Deny
  would refuse every object request. Conditions are evaluated against `context` (by default
  `aws:SecureTransport = true`: the local endpoint stands in for AWS's HTTPS endpoint).
"""

from __future__ import annotations

import base64
import copy
import functools
import inspect
import json
import logging
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from modelops_local.iam_conditions import conditions_hold

if TYPE_CHECKING:
    from modelops_local.events import EventDelivery
    from modelops_local.lambda_runtime import LambdaInvoker

LOG = logging.getLogger(__name__)

#: moto's Step Functions modules that create a client per Task, for the integrations our definition
#: uses (see `reuse_interpreter_clients`).
_TASKS = "moto.stepfunctions.parser.asl.component.state.exec.state_task"
INTERPRETER_CLIENT_USERS: tuple[str, ...] = (
    f"{_TASKS}.lambda_eval_utils",
    f"{_TASKS}.service.state_task_service_aws_sdk",
    f"{_TASKS}.service.state_task_service_unsupported",
    f"{_TASKS}.service.state_task_service_sns",
)

#: module, attribute path, parameter names (None: the attribute must NOT exist in moto).
PATCHED_SYMBOLS: list[tuple[str, str, tuple[str, ...] | None]] = [
    ("moto.dynamodb.responses", "DynamoHandler.call_action", ("self",)),
    (
        "moto.awslambda_simple.models",
        "LambdaSimpleBackend.invoke",
        ("self", "function_name", "qualifier", "body", "headers", "response_headers"),
    ),
    ("moto.events.models", "Rule.send_to_targets", ("self", "original_event", "transform_input")),
    ("moto.sagemaker.responses", "SageMakerResponse.create_training_job", ("self",)),
    ("moto.sagemaker.responses", "SageMakerResponse.describe_training_job", ("self",)),
    ("moto.sagemaker.responses", "SageMakerResponse.stop_training_job", None),
    ("moto.codebuild.responses", "CodeBuildResponse.start_build", ("self",)),
    ("moto.codebuild.responses", "CodeBuildResponse.batch_get_builds", ("self",)),
    ("moto.eks.models", "EKSBackend.describe_cluster", ("self", "name")),
    ("moto.s3.models", "FakeBucket.get_permission", ("self", "action", "resource")),
    (
        "moto.stepfunctions.parser.asl.component.state.exec.state_task.state_task_lambda",
        "StateTaskLambda._from_error",
        ("self", "env", "ex"),
    ),
    ("moto.stepfunctions.parser.backend.execution", "BaseExecutionWorkerCommunication.terminated", ("self",)),
    (
        "moto.stepfunctions.parser.backend.execution_worker",
        "ExecutionWorker._get_evaluation_entrypoint",
        ("self",),
    ),
    ("botocore.utils", "parse_timestamp", ("value",)),
    (
        "botocore.loaders",
        "Loader.__init__",
        (
            "self",
            "extra_search_paths",
            "file_loader",
            "cache",
            "include_default_search_paths",
            "include_default_extras",
        ),
    ),
    ("botocore.loaders", "Loader.load_service_model", ("self", "args", "kwargs")),  # instance_cache
    ("moto.settings", "moto_server_port", ()),
    ("moto.stepfunctions.parser.asl.utils.boto_client", "moto_server_port", ()),
    *(
        (module, "boto_client_for", ("region", "service", "state_credentials"))
        for module in INTERPRETER_CLIENT_USERS
    ),
    (
        "moto.sagemaker.models",
        "SageMakerModelBackend.create_training_job",
        (
            "self",
            "training_job_name",
            "hyper_parameters",
            "algorithm_specification",
            "role_arn",
            "input_data_config",
            "output_data_config",
            "resource_config",
            "vpc_config",
            "stopping_condition",
            "tags",
            "enable_network_isolation",
            "enable_inter_container_traffic_encryption",
            "enable_managed_spot_training",
            "checkpoint_config",
            "debug_hook_config",
            "debug_rule_configurations",
            "tensor_board_output_config",
            "experiment_config",
        ),
    ),
    (
        "moto.codebuild.models",
        "CodeBuildBackend.start_build",
        ("self", "project_name", "source_version", "artifact_override"),
    ),
    ("moto.stepfunctions.parser.backend.execution_worker", "ExecutionWorker.start", ("self",)),
    (
        "moto.stepfunctions.parser.asl.component.common.retry.jitter_strategy_decl",
        "JitterStrategyDecl._eval_body",
        ("self", "env"),
    ),
    (
        "moto.stepfunctions.parser.backend.execution",
        "Execution.stop",
        ("self", "stop_date", "error", "cause"),
    ),
    ("moto.stepfunctions.responses", "StepFunctionResponse.send_task_failure", ("self",)),
    ("moto.stepfunctions.responses", "StepFunctionResponse.get_execution_history", ("self",)),
    (
        "moto.stepfunctions.parser.models",
        "StepFunctionsParserBackend.send_task_failure",
        ("self", "task_token", "error", "cause"),
    ),
]

TRUSTED_TRANSPORT: dict[str, str] = {"aws:SecureTransport": "true"}


class RouteError(Exception):
    """Raised by an injected callable to return an AWS error (`code`, `message`, HTTP `status`)."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


def _aws_error(code: str, message: str, status: int) -> Exception:
    from moto.core.exceptions import JsonRESTError

    error = JsonRESTError(code, message)
    error.code = status
    return error


def _request_json(response: Any) -> dict[str, Any]:
    body = response.body
    if isinstance(body, bytes):
        body = body.decode()
    return dict(json.loads(body)) if body else {}


def _routed(call: Callable[[], Any]) -> Any:
    from moto.core.responses import ActionResult

    try:
        return ActionResult(call())
    except RouteError as exc:
        raise _aws_error(exc.code, exc.message, exc.status) from exc


class MotoPatches:
    """Applies the runtime's patches to moto; `undo()` (or leaving the `with` block) restores moto."""

    def __init__(self) -> None:
        self._undo: list[Callable[[], None]] = []

    # ------------------------------------------------------------------ mechanics
    def _replace(self, owner: Any, name: str, value: Any) -> None:
        missing = object()
        original = owner.__dict__.get(name, missing)

        def restore() -> None:
            if original is missing:
                delattr(owner, name)
            else:
                setattr(owner, name, original)

        setattr(owner, name, value)
        self._undo.append(restore)

    def undo(self) -> None:
        """Restore every patched symbol, most recent first."""
        while self._undo:
            self._undo.pop()()

    def __enter__(self) -> MotoPatches:
        return self

    def __exit__(self, *exc: object) -> None:
        self.undo()

    # ------------------------------------------------------------------ Lambda
    def route_lambda(self, invoker: LambdaInvoker) -> None:
        """Run Lambda Invoke through `invoker` (the local runtime, or the tests' `InProcessLambda`)."""
        from moto.awslambda_simple.models import LambdaSimpleBackend

        from modelops_local.lambda_runtime import (
            EVENT,
            InvalidRequestContentError,
            LambdaRuntimeError,
            LambdaThrottledError,
            UnknownFunctionError,
        )

        def invoke(
            backend: Any,
            function_name: str,
            qualifier: str | None,
            body: Any,
            headers: Any,
            response_headers: Any,
        ) -> bytes:
            function = backend.get_function(function_name, qualifier)  # unknown -> ResourceNotFoundException
            invocation_type = (headers or {}).get("X-Amz-Invocation-Type") or "RequestResponse"
            response_headers["X-Amz-Executed-Version"] = "$LATEST"
            if invocation_type == "DryRun":
                return b""
            payload = body.encode() if isinstance(body, str) else (body or b"")
            try:
                if invocation_type == EVENT:
                    invoker.invoke_async(function.function_arn, payload)
                    return b""
                result = invoker.invoke(function.function_arn, payload)
            except LambdaThrottledError as exc:
                raise _aws_error("TooManyRequestsException", f"Rate Exceeded. {exc}", 429) from exc
            except UnknownFunctionError as exc:
                raise _aws_error(
                    "ResourceNotFoundException",
                    f"{exc} (it exists in moto; only functions deployed from the template have code locally)",
                    404,
                ) from exc
            except InvalidRequestContentError as exc:
                raise _aws_error("InvalidRequestContentException", str(exc), 400) from exc
            except LambdaRuntimeError as exc:
                raise _aws_error("ServiceException", str(exc), 500) from exc
            if result.function_error:
                response_headers["x-amz-function-error"] = result.function_error
            return result.payload

        self._replace(LambdaSimpleBackend, "invoke", invoke)
        self._name_lambda_api_errors()

    def _name_lambda_api_errors(self) -> None:
        from botocore.exceptions import ClientError
        from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import (
            CustomErrorName,
        )
        from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import FailureEvent
        from moto.stepfunctions.parser.asl.component.state.exec.state_task.state_task_lambda import (
            StateTaskLambda,
        )

        original = StateTaskLambda._from_error

        def from_error(state: Any, env: Any, ex: Exception) -> Any:
            event = original(state, env, ex)
            if not isinstance(ex, ClientError):
                return event
            name = f"Lambda.{ex.response['Error']['Code']}"
            details: dict[str, Any] = dict(event.event_details or {})
            failed = details.get("lambdaFunctionFailedEventDetails")
            if failed is not None:
                details["lambdaFunctionFailedEventDetails"] = {**failed, "error": name}
            return FailureEvent(
                env=env,
                error_name=CustomErrorName(name),
                event_type=event.event_type,
                event_details=details,  # type: ignore[arg-type]  # EventDetails is this TypedDict
            )

        self._replace(StateTaskLambda, "_from_error", from_error)

    # ------------------------------------------------------------------ EventBridge
    def route_eventbridge(self, delivery: EventDelivery) -> None:
        """Deliver matched events to Lambda and Step Functions targets through `delivery`."""
        from moto.events.models import Rule

        original = Rule.send_to_targets

        def send_to_targets(rule: Any, original_event: dict[str, Any], transform_input: bool = True) -> None:
            if not str(rule.state).startswith("ENABLED"):
                return
            if not rule.event_pattern.matches_event(original_event):
                return
            ours = [t for t in rule.targets if delivery.handles(str(t.get("Arn", "")))]
            others = [t for t in rule.targets if t not in ours]
            if ours:
                delivery.deliver_rule_event(rule.arn, ours, original_event)
            if others:
                proxy = copy.copy(rule)
                proxy.targets = others
                original(proxy, original_event, transform_input)  # type: ignore[arg-type]

        self._replace(Rule, "send_to_targets", send_to_targets)

    # ------------------------------------------------------------------ SageMaker
    def route_sagemaker(
        self,
        *,
        create: Callable[[dict[str, Any]], dict[str, Any]],
        describe: Callable[[str], dict[str, Any]],
        stop: Callable[[str], None],
    ) -> None:
        """CreateTrainingJob(request) -> response, DescribeTrainingJob(name) -> response, StopTrainingJob(name).

        Requests and responses use the API's member names; datetimes are serialised by moto.
        Raise `RouteError("ValidationException", "Requested resource not found.")` for an unknown job.
        """
        from moto.sagemaker.responses import SageMakerResponse

        def create_training_job(response: Any) -> Any:
            return _routed(lambda: create(_request_json(response)))

        def describe_training_job(response: Any) -> Any:
            return _routed(lambda: describe(str(_request_json(response)["TrainingJobName"])))

        def stop_training_job(response: Any) -> Any:
            def call() -> dict[str, Any]:
                stop(str(_request_json(response)["TrainingJobName"]))
                return {}

            return _routed(call)

        self._replace(SageMakerResponse, "create_training_job", create_training_job)
        self._replace(SageMakerResponse, "describe_training_job", describe_training_job)
        self._replace(SageMakerResponse, "stop_training_job", stop_training_job)

    # ------------------------------------------------------------------ CodeBuild
    def route_codebuild(
        self,
        *,
        start: Callable[[dict[str, Any]], dict[str, Any]],
        batch_get: Callable[[list[str]], list[dict[str, Any]]],
    ) -> None:
        """StartBuild(request) -> build, BatchGetBuilds(ids) -> known builds (the rest are buildsNotFound).

        The request keeps every member, environmentVariablesOverride included (moto's drops it).
        """
        from moto.codebuild.responses import CodeBuildResponse

        def start_build(response: Any) -> Any:
            return _routed(lambda: {"build": start(_request_json(response))})

        def batch_get_builds(response: Any) -> Any:
            def call() -> dict[str, Any]:
                ids = [str(i) for i in _request_json(response).get("ids", [])]
                builds = batch_get(ids)
                found = {b.get("id") for b in builds}
                return {"builds": builds, "buildsNotFound": [i for i in ids if i not in found]}

            return _routed(call)

        self._replace(CodeBuildResponse, "start_build", start_build)
        self._replace(CodeBuildResponse, "batch_get_builds", batch_get_builds)

    # ------------------------------------------------------------------ EKS
    def route_eks_describe_cluster(self, endpoint: str, ca_pem: str | bytes) -> None:
        """DescribeCluster reports `endpoint` and this CA (base64 PEM, as EKS does) for every cluster.

        Clusters still have to exist (create them with `eks.create_cluster`); an unknown name is
        ResourceNotFoundException as on AWS.
        """
        from moto.eks.models import EKSBackend

        original = EKSBackend.describe_cluster
        pem = ca_pem.encode() if isinstance(ca_pem, str) else ca_pem
        data = base64.b64encode(pem).decode()

        def describe_cluster(backend: Any, name: str) -> Any:
            cluster = original(backend, name)
            cluster.endpoint = endpoint
            cluster.certificate_authority = {"data": data}
            return cluster

        self._replace(EKSBackend, "describe_cluster", describe_cluster)

    # ------------------------------------------------------------------ moto's own server
    def server_port(self, port: int) -> None:
        """moto calls back into its server on `port` (instead of reading MOTO_PORT from os.environ)."""
        import moto.settings
        from moto.stepfunctions.parser.asl.utils import boto_client

        def moto_server_port() -> str:
            return str(port)

        self._replace(moto.settings, "moto_server_port", moto_server_port)
        self._replace(boto_client, "moto_server_port", moto_server_port)

    # ------------------------------------------------------------------ Step Functions events
    def execution_status_events(self, emit: Callable[[dict[str, Any]], None]) -> None:
        """Hand `emit` the `Step Functions Execution Status Change` event of every execution that ends."""
        from moto.stepfunctions.parser.api import ExecutionStatus
        from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication, Execution

        original_terminated = BaseExecutionWorkerCommunication.terminated
        original_stop = Execution.stop

        def send(execution: Any) -> None:
            try:
                event = execution_status_change_event(execution)
            except Exception:
                LOG.exception("building the status change event of an execution failed")
                return
            try:
                emit(event)
            except Exception:
                LOG.exception("emitting %s's status change event failed", event["detail"]["name"])

        def stop(execution: Any, stop_date: Any, error: str | None, cause: str | None) -> None:
            running = execution.exec_status == ExecutionStatus.RUNNING
            original_stop(execution, stop_date, error, cause)
            if not running:
                return
            execution.exec_status = ExecutionStatus.ABORTED
            execution.stop_date = stop_date
            execution.error, execution.cause = error or None, cause or None
            execution._modelops_aborted = True
            # Off the API's thread: StopExecution answers at once, the event follows (as on AWS).
            threading.Thread(target=send, args=(execution,), name="sfn-aborted-event", daemon=True).start()

        def terminated(comm: Any) -> None:
            execution = comm.execution
            aborted = getattr(execution, "_modelops_aborted", False)
            stop_date = execution.stop_date
            original_terminated(comm)
            if aborted:  # stopped: whatever the interrupted task then raised, it stays ABORTED
                execution.exec_status = ExecutionStatus.ABORTED
                execution.stop_date = stop_date
                return
            send(execution)

        self._replace(Execution, "stop", stop)
        self._replace(BaseExecutionWorkerCommunication, "terminated", terminated)

    def execution_history_pages(self) -> None:
        """GetExecutionHistory honours maxResults, nextToken, reverseOrder and includeExecutionData."""
        from moto.core.responses import ActionResult
        from moto.stepfunctions.responses import StepFunctionResponse

        def get_execution_history(response: Any) -> Any:
            arn = response._get_param("executionArn")
            page = history_page(
                _recorded_events(response.stepfunction_backend, arn),
                arn,
                max_results=response._get_param("maxResults"),
                next_token=response._get_param("nextToken"),
                reverse=bool(response._get_param("reverseOrder", False)),
                include_data=response._get_param("includeExecutionData", True) is not False,
            )
            return ActionResult({**page, "events": copy.deepcopy(page["events"])})

        self._replace(StepFunctionResponse, "get_execution_history", get_execution_history)

    def task_failure_cause(self) -> None:
        """SendTaskFailure passes its `cause` on to the waiting task (see the module doc)."""
        from moto.core.responses import EmptyResult
        from moto.stepfunctions.responses import StepFunctionResponse

        def send_task_failure(response: Any) -> Any:
            backend = response.stepfunction_backend
            token, error = response._get_param("taskToken"), response._get_param("error")
            if "cause" in inspect.signature(backend.send_task_failure).parameters:  # the interpreter's
                backend.send_task_failure(token, error=error, cause=response._get_param("cause"))
            else:  # moto without execute_state_machine: no execution waits for it
                backend.send_task_failure(token, error=error)
            return EmptyResult()

        self._replace(StepFunctionResponse, "send_task_failure", send_task_failure)

    def parse_definitions_once(self) -> None:
        """Parse each state machine definition once, not once per execution (see the module doc)."""
        from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
        from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

        programs: dict[str, Any] = {}
        parsing = threading.Lock()  # executions starting together parse once, not once each

        def entrypoint(worker: Any) -> Any:
            definition = worker._evaluation_details.state_machine_details.definition
            with parsing:
                if definition not in programs:
                    if len(programs) >= 32:  # definitions of a test session's many machines
                        programs.pop(next(iter(programs)))
                    programs[definition] = AmazonStateLanguageParser.parse(definition)[0]
                return programs[definition]

        self._replace(ExecutionWorker, "_get_evaluation_entrypoint", entrypoint)

    def reuse_interpreter_clients(self) -> None:
        """One client per region, service and endpoint for moto's interpreter (see the module doc)."""
        import importlib

        from moto.core.models import botocore_stubber
        from moto.stepfunctions.parser.asl.utils import boto_client

        original = boto_client.boto_client_for
        clients: dict[tuple[str, str, bool, str], Any] = {}
        creating = threading.Lock()  # boto3's default session is not safe to create clients from at once

        def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
            # moto ignores state_credentials (fixed test keys); the endpoint is the stubber's or the
            # server's port, both read at call time, as moto's function does.
            key = (region, service, bool(botocore_stubber.enabled), boto_client.moto_server_port())
            with creating:
                if key not in clients:
                    clients[key] = original(
                        region=region, service=service, state_credentials=state_credentials
                    )
                return clients[key]

        for module in INTERPRETER_CLIENT_USERS:
            self._replace(importlib.import_module(module), "boto_client_for", boto_client_for)

    def share_loader_caches(self) -> None:
        """Loaders with the same search paths and extras share one cache (see the module doc)."""
        import botocore.loaders

        original_init = botocore.loaders.Loader.__init__
        original_load = botocore.loaders.Loader.load_service_model
        caches: dict[tuple[Any, ...], dict[Any, Any]] = {}
        extras = threading.RLock()  # load_service_model merges the extras into the model it loaded

        @functools.wraps(original_init)
        def init(loader: Any, *args: Any, **kwargs: Any) -> None:
            original_init(loader, *args, **kwargs)
            key = (tuple(loader.search_paths), tuple(loader.extras_types), type(loader.file_loader))
            loader._cache = caches.setdefault(key, {})

        @functools.wraps(original_load)
        def load_service_model(loader: Any, *args: Any, **kwargs: Any) -> Any:
            with extras:
                return original_load(loader, *args, **kwargs)

        self._replace(botocore.loaders.Loader, "__init__", init)
        self._replace(botocore.loaders.Loader, "load_service_model", load_service_model)

    def memoize_timestamp_parsing(self) -> None:
        """Parse each timestamp text once (see the module doc)."""
        import botocore.parsers
        import botocore.utils

        original = botocore.utils.parse_timestamp
        cached = functools.lru_cache(maxsize=1 << 16)(original)

        def parse_timestamp(value: Any) -> Any:
            try:
                return cached(value)
            except TypeError:  # not hashable: not a text or a number; let botocore say what it is
                return original(value)

        self._replace(botocore.utils, "parse_timestamp", parse_timestamp)
        if botocore.parsers.DEFAULT_TIMESTAMP_PARSER is original:  # bound at import
            self._replace(botocore.parsers, "DEFAULT_TIMESTAMP_PARSER", parse_timestamp)

    def serialize_dynamodb(self) -> None:
        """One DynamoDB request at a time (see the module doc)."""
        from moto.dynamodb.responses import DynamoHandler

        original = DynamoHandler.call_action
        lock = threading.RLock()

        def call_action(handler: Any) -> Any:
            with lock:
                return original(handler)

        self._replace(DynamoHandler, "call_action", call_action)

    # ------------------------------------------------------------------ moto's own stand-ins, for tests
    def after_training_job_created(self, hook: Callable[[Any], None]) -> None:
        """After moto creates a training job (Completed at once, nothing written), `hook(job)` gets
        its `FakeTrainingJob`: to write its model.tar.gz, or set it Failed with a reason."""
        from moto.sagemaker.models import SageMakerModelBackend

        original = SageMakerModelBackend.create_training_job

        def create_training_job(backend: Any, *args: Any, **kwargs: Any) -> Any:
            job = original(backend, *args, **kwargs)
            hook(job)
            return job

        self._replace(SageMakerModelBackend, "create_training_job", create_training_job)

    def after_build_started(self, hook: Callable[[dict[str, Any]], None]) -> None:
        """After moto starts a build (nothing pushed; BatchGetBuilds will call it SUCCEEDED whatever
        is set here), `hook(build)` gets its metadata before StartBuild returns: to push its image."""
        from moto.codebuild.models import CodeBuildBackend

        original = CodeBuildBackend.start_build

        def start_build(backend: Any, project_name: str, *args: Any, **kwargs: Any) -> Any:
            build = original(backend, project_name, *args, **kwargs)
            hook(build)
            return build

        self._replace(CodeBuildBackend, "start_build", start_build)

    def hold_executions(self, released: threading.Event, timeout: float) -> None:
        """Executions started from now are RUNNING but evaluate nothing until `released` is set (or
        `timeout` seconds passed: bounded), then all begin."""
        from moto.stepfunctions.parser.backend.execution_worker import TMP_THREADS, ExecutionWorker

        def start(worker: Any) -> None:
            def run() -> None:
                released.wait(timeout)
                worker._execution_logic()

            thread = threading.Thread(target=run, daemon=True)
            TMP_THREADS.append(thread)
            thread.start()

        self._replace(ExecutionWorker, "start", start)

    def scale_retry_waits(self, scale: float, requested: list[float] | None = None) -> None:
        """A Retry waits `scale` times the interval moto computed (see the module doc); tests only."""
        from moto.stepfunctions.parser.asl.component.common.retry.jitter_strategy_decl import (
            JitterStrategyDecl,
        )

        if not 0 < scale <= 1:
            raise ValueError(f"scale must be in (0, 1], got {scale}")
        original = JitterStrategyDecl._eval_body

        # RetrierDecl evaluates IntervalSeconds, BackoffRate, MaxDelaySeconds and then the jitter,
        # each leaving the interval on the stack, and sleeps what the jitter left: scaled here, last.
        def eval_body(jitter: Any, env: Any) -> None:
            original(jitter, env)
            interval = float(env.stack.pop())
            if requested is not None:
                requested.append(interval)
            env.stack.append(interval * scale)

        self._replace(JitterStrategyDecl, "_eval_body", eval_body)

    # ------------------------------------------------------------------ S3 bucket policies
    def s3_policy_conditions(self, context: Mapping[str, str] | None = None) -> None:
        """Evaluate bucket policy Conditions against `context` instead of treating them as met."""
        from moto.iam.access_control import IAMPolicy, PermissionResult
        from moto.s3.models import FakeBucket

        values = dict(TRUSTED_TRANSPORT if context is None else context)

        def get_permission(bucket: Any, action: str, resource: str) -> Any:
            if bucket.policy is None:
                return PermissionResult.NEUTRAL
            document = json.loads(
                bucket.policy.decode() if isinstance(bucket.policy, bytes) else bucket.policy
            )
            statements = document.get("Statement", [])
            statements = [statements] if isinstance(statements, dict) else statements
            applicable = [
                {k: v for k, v in s.items() if k != "Condition"}
                for s in statements
                if conditions_hold(s.get("Condition") or {}, values)
            ]
            if not applicable:
                return PermissionResult.NEUTRAL
            return IAMPolicy(json.dumps({**document, "Statement": applicable})).is_action_permitted(
                action, resource
            )

        self._replace(FakeBucket, "get_permission", get_permission)


# ---------------------------------------------------------------------- Step Functions events
#: An event's execution data: what GetExecutionHistory leaves out with includeExecutionData false.
EXECUTION_DATA = ("input", "output")


def _recorded_events(backend: Any, arn: str) -> list[dict[str, Any]]:
    """The execution's history events as recorded (oldest first), not copied: moto's own
    get_execution_history deep-copies every event with its input and output on every call (18 ms a
    call for one of our runs); events are appended once and never changed, so a snapshot of the
    list, taken under the recorder's lock, is enough, and the caller copies the page it returns."""
    execution = backend.describe_execution(execution_arn=arn)  # ExecutionDoesNotExist as moto
    if not hasattr(execution, "exec_worker"):  # moto's backend without the interpreter
        return list(backend.get_execution_history(arn)["events"])
    env = execution.exec_worker.env if execution.exec_worker is not None else None
    if env is None:  # not started yet
        return []
    manager = env.event_manager
    with manager._mutex:
        return list(manager._history_event_list)


def history_page(
    events: list[dict[str, Any]],
    arn: str,
    *,
    max_results: int | None = None,
    next_token: str | None = None,
    reverse: bool = False,
    include_data: bool = True,
) -> dict[str, Any]:
    """One page of an execution's history events (oldest first, or newest first if `reverse`), as
    GetExecutionHistory returns it: `max_results` events (0 or None: 100), a `nextToken` when more
    follow. The token names the execution, the order and the last event returned, so events the
    execution adds meanwhile neither repeat nor shift a page; any other token raises InvalidToken."""
    limit = max_results or 100
    if not 1 <= limit <= 1000:
        raise _aws_error("ValidationException", f"maxResults must be between 0 and 1000, got {limit}", 400)
    ordered = events[::-1] if reverse else events
    if next_token:
        try:
            token = json.loads(base64.b64decode(next_token, validate=True))
            if token["arn"] != arn or token["reverse"] != reverse:
                raise ValueError("another execution's or order's token")
            last = int(token["last"])
        except (ValueError, KeyError, TypeError) as exc:
            raise _aws_error("InvalidToken", f"Invalid Token: {exc}", 400) from exc
        ordered = [e for e in ordered if (e["id"] < last if reverse else e["id"] > last)]
    page = ordered[:limit]
    result: dict[str, Any] = {"events": page if include_data else [_without_execution_data(e) for e in page]}
    if len(ordered) > limit:
        token_text = json.dumps({"arn": arn, "reverse": reverse, "last": page[-1]["id"]})
        result["nextToken"] = base64.b64encode(token_text.encode()).decode()
    return result


def _without_execution_data(event: dict[str, Any]) -> dict[str, Any]:
    stripped = dict(event)
    for key, value in event.items():
        if key.endswith("EventDetails") and isinstance(value, dict):
            stripped[key] = {k: v for k, v in value.items() if k not in EXECUTION_DATA}
    return stripped


def execution_status_change_event(execution: Any) -> dict[str, Any]:
    """The EventBridge event AWS sends when `execution` (moto's parser Execution) changes status.

    Shape as documented for `Step Functions Execution Status Change`: dates in epoch milliseconds,
    `input`/`output` as JSON text (output only when SUCCEEDED), `error`/`cause` or null."""
    status = getattr(execution.exec_status, "value", execution.exec_status)
    error, cause = execution.error, execution.cause

    def millis(moment: Any) -> int | None:
        return None if moment is None else int(moment.timestamp() * 1000)

    output = None
    if status == "SUCCEEDED" and execution.output is not None:
        output = json.dumps(execution.output, separators=(",", ":"))
    return {
        "source": "aws.states",
        "detail-type": "Step Functions Execution Status Change",
        "resources": [execution.exec_arn],
        "detail": {
            "executionArn": execution.exec_arn,
            "stateMachineArn": execution.state_machine_arn,
            "name": execution.name,
            "status": status,
            "startDate": millis(execution.start_date),
            "stopDate": millis(execution.stop_date),
            "input": json.dumps(execution.input_data, separators=(",", ":")),
            "output": output,
            "inputDetails": {"included": True},
            "outputDetails": {"included": True} if output is not None else None,
            "error": error,
            "cause": cause,
        },
    }


# ---------------------------------------------------------------------- IAM conditions
