"""`LocalCloud`: every local stand-in wired together, the way `modelops local` runs them.

One process holds: moto's server (AWS APIs, Step Functions executing the real definition), the
stack created from template.yaml, the Lambda runtime (a worker process per function), EventBridge
delivery and schedules, SageMaker training (the serving image's `train`), CodeBuild (a real OCI
image recorded in ECR), the Kubernetes API stand-in with its controller (pods are `serve`
processes) and Service ports, CloudWatch metrics from the pods' EMF lines and the alarm evaluator.

The functions see only endpoints: AWS_ENDPOINT_URL for AWS, and the cluster endpoint and CA that
`eks:DescribeCluster` returns. Nothing in functions/ or the layer knows it runs here.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelops.adapters.store import StateStore
from modelops.config import ModelConfig
from modelops.model_admin import StackInfo

from modelops_local import moto_cloudwatch_patch, oci
from modelops_local.aws_server import ACCESS_KEY_ID, SECRET_ACCESS_KEY, LocalAws
from modelops_local.cloudwatch.emf import parse_emf_line, put_datums
from modelops_local.cloudwatch.errors import EmfError
from modelops_local.cloudwatch.evaluator import AlarmEvaluator
from modelops_local.cloudwatch.events import StateSnapshot, alarm_state_change_event
from modelops_local.codebuild import LocalCodeBuild, resolve_image
from modelops_local.events import EventDelivery, Scheduler
from modelops_local.kube import KubeApiServer, KubeStore
from modelops_local.kube.auth import EksTokenValidator
from modelops_local.kube.controller import LocalController
from modelops_local.kube.errors import NotFoundError
from modelops_local.kube.rbac import RoleAuthorizer
from modelops_local.kube.services import ServiceProxies
from modelops_local.lambda_runtime import LambdaRuntime
from modelops_local.manifests import render_manifests
from modelops_local.moto_patches import MotoPatches, RouteError
from modelops_local.sagemaker_runner import (
    TrainingJobExistsError,
    TrainingJobNotFoundError,
    TrainingJobNotStoppableError,
    TrainingJobState,
    TrainingRequestError,
    TrainingRunner,
)
from modelops_local.stack import StackResources, deploy_stack

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
SERVING_IMAGE = ROOT / "serving_image"
#: The kinds of serving_image/k8s the stand-in serves (RBAC documents feed the authorizer).
SERVED_KINDS = frozenset({"Namespace", "Deployment", "Service", "HTTPRoute", "Ingress"})
RBAC_KINDS = frozenset({"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"})
#: Before a model's first version the Deployments exist at 0 replicas with this image (never pulled).
BOOTSTRAP_IMAGE = "public.ecr.aws/modelops/no-version-yet:bootstrap"
#: The local build of the training image copies two folders; seconds, not minutes.
BOOTSTRAP_TIMEOUT_SECONDS = 120.0
ROLLOUT_GROUP = "modelops-rollout"  # the group 40-rbac.yaml binds; an EKS access entry maps to it
RETENTION_GROUP = "modelops-image-retention"  # 40-rbac.yaml's read-only group for the image clean-up


class LocalCloudError(Exception):
    """The local runtime cannot start or do what was asked; the message says what to do."""


@dataclass
class LocalSettings:
    """How the local runtime runs. Defaults suit the demo on a 2-core machine."""

    state_dir: Path
    stack_name: str = "modelops"
    cluster_name: str = "modelops-local"
    aws_port: int = 0  # 0: any free port
    allow_other_port: bool = True  # the port is taken: pick another (and say so)
    poll_interval_seconds: int = 2  # the template's PollIntervalSeconds
    alarm_interval_seconds: float = 1.0
    metrics_flush_seconds: float = 0.5
    pod_backoff_scale: float = 0.1  # CrashLoopBackOff delays x this (Kubernetes: 10 s doubling to 5 min)
    template: Path = TEMPLATE
    serving_image: Path = SERVING_IMAGE
    extra_parameters: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Endpoints:
    aws: str
    kubernetes: str
    stack_name: str
    cluster_name: str
    state_dir: str

    def environment(self) -> dict[str, str]:
        """What a shell needs for `modelops status|history|rollback` and the AWS CLI to reach us."""
        return {
            "AWS_ENDPOINT_URL": self.aws,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "MODELOPS_STACK": self.stack_name,
        }


class LocalCloud:
    """Start with `start()` (or as a context manager), stop with `stop()`; see the module docstring."""

    def __init__(self, settings: LocalSettings, progress: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.state_dir = Path(settings.state_dir)
        self.progress = progress or (lambda message: log.info("%s", message))
        self.aws: LocalAws | None = None
        self.stack: StackResources | None = None
        self.stack_info: StackInfo | None = None
        self._stoppers: list[tuple[str, Callable[[], None]]] = []
        self._metric_queue: queue.Queue[Any] = queue.Queue()
        self._metric_stop = threading.Event()
        self._image_lock = threading.Lock()
        self.training_updates: list[tuple[float, str, str, str]] = []  # (time, job, status, secondary)
        self.alarm_changes: list[dict[str, Any]] = []
        self._training_rewrites: list[Callable[[dict[str, Any]], dict[str, Any]]] = []

    # --- test support: fault injection (off unless a test arms it) ---------------------------------
    @property
    def kube_faults(self) -> Any:
        """The Kubernetes API server's `FaultInjector` (kube/faults.py): answer 500/409/503, stall,
        drop or rewrite the next matching requests."""
        return self.kube_server.faults

    def rewrite_next_training_job(self, rewrite: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        """The next CreateTrainingJob request goes through `rewrite` first (e.g. a StoppingCondition
        shorter than the config allows, for a job that exceeds its max runtime)."""
        self._training_rewrites.append(rewrite)

    @property
    def lambda_faults(self) -> Any:
        """The Lambda runtime's `InvocationFaults`: shorter timeouts or a killed worker for the next
        matching invocations (and `self.runtime.kill_busy(function)` for a worker mid-request)."""
        return self.runtime.faults

    # --- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> LocalCloud:
        """Bring every stand-in up and deploy the stack; LocalCloudError (everything stopped) on failure."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        s = self.settings
        for sub in ("training", "builds", "pods", "images"):
            (self.state_dir / sub).mkdir(parents=True, exist_ok=True)
        self.progress("starting the AWS stand-in (moto server, Step Functions runs the real definition)")
        aws = LocalAws(port=s.aws_port, allow_other_port=s.allow_other_port).start()
        self.aws = aws
        self._on_stop("aws", aws.stop)
        if s.aws_port and aws.port != s.aws_port:
            self.progress(f"port {s.aws_port} is in use; the AWS endpoint is on {aws.port} instead")
        moto_cloudwatch_patch.apply()
        self._on_stop("cloudwatch patch", moto_cloudwatch_patch.remove)
        # The process's environment and the product's client cache stay as they were: everything
        # here takes `aws.client`, and the functions get the endpoint in their workers' environment.

        runtime = LambdaRuntime(self.state_dir, aws.function_environment())  # logs in logs/lambda/
        self.runtime = runtime
        self._on_stop("lambda runtime", lambda: runtime.shutdown(timeout=5))
        delivery = EventDelivery(runtime, aws)
        self.delivery = delivery
        self._on_stop("event delivery", delivery.shutdown)
        patches = MotoPatches()
        self._on_stop("moto patches", patches.undo)
        patches.route_lambda(runtime)
        patches.route_eventbridge(delivery)
        patches.s3_policy_conditions()
        patches.execution_status_events(self._emit_event)
        patches.task_failure_cause()
        patches.execution_history_pages()
        patches.serialize_dynamodb()
        # Speed-ups only: each definition parsed once, not per execution (a burst's hundreds of
        # executions spent most of this process's time in moto's ANTLR parser), each timestamp
        # text parsed once, one client per service for the interpreter's Tasks, botocore's JSON data
        # parsed once per process, not once per session.
        patches.parse_definitions_once()
        patches.memoize_timestamp_parsing()
        patches.reuse_interpreter_clients()
        patches.share_loader_caches()

        self.training = TrainingRunner(
            aws.client("s3"), self.state_dir / "training", s.serving_image, self._training_update
        )
        self._on_stop("training", lambda: self.training.shutdown(timeout=10))
        patches.route_sagemaker(
            create=self._create_training_job,
            describe=self._describe_training_job,
            stop=self._stop_training_job,
        )
        self.codebuild = LocalCodeBuild(
            s3=aws.client("s3"),
            ecr=aws.client("ecr"),
            codebuild=aws.client("codebuild"),
            layout_dir=self.layout_dir,
            work_dir=self.state_dir / "builds",
        )
        self._on_stop("codebuild", lambda: self.codebuild.shutdown(timeout=10))
        patches.route_codebuild(start=self.codebuild.start, batch_get=self.codebuild.batch_get)

        self.progress("starting the Kubernetes stand-in (API server, controller, Service ports)")
        self.kube_store = KubeStore()
        # RBAC documents by (kind, namespace, name): putting a model again replaces, never duplicates
        self.rbac_objects: dict[tuple[str, str | None, str], dict[str, Any]] = {}
        self.kube_server = KubeApiServer(
            self.kube_store,
            authenticate=EksTokenValidator(s.cluster_name, {ACCESS_KEY_ID: SECRET_ACCESS_KEY}),
            authorize=self._authorize,
        ).start()
        self._on_stop("kubernetes api", self.kube_server.stop)
        self.services = ServiceProxies(self.kube_store)
        self.services.start()
        self._on_stop("service ports", self.services.stop)
        self.kube_server.service_backend = self.services.backend
        self.controller = LocalController(
            self.kube_store,
            self.image_rootfs,
            state_dir=self.state_dir,
            on_stdout_line=self._pod_line,
            backoff_scale=s.pod_backoff_scale,
        )
        self.controller.start()
        self._on_stop("controller", lambda: self.controller.stop(timeout=15))
        eks = aws.client("eks")
        eks.create_cluster(
            name=s.cluster_name,
            roleArn=f"arn:aws:iam::{aws.account_id}:role/modelops-local-eks",
            resourcesVpcConfig={"subnetIds": []},
        )
        patches.route_eks_describe_cluster(self.kube_server.url, self.kube_server.ca_pem)

        self.progress(f"creating the stack {s.stack_name!r} from {s.template.name}")
        parameters = {
            "ClusterName": s.cluster_name,
            "PollIntervalSeconds": s.poll_interval_seconds,
            **s.extra_parameters,
        }
        self.stack = deploy_stack(s.template, s.stack_name, parameters, aws, lambda_runtime=runtime)
        for logical_id, props in sorted(self.stack.not_emulated.items()):
            log.info("%s: properties with no local effect: %s", logical_id, ", ".join(props))
        name = self.stack.outputs["StackConfigParameterName"]
        value = aws.client("ssm").get_parameter(Name=name)["Parameter"]["Value"]
        self.stack_info = StackInfo.from_parameter(value)
        self._bootstrap()

        self.scheduler = Scheduler(aws, delivery).start()
        self._on_stop("scheduler", self.scheduler.stop)
        self.evaluator = AlarmEvaluator(
            aws.client("cloudwatch"),
            self._emit_alarm_event,
            interval_seconds=s.alarm_interval_seconds,
            alarm_name_prefix=self.stack_info.alarm_prefix,
        )
        self.evaluator.start()
        self._on_stop("alarm evaluator", self.evaluator.stop)
        flusher = threading.Thread(target=self._flush_metrics, name="emf-metrics", daemon=True)
        flusher.start()

        def stop_metrics() -> None:
            self._metric_stop.set()
            flusher.join(5)

        self._on_stop("metrics", stop_metrics)
        self.progress(f"ready: AWS {aws.endpoint_url}, Kubernetes {self.kube_server.url}")

    def stop(self) -> None:
        """Stop everything started, newest first; every pod and worker process ends."""
        while self._stoppers:
            what, stop = self._stoppers.pop()
            began = time.monotonic()
            try:
                stop()
            except Exception:
                log.exception("stopping %s failed", what)
            took = time.monotonic() - began
            if took > 1.0:
                self.progress(f"stopping {what} took {took:.1f}s")

    def __enter__(self) -> LocalCloud:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _on_stop(self, what: str, stop: Callable[[], Any]) -> None:
        self._stoppers.append((what, stop))

    # --- what users and the demo use ---------------------------------------------------------------
    @property
    def layout_dir(self) -> Path:
        """The OCI image layout that stands for ECR's storage."""
        return self.state_dir / "images" / "oci"

    @property
    def endpoints(self) -> Endpoints:
        assert self.aws is not None
        return Endpoints(
            aws=self.aws.endpoint_url,
            kubernetes=self.kube_server.url,
            stack_name=self.settings.stack_name,
            cluster_name=self.settings.cluster_name,
            state_dir=str(self.state_dir),
        )

    def client(self, service: str) -> Any:
        assert self.aws is not None
        return self.aws.client(service)

    @property
    def info(self) -> StackInfo:
        if self.stack_info is None:
            raise LocalCloudError("the local runtime is not started")
        return self.stack_info

    def store(self) -> StateStore:
        return StateStore(self.info.table, self.client("dynamodb"))

    def put_model(self, config: ModelConfig, *, base_dir: Path | None = None) -> dict[str, Any]:
        """What `modelops model put` does (a local training.script.source, relative to `base_dir`,
        default the working folder, is packed and uploaded), plus what a platform engineer applies
        once per model on a real cluster: the serving manifests (Namespace, Deployments at 0
        replicas, Services, RBAC)."""
        from modelops_cli.model_put import put_model_config

        result = put_model_config(config, self.info, base_dir=base_dir or Path.cwd(), clients=self.client)
        self.apply_manifests(config)  # after the config is accepted: a refused one applies nothing
        return result

    def apply_manifests(self, config: ModelConfig) -> list[str]:
        """Create the model's serving objects from serving_image/k8s (kept if they exist); returns
        what was created. Kinds with no local controller (PodDisruptionBudget, HPA, NetworkPolicy:
        local pods are processes on loopback, nothing enforces it) are reported, not applied."""
        k = config.kubernetes
        objects = render_manifests(
            config.name, k.namespace, BOOTSTRAP_IMAGE, "0", 0, router=config.canary.router
        )
        created, skipped = [], []
        for obj in objects:
            kind, name = obj["kind"], obj["metadata"]["name"]
            if kind in RBAC_KINDS:
                meta = obj["metadata"]
                self.rbac_objects[(kind, meta.get("namespace"), name)] = obj
                continue
            if kind not in SERVED_KINDS:
                skipped.append(f"{kind}/{name}")
                continue
            namespace = obj["metadata"].get("namespace")
            try:
                self.kube_store.get(kind, namespace, name)
            except NotFoundError:
                self.kube_store.create(obj, namespace=namespace)
                created.append(f"{kind}/{name}")
        # Every local function signs with the one local key, so it stands for both access entries.
        self._authorizer = RoleAuthorizer(
            self.rbac_objects.values(), {ACCESS_KEY_ID: [ROLLOUT_GROUP, RETENTION_GROUP]}
        )
        if skipped:
            self.progress(f"not applied locally (no local controller): {', '.join(skipped)}")
        return created

    def upload_dataset(self, model: str, data: bytes, name: str) -> str:
        """Drop a dataset under incoming/<model>/ (as a user's `aws s3 cp` would); returns the key."""
        key = f"incoming/{model}/{name}"
        self.client("s3").put_object(Bucket=self.info.bucket, Key=key, Body=data)
        return key

    def service_url(self, namespace: str, service: str) -> str:
        return str(self.services.url(namespace, service))

    def set_alarm_state(self, alarm_name: str, state: str, reason: str) -> dict[str, Any]:
        """CloudWatch SetAlarmState plus the `CloudWatch Alarm State Change` event it causes on AWS
        (how people test alarm actions); the evaluator sets the real state at its next evaluation."""
        cw = self.client("cloudwatch")
        alarms = cw.describe_alarms(AlarmNames=[alarm_name])["MetricAlarms"]
        if not alarms:
            raise LocalCloudError(f"no alarm named {alarm_name!r}")
        alarm = alarms[0]
        cw.set_alarm_state(AlarmName=alarm_name, StateValue=state, StateReason=reason)
        now = datetime.now(UTC)
        previous = StateSnapshot(
            alarm.get("StateValue", "INSUFFICIENT_DATA"),
            alarm.get("StateReason", ""),
            alarm.get("StateUpdatedTimestamp") or now,
            alarm.get("StateReasonData"),
        )
        event = alarm_state_change_event(alarm, state=StateSnapshot(state, reason, now), previous=previous)
        self._emit_alarm_event(event)
        return event

    def tick(self) -> list[Any]:
        """Fire every schedule now (`modelops local tick`)."""
        return list(self.scheduler.tick())

    # --- wiring ------------------------------------------------------------------------------------
    _authorizer: Callable[[str, str, str, str | None, str | None], bool] | None = None

    def _authorize(
        self, user: str, verb: str, resource: str, namespace: str | None, name: str | None
    ) -> bool:
        authorizer = self._authorizer
        return bool(authorizer and authorizer(user, verb, resource, namespace, name))

    def _bootstrap(self) -> None:
        """What a user runs after `sam deploy`: `modelops bootstrap`, the same code (it uploads
        s3://<bucket>/source/serving_image.zip, builds the training image in the local CodeBuild and
        records it in /modelops/<stack>/training-image)."""
        from modelops.errors import BootstrapError

        from modelops_cli.bootstrap import run_bootstrap

        self.progress("bootstrapping: modelops bootstrap (the training image, built by the local CodeBuild)")
        try:
            run_bootstrap(
                self.info,
                source=self.settings.serving_image,
                progress=lambda line: self.progress(f"  {line.strip()}"),
                timeout_seconds=BOOTSTRAP_TIMEOUT_SECONDS,
                poll_seconds=0.2,
                clients=self.client,
            )
        except BootstrapError as exc:
            raise LocalCloudError(f"modelops bootstrap failed: {exc}") from None

    def image_rootfs(self, reference: str) -> Path:
        """The unpacked root folder of `repo@sha256:...` from the local registry (a pull)."""
        try:
            digest = resolve_image(self.layout_dir, reference)
        except Exception as exc:  # any reason a registry would refuse the pull
            raise LocalCloudError(f"pull {reference}: {exc}") from exc
        rootfs = self.state_dir / "images" / "rootfs" / digest.replace(":", "-")
        with self._image_lock:
            if not (rootfs / ".complete").exists():
                if rootfs.exists():
                    shutil.rmtree(rootfs)
                try:
                    oci.unpack_image(self.layout_dir, digest, rootfs)
                except (oci.OciError, FileNotFoundError) as exc:
                    raise LocalCloudError(f"pull {reference}: {exc}") from exc
                (rootfs / ".complete").touch()
        return rootfs

    def _pod_line(self, pod: Mapping[str, Any], line: str) -> None:
        if not line.startswith("{") or '"_aws"' not in line:
            return
        try:
            self._metric_queue.put(parse_emf_line(line))
        except EmfError as exc:
            log.warning("pod %s: EMF line dropped: %s", pod.get("name"), exc)

    def _flush_metrics(self) -> None:
        interval = self.settings.metrics_flush_seconds
        while not self._metric_stop.wait(interval):
            self._flush_metrics_once()
        self._flush_metrics_once()

    def _flush_metrics_once(self) -> None:
        datums: list[Any] = []
        with contextlib.suppress(queue.Empty):
            while True:
                datums.extend(self._metric_queue.get_nowait())
        if datums:
            try:
                put_datums(self.client("cloudwatch"), datums)
            except Exception:
                log.exception("putting %d metric datums failed", len(datums))

    def _emit_alarm_event(self, event: dict[str, Any]) -> None:
        self.alarm_changes.append({"time": time.time(), **event.get("detail", {})})
        self._emit_event(event)

    def _emit_event(self, event: dict[str, Any]) -> None:
        """Put an AWS service's event (source aws.*) on the default bus, as the service would."""
        self.client("events").put_events(
            Entries=[
                {
                    "Source": event["source"],
                    "DetailType": event["detail-type"],
                    "Detail": json.dumps(event["detail"]),
                    "Resources": event.get("resources", []),
                }
            ]
        )

    # --- SageMaker routing -------------------------------------------------------------------------
    def _training_update(self, name: str, state: TrainingJobState) -> None:
        self.training_updates.append((time.time(), name, state.status, state.secondary_status))

    def _create_training_job(self, request: dict[str, Any]) -> dict[str, Any]:
        if self._training_rewrites:
            request = self._training_rewrites.pop(0)(request)
        try:
            self.training.start(request)
        except TrainingJobExistsError as exc:
            raise RouteError("ResourceInUse", str(exc)) from None
        except TrainingRequestError as exc:
            raise RouteError("ValidationException", str(exc)) from None
        return {"TrainingJobArn": self.training.state(str(request["TrainingJobName"])).arn}

    def _describe_training_job(self, name: str) -> dict[str, Any]:
        try:
            return self.training.state(name).describe()
        except TrainingJobNotFoundError:
            raise RouteError("ValidationException", "Requested resource not found.") from None

    def _stop_training_job(self, name: str) -> None:
        try:
            self.training.stop(name)
        except TrainingJobNotFoundError:
            raise RouteError("ValidationException", "Requested resource not found.") from None
        except TrainingJobNotStoppableError as exc:
            raise RouteError("ValidationException", str(exc)) from None
