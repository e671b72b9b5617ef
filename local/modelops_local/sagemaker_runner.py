"""Local SageMaker training: run a CreateTrainingJob request with the serving image's `train` program.

The job follows SageMaker's container contract in a private `SAGEMAKER_BASE_DIR`
(input/config/{hyperparameters,inputdataconfig,resourceconfig}.json, input/data/<channel>/ from S3,
model/, output/) and SageMaker's status lifecycle:

    InProgress: Starting -> Downloading -> Training -> Uploading      then Completed
    Failed     (FailureReason "AlgorithmError: <output/failure>" or "ClientError: <input problem>")
    Stopping -> Stopped                                            (StopTrainingJob)
    Stopped / MaxRuntimeExceeded                                   (StoppingCondition.MaxRuntimeInSeconds)

On success model/ is uploaded as `<S3OutputPath>/<TrainingJobName>/output/model.tar.gz` (and a
non-empty output/data/ as output.tar.gz beside it), and FinalMetricDataList comes from the log by
the request's MetricDefinitions (or plain `name=value` lines when there are none).

Why a subprocess and not the sagemaker-training toolkit: SageMaker itself runs a bring-your-own
image's `train` program directly (`docker run <image> train`); the toolkit only matters inside
framework images that run a user script. Running `train` as a child process is therefore the
faithful stand-in, and it is what makes StopTrainingJob and MaxRuntimeInSeconds enforceable
(SIGTERM to the process group, SIGKILL after a grace period, as SageMaker does). The toolkit's own
path layout is used in the tests as an oracle for the contract paths.

Independent of moto: the caller passes a boto3 S3 client and receives every state change through
`on_update`.

A test-bench facility, `image_programs`: a map from a training image URI to the program that
stands for that image's `train` (e.g. `modelops_local.team_image`, a team's own image), imitating
`docker run <image> train` for an image the local runtime cannot pull. Any other image runs the
serving image's `train`, as before.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from modelops_local.forkserver import ForkedProcess, ForkServerError, shared_server

log = logging.getLogger(__name__)

TERMINAL = frozenset({"Completed", "Failed", "Stopped"})
_NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_CHANNEL_RE = re.compile(r"^[A-Za-z0-9.\-_]{1,64}$")
_PLAIN_METRIC_RE = re.compile(
    r"^\s*([A-Za-z0-9_.:/\-]{1,255})=([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$"
)
_ENV_PASSTHROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ", "SYSTEMROOT")
FAILURE_REASON_MAX = 1024
# What the serving image's `train` imports, the model libraries included (model_server/algorithms.py
# and artifact.py import them when a job asks for one): imported once, by the fork server.
_TRAIN_PRELOAD = (
    "model_server.train",
    "sklearn.compose",
    "sklearn.ensemble",
    "sklearn.impute",
    "sklearn.linear_model",
    "sklearn.pipeline",
    "sklearn.preprocessing",
    "joblib",
    "xgboost",
    "lightgbm",
)
_Process = subprocess.Popen[bytes] | ForkedProcess


class TrainingRunnerError(Exception):
    """Base of the runner's errors (the moto wiring maps them to SageMaker error codes)."""


class TrainingRequestError(TrainingRunnerError):
    """The CreateTrainingJob request is invalid or asks for something the runner cannot do (ValidationException)."""


class TrainingJobExistsError(TrainingRunnerError):
    """A job with this name was already started (ResourceInUse)."""


class TrainingJobNotFoundError(TrainingRunnerError):
    """No job with this name (ResourceNotFound)."""


class TrainingJobNotStoppableError(TrainingRunnerError):
    """StopTrainingJob on a job that already finished (ValidationException)."""


class TrainingWaitTimeoutError(TrainingRunnerError, TimeoutError):
    """wait() ran out of time before the job finished."""


class RunnerClosedError(TrainingRunnerError):
    """start() after shutdown()."""


@dataclass(frozen=True)
class TrainingJobState:
    """A snapshot of one job, shaped after DescribeTrainingJob's runtime fields."""

    name: str
    arn: str
    status: str  # InProgress | Completed | Failed | Stopping | Stopped
    secondary_status: str
    creation_time: datetime
    last_modified_time: datetime
    start_time: datetime | None = None
    end_time: datetime | None = None
    failure_reason: str | None = None
    final_metrics: tuple[dict[str, Any], ...] = ()  # {"MetricName", "Value", "Timestamp"}
    model_artifact: str | None = None  # s3://.../output/model.tar.gz once Completed
    transitions: tuple[dict[str, Any], ...] = ()  # SecondaryStatusTransitions
    log_path: Path | None = None
    exit_code: int | None = None

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    def describe(self) -> dict[str, Any]:
        """The DescribeTrainingJob fields this runner owns (the request's own fields are the caller's)."""
        doc: dict[str, Any] = {
            "TrainingJobName": self.name,
            "TrainingJobArn": self.arn,
            "TrainingJobStatus": self.status,
            "SecondaryStatus": self.secondary_status,
            "CreationTime": self.creation_time,
            "LastModifiedTime": self.last_modified_time,
            "SecondaryStatusTransitions": [dict(t) for t in self.transitions],
            "FinalMetricDataList": [dict(m) for m in self.final_metrics],
            "ModelArtifacts": {"S3ModelArtifacts": self.model_artifact or ""},
        }
        if self.failure_reason:
            doc["FailureReason"] = self.failure_reason
        if self.start_time:
            doc["TrainingStartTime"] = self.start_time
        if self.end_time:
            doc["TrainingEndTime"] = self.end_time
        if self.start_time and self.end_time:
            seconds = max(1, round((self.end_time - self.start_time).total_seconds()))
            doc["TrainingTimeInSeconds"] = doc["BillableTimeInSeconds"] = seconds
        return doc


@dataclass(frozen=True)
class Channel:
    name: str
    bucket: str
    prefix: str
    uri: str
    content_type: str | None
    config: dict[str, Any]  # this channel's entry of inputdataconfig.json


@dataclass(frozen=True)
class JobSpec:
    """A validated CreateTrainingJob request."""

    name: str
    role_arn: str
    hyperparameters: dict[str, str]
    channels: tuple[Channel, ...]
    output_bucket: str
    output_prefix: str
    instance_type: str
    max_runtime_seconds: int
    metric_definitions: tuple[tuple[str, re.Pattern[str]], ...]
    image: str = ""  # AlgorithmSpecification.TrainingImage


@dataclass
class _Job:
    spec: JobSpec
    state: TrainingJobState
    dir: Path
    stop_requested: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    process: _Process | None = None


class _JobEnded(Exception):
    """Internal: ends the worker with a final status."""

    def __init__(self, status: str, secondary: str, reason: str | None, message: str) -> None:
        super().__init__(reason or message)
        self.status, self.secondary, self.reason, self.message = status, secondary, reason, message


class TrainingRunner:
    """Runs training jobs as local processes; one thread per job."""

    def __init__(
        self,
        s3_client: Any,
        work_dir: Path,
        serving_image_dir: Path,
        on_update: Callable[[str, TrainingJobState], None],
        *,
        python: str = sys.executable,
        stop_grace_seconds: float = 5.0,
        env: Mapping[str, str] | None = None,
        image_programs: Mapping[str, Path] | None = None,
    ) -> None:
        self.s3 = s3_client
        self.work_dir = Path(work_dir)
        self.train_program = Path(serving_image_dir) / "bin" / "train"
        self.on_update = on_update
        self.python = python
        self.stop_grace_seconds = stop_grace_seconds
        self.extra_env = dict(env or {})
        # Test bench only: an image URI -> the program standing for its `train` (module docstring).
        self.image_programs = {image: Path(program) for image, program in (image_programs or {}).items()}
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()
        self._closed = False

    # --- API ---------------------------------------------------------------------------------
    def start(self, request: Mapping[str, Any]) -> None:
        """Validate `request` (CreateTrainingJob kwargs) and start the job in a thread; returns at once."""
        spec = parse_request(request)
        if not self.train_program.is_file():
            raise TrainingRequestError(f"no train program at {self.train_program}")
        now = _now()
        state = TrainingJobState(
            name=spec.name,
            arn=self._arn(spec),
            status="InProgress",
            secondary_status="Starting",
            creation_time=now,
            last_modified_time=now,
            transitions=(_transition("Starting", now, "Launching requested ML instances"),),
        )
        job = _Job(spec=spec, state=state, dir=self.work_dir / spec.name)
        with self._lock:
            if self._closed:
                raise RunnerClosedError("the training runner is shut down")
            if spec.name in self._jobs:
                raise TrainingJobExistsError(f"training job {spec.name} already exists")
            self._jobs[spec.name] = job
            job.thread = threading.Thread(
                target=self._run, args=(job,), name=f"training-{spec.name}", daemon=True
            )
        self._notify(job.spec.name, state)
        job.thread.start()

    def stop(self, name: str) -> None:
        """StopTrainingJob: Stopping now, Stopped once the process is gone."""
        job = self._job(name)
        with self._lock:
            status = job.state.status
            if status in TERMINAL:
                raise TrainingJobNotStoppableError(
                    f"training job {name} is {status}; only an InProgress job can be stopped"
                )
            if status == "Stopping":
                return
            job.stop_requested.set()
        self._update(job, status="Stopping", secondary="Stopping", message="Stopping the training job")

    def state(self, name: str) -> TrainingJobState:
        with self._lock:
            return self._job_locked(name).state

    def wait(self, name: str, timeout: float) -> TrainingJobState:
        """Block until the job is Completed, Failed or Stopped; TrainingWaitTimeoutError after `timeout` s."""
        job = self._job(name)
        if not job.done.wait(timeout):
            raise TrainingWaitTimeoutError(
                f"training job {name} still {job.state.status}/{job.state.secondary_status} after {timeout}s"
            )
        return self.state(name)

    def shutdown(self, timeout: float) -> None:
        """Stop every running job and wait for their threads, `timeout` seconds in total."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._closed = True
            jobs = list(self._jobs.values())
        for job in jobs:
            if not job.done.is_set():
                job.stop_requested.set()
        for job in jobs:
            if job.thread is not None:
                job.thread.join(max(0.0, deadline - time.monotonic()))
            if job.process is not None and job.process.poll() is None:
                _kill_group(job.process, signal.SIGKILL)

    # --- worker ------------------------------------------------------------------------------
    def _run(self, job: _Job) -> None:
        spec = job.spec
        try:
            base = self._prepare(job)
            self._check_stop(job)
            started = _now()
            deadline = time.monotonic() + spec.max_runtime_seconds
            self._update(job, secondary="Downloading", message="Downloading input data", start_time=started)
            for channel in spec.channels:
                self._download(job, channel, base / "input" / "data" / channel.name, deadline)
            self._update(job, secondary="Training", message="Training in progress")
            code = self._train(job, base, deadline)
            metrics = parse_metrics(job.dir / "train.log", spec.metric_definitions)
            if code != 0:
                raise _JobEnded(
                    "Failed",
                    "Failed",
                    _algorithm_failure(base, code, job.dir / "train.log"),
                    "Training job failed",
                )
            self._update(
                job,
                secondary="Uploading",
                message="Uploading generated training model",
                final_metrics=metrics,
            )
            artifact = self._upload(job, base)
            self._update(
                job,
                status="Completed",
                secondary="Completed",
                message="Training job completed",
                end_time=_now(),
                model_artifact=artifact,
                final_metrics=metrics,
            )
        except _JobEnded as ended:
            self._update(
                job,
                status=ended.status,
                secondary=ended.secondary,
                message=ended.message,
                end_time=_now(),
                failure_reason=ended.reason[:FAILURE_REASON_MAX] if ended.reason else None,
            )
        except Exception as exc:  # the job must end in a terminal state whatever happens
            log.exception("training job %s: runner error", spec.name)
            self._update(
                job,
                status="Failed",
                secondary="Failed",
                message="Training job failed",
                end_time=_now(),
                failure_reason=f"InternalServerError: {type(exc).__name__}: {exc}"[:FAILURE_REASON_MAX],
            )
        finally:
            job.done.set()

    def _prepare(self, job: _Job) -> Path:
        if job.dir.exists():
            shutil.rmtree(job.dir)
        base = job.dir / "ml"
        config_dir = base / "input" / "config"
        for folder in (config_dir, base / "input" / "data", base / "model", base / "output" / "data"):
            folder.mkdir(parents=True, exist_ok=True)
        spec = job.spec
        _write_json(config_dir / "hyperparameters.json", spec.hyperparameters)
        _write_json(config_dir / "inputdataconfig.json", {c.name: c.config for c in spec.channels})
        _write_json(
            config_dir / "resourceconfig.json",
            {
                "current_host": "algo-1",
                "current_instance_type": spec.instance_type,
                "current_group_name": "homogeneousCluster",
                "hosts": ["algo-1"],
                "instance_groups": [
                    {
                        "instance_group_name": "homogeneousCluster",
                        "instance_type": spec.instance_type,
                        "hosts": ["algo-1"],
                    }
                ],
                "network_interface_name": "eth0",
            },
        )
        return base

    def _download(self, job: _Job, channel: Channel, dest: Path, deadline: float) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        root = dest.resolve()
        keys = self._list_keys(job, channel)
        folder = channel.prefix.rpartition("/")[0]
        for key in keys:
            self._check_stop(job)
            if time.monotonic() > deadline:
                raise self._timeout(job)
            rel = key[len(folder) + 1 :] if folder else key
            parts = PurePosixPath(rel).parts
            target = (root.joinpath(*parts)).resolve() if parts else root
            if not parts or ".." in parts or not target.is_relative_to(root) or target == root:
                raise _JobEnded(
                    "Failed",
                    "Failed",
                    f"ClientError: S3 key {key!r} of channel {channel.name} is not a safe file name",
                    "Training job failed",
                )
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                self.s3.download_file(channel.bucket, key, str(target))
            except Exception as exc:
                raise _JobEnded(
                    "Failed",
                    "Failed",
                    f"ClientError: Data download failed: s3://{channel.bucket}/{key} (channel {channel.name}): {exc}",
                    "Training job failed",
                ) from None

    def _list_keys(self, job: _Job, channel: Channel) -> list[str]:
        keys: list[str] = []
        try:
            paginator = self.s3.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=channel.bucket, Prefix=channel.prefix):
                keys += [o["Key"] for o in page.get("Contents", []) if not o["Key"].endswith("/")]
        except Exception as exc:
            raise _JobEnded(
                "Failed",
                "Failed",
                f"ClientError: cannot list {channel.uri} for channel {channel.name}: {exc}",
                "Training job failed",
            ) from None
        if not keys:
            raise _JobEnded(
                "Failed",
                "Failed",
                f'ClientError: No S3 objects found under S3 URL "{channel.uri}" given in input data source '
                f"(channel {channel.name}). Ensure that objects exist under that prefix and that the role "
                f'"{job.spec.role_arn}" may list bucket "{channel.bucket}".',
                "Training job failed",
            )
        return sorted(keys)

    def _train(self, job: _Job, base: Path, deadline: float) -> int:
        shared = job_environment(self.extra_env)
        env = {
            **shared,
            "SAGEMAKER_BASE_DIR": str(base),
            "TRAINING_JOB_NAME": job.spec.name,
            "TRAINING_JOB_ARN": job.state.arn,
        }
        log_path = job.dir / "train.log"
        with self._lock:
            job.state = replace(job.state, log_path=log_path)
        self._check_stop(job)
        program = self.image_programs.get(job.spec.image, self.train_program)
        process = self._start(job, program, env, shared, log_path)
        job.process = process
        while True:  # bounded: the deadline (MaxRuntimeInSeconds) ends it at the latest
            try:
                code = process.wait(timeout=0.05)
                break
            except subprocess.TimeoutExpired:
                pass
            if job.stop_requested.is_set():
                self._terminate(process)
                raise _JobEnded("Stopped", "Stopped", None, "Training job stopped")
            if time.monotonic() >= deadline:
                self._terminate(process)
                raise self._timeout(job)
        with self._lock:
            job.state = replace(job.state, exit_code=code)
        return code

    def _start(
        self, job: _Job, program: Path, env: dict[str, str], shared: dict[str, str], log_path: Path
    ) -> _Process:
        if program == self.train_program:
            return start_train(self.python, program, cwd=job.dir, env=env, shared=shared, log_path=log_path)
        return _start_fresh(self.python, program, cwd=job.dir, env=env, log_path=log_path)

    def _terminate(self, process: _Process) -> None:
        """SIGTERM the process group, SIGKILL after the grace period (SageMaker gives 120 s)."""
        _kill_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=self.stop_grace_seconds)
        except subprocess.TimeoutExpired:
            _kill_group(process, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)

    def _upload(self, job: _Job, base: Path) -> str:
        spec = job.spec
        prefix = f"{spec.output_prefix}/{spec.name}/output" if spec.output_prefix else f"{spec.name}/output"
        model_key = f"{prefix}/model.tar.gz"
        archive = job.dir / "model.tar.gz"
        _tar_folder(base / "model", archive)
        self.s3.upload_file(str(archive), spec.output_bucket, model_key)
        output_data = base / "output" / "data"
        if any(output_data.iterdir()):
            output_archive = job.dir / "output.tar.gz"
            _tar_folder(output_data, output_archive)
            self.s3.upload_file(str(output_archive), spec.output_bucket, f"{prefix}/output.tar.gz")
        return f"s3://{spec.output_bucket}/{model_key}"

    def _check_stop(self, job: _Job) -> None:
        if job.stop_requested.is_set():
            raise _JobEnded("Stopped", "Stopped", None, "Training job stopped")

    def _timeout(self, job: _Job) -> _JobEnded:
        seconds = job.spec.max_runtime_seconds
        return _JobEnded(
            "Stopped",
            "MaxRuntimeExceeded",
            f"TrainingJobTimeout: training job {job.spec.name} exceeded MaxRuntimeInSeconds={seconds} and was stopped",
            f"Training job stopped: it exceeded MaxRuntimeInSeconds={seconds}",
        )

    # --- state -------------------------------------------------------------------------------
    def _update(
        self,
        job: _Job,
        *,
        status: str | None = None,
        secondary: str | None = None,
        message: str = "",
        **fields: Any,
    ) -> None:
        now = _now()
        with self._lock:
            old = job.state
            if old.status in TERMINAL:
                return  # final: a late stop() must not reopen a finished job
            if old.status == "Stopping" and status not in TERMINAL:
                status, secondary = None, None  # stopping wins over the worker's progress
            transitions = list(old.transitions)
            if secondary and secondary != old.secondary_status:
                if transitions:
                    transitions[-1] = {**transitions[-1], "EndTime": now}
                transitions.append(_transition(secondary, now, message))
            if status in TERMINAL and transitions:
                transitions[-1] = {**transitions[-1], "EndTime": now}
            if "final_metrics" in fields:
                fields["final_metrics"] = tuple(fields["final_metrics"])
            job.state = replace(
                old,
                status=status or old.status,
                secondary_status=secondary or old.secondary_status,
                last_modified_time=now,
                transitions=tuple(transitions),
                **fields,
            )
            state = job.state
        self._notify(job.spec.name, state)

    def _notify(self, name: str, state: TrainingJobState) -> None:
        try:
            self.on_update(name, state)
        except Exception:  # a broken listener must not wedge the job
            log.exception("training job %s: on_update callback failed", name)

    def _job(self, name: str) -> _Job:
        with self._lock:
            return self._job_locked(name)

    def _job_locked(self, name: str) -> _Job:
        try:
            return self._jobs[name]
        except KeyError:
            raise TrainingJobNotFoundError(f"training job {name} not found") from None

    def _arn(self, spec: JobSpec) -> str:
        region = getattr(getattr(self.s3, "meta", None), "region_name", None) or "us-east-1"
        parts = spec.role_arn.split(":")
        account = parts[4] if len(parts) > 4 and parts[4] else "000000000000"
        return f"arn:aws:sagemaker:{region}:{account}:training-job/{spec.name.lower()}"


# --- request parsing -----------------------------------------------------------------------------
def parse_request(request: Mapping[str, Any]) -> JobSpec:
    """Check a CreateTrainingJob request; TrainingRequestError names the bad field."""
    name = request.get("TrainingJobName")
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise TrainingRequestError(
            f"TrainingJobName {name!r} must be 1-63 characters of letters, digits and single hyphens"
        )
    algorithm = request.get("AlgorithmSpecification") or {}
    mode = algorithm.get("TrainingInputMode", "File")
    if mode != "File":
        raise TrainingRequestError(
            f"AlgorithmSpecification.TrainingInputMode {mode!r}: only File mode runs locally"
        )
    role = request.get("RoleArn")
    if not isinstance(role, str) or not role.startswith("arn:"):
        raise TrainingRequestError(f"RoleArn {role!r} is required and must be an ARN")
    hyper = request.get("HyperParameters") or {}
    if not isinstance(hyper, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in hyper.items()
    ):
        raise TrainingRequestError(
            "HyperParameters must map strings to strings (SageMaker passes every value as text)"
        )
    if len(hyper) > 100:
        raise TrainingRequestError(f"HyperParameters has {len(hyper)} entries; at most 100 are allowed")
    output = (request.get("OutputDataConfig") or {}).get("S3OutputPath")
    out_bucket, out_prefix = _split_s3(output, "OutputDataConfig.S3OutputPath")
    resources = request.get("ResourceConfig") or {}
    if int(resources.get("InstanceCount", 1)) != 1:
        raise TrainingRequestError(
            f"ResourceConfig.InstanceCount={resources.get('InstanceCount')}: only single-instance training runs locally"
        )
    stopping = request.get("StoppingCondition") or {}
    runtime = stopping.get("MaxRuntimeInSeconds")
    if not isinstance(runtime, int) or isinstance(runtime, bool) or runtime < 1:
        raise TrainingRequestError(
            f"StoppingCondition.MaxRuntimeInSeconds={runtime!r} must be an integer >= 1"
        )
    max_wait = stopping.get("MaxWaitTimeInSeconds")
    if max_wait is not None:
        if not request.get("EnableManagedSpotTraining"):
            raise TrainingRequestError(
                "StoppingCondition.MaxWaitTimeInSeconds requires EnableManagedSpotTraining"
            )
        if not isinstance(max_wait, int) or max_wait < runtime:
            raise TrainingRequestError(
                f"StoppingCondition.MaxWaitTimeInSeconds={max_wait!r} must be >= MaxRuntimeInSeconds={runtime}"
            )
    return JobSpec(
        name=name,
        role_arn=role,
        hyperparameters=dict(hyper),
        channels=_channels(request.get("InputDataConfig") or []),
        output_bucket=out_bucket,
        output_prefix=out_prefix.strip("/"),
        instance_type=str(resources.get("InstanceType", "ml.m5.large")),
        max_runtime_seconds=runtime,
        metric_definitions=_metric_definitions(algorithm.get("MetricDefinitions") or []),
        image=str(algorithm.get("TrainingImage") or ""),
    )


def _channels(raw: Any) -> tuple[Channel, ...]:
    if not isinstance(raw, list):
        raise TrainingRequestError("InputDataConfig must be a list of channels")
    channels, seen = [], set()
    for i, item in enumerate(raw):
        where = f"InputDataConfig[{i}]"
        name = item.get("ChannelName") if isinstance(item, dict) else None
        if not isinstance(name, str) or not _CHANNEL_RE.fullmatch(name):
            raise TrainingRequestError(f"{where}.ChannelName {name!r} is invalid")
        if name in seen:
            raise TrainingRequestError(f"{where}: channel {name!r} is listed twice")
        seen.add(name)
        source = (item.get("DataSource") or {}).get("S3DataSource")
        if not isinstance(source, dict):
            raise TrainingRequestError(
                f"{where}.DataSource.S3DataSource is required (only S3 channels run locally)"
            )
        data_type = source.get("S3DataType", "S3Prefix")
        if data_type != "S3Prefix":
            raise TrainingRequestError(
                f"{where}.DataSource.S3DataSource.S3DataType {data_type!r}: only S3Prefix runs locally"
            )
        uri = source.get("S3Uri")
        bucket, prefix = _split_s3(uri, f"{where}.DataSource.S3DataSource.S3Uri")
        config = {
            "TrainingInputMode": item.get("InputMode", "File"),
            "S3DistributionType": source.get("S3DistributionType", "FullyReplicated"),
            "RecordWrapperType": item.get("RecordWrapperType", "None"),
        }
        if item.get("ContentType"):
            config["ContentType"] = item["ContentType"]
        channels.append(Channel(name, bucket, prefix, str(uri), item.get("ContentType"), config))
    return tuple(channels)


def _metric_definitions(raw: Any) -> tuple[tuple[str, re.Pattern[str]], ...]:
    definitions = []
    for i, item in enumerate(raw):
        try:
            definitions.append((str(item["Name"]), re.compile(str(item["Regex"]))))
        except (KeyError, TypeError):
            raise TrainingRequestError(
                f"AlgorithmSpecification.MetricDefinitions[{i}] needs Name and Regex"
            ) from None
        except re.error as exc:
            raise TrainingRequestError(
                f"AlgorithmSpecification.MetricDefinitions[{i}].Regex is invalid: {exc}"
            ) from None
    return tuple(definitions)


def _split_s3(uri: Any, field_name: str) -> tuple[str, str]:
    if not isinstance(uri, str) or not uri.startswith("s3://") or not uri[5:].split("/", 1)[0]:
        raise TrainingRequestError(f"{field_name} {uri!r} must be an s3://bucket/key URI")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


# --- the train program ---------------------------------------------------------------------------
def job_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment every job shares (a job adds SAGEMAKER_BASE_DIR and its name and ARN)."""
    env = {k: os.environ[k] for k in _ENV_PASSTHROUGH if k in os.environ}
    env.update(
        {
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            **(extra or {}),
        }
    )
    return env


def start_train(
    python: str,
    program: Path,
    *,
    cwd: Path,
    env: Mapping[str, str],
    shared: Mapping[str, str],
    log_path: Path,
) -> _Process:
    """Start the serving image's `train` (`program`) for one job, its output in `log_path`.

    It forks from a server that has imported its libraries (forkserver.py: the same program,
    session, log, environment and exit code as a fresh interpreter, without 1.4 s of imports per
    job; one server per `shared` environment in this process); when the server cannot serve, the
    job starts as a fresh interpreter."""
    preload = _TRAIN_PRELOAD if (program.parent.parent / "model_server" / "train.py").is_file() else ()
    try:
        server = shared_server(python, preload=preload, path=[str(program.parent.parent)], env=shared)
        return server.spawn(program, cwd=cwd, env=env, log_path=log_path)
    except ForkServerError as exc:
        log.warning("%s starts as a fresh interpreter: %s", log_path.parent.name, exc)
    return _start_fresh(python, program, cwd=cwd, env=env, log_path=log_path)


def _start_fresh(
    python: str, program: Path, *, cwd: Path, env: Mapping[str, str], log_path: Path
) -> _Process:
    with log_path.open("wb") as log_file:
        return subprocess.Popen(
            [python, str(program)],
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop/timeout kill the whole tree
        )


# --- helpers -------------------------------------------------------------------------------------
def parse_metrics(
    log_path: Path, definitions: tuple[tuple[str, re.Pattern[str]], ...]
) -> list[dict[str, Any]]:
    """FinalMetricDataList from a job log: the last value each definition's regex captured; without
    definitions, the last value of every `name=value` line."""
    try:
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return []
    values: dict[str, float] = {}
    for line in lines:
        if definitions:
            for name, pattern in definitions:
                match = pattern.search(line)
                if match:
                    with contextlib.suppress(ValueError, IndexError):
                        values[name] = float(match.group(1))
        else:
            match = _PLAIN_METRIC_RE.match(line)
            if match:
                values[match.group(1)] = float(match.group(2))
    now = _now()
    return [{"MetricName": name, "Value": value, "Timestamp": now} for name, value in values.items()]


def _algorithm_failure(base: Path, code: int, log_path: Path) -> str:
    failure = base / "output" / "failure"
    if failure.is_file():
        text = " ".join(failure.read_text(encoding="utf-8", errors="replace").split())
        if text:
            return f"AlgorithmError: {text}"
    tail = ""
    with contextlib.suppress(OSError):
        lines = [
            ln for ln in log_path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()
        ]
        tail = lines[-1] if lines else ""
    return f"AlgorithmError: train exited with code {code}" + (f"; last log line: {tail}" if tail else "")


def _tar_folder(folder: Path, archive: Path) -> None:
    """Tar+gzip the folder's contents with paths relative to it (as SageMaker packs model/)."""
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            tar.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False)


def _kill_group(process: _Process, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def _transition(status: str, at: datetime, message: str) -> dict[str, Any]:
    return {"Status": status, "StartTime": at, "StatusMessage": message}


def _write_json(path: Path, doc: Any) -> None:
    path.write_text(json.dumps(doc, indent=2, sort_keys=True), encoding="utf-8")


def _now() -> datetime:
    return datetime.now(UTC)
