"""The per-model configuration document: one validated file per model (JSON or YAML).

One deployed stack serves many models; `modelops model put FILE` validates a document of this
shape, stores it, and creates that model's alarms and schedule. Every function reads the stored
document through :func:`ModelConfig.model_validate`, so a field is checked in exactly one place.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from modelops.errors import ConfigError

# Kubernetes DNS-1123 label: what a Deployment, Service or namespace name may be.
_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
_MODEL_NAME = r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$"
# What a pattern means, for the error message (a regular expression helps nobody fix a file).
_PATTERN_HINTS = {
    _DNS_LABEL: "should be a Kubernetes name: lowercase letters, digits and '-', at most 63, "
    "starting and ending with a letter or digit",
    _MODEL_NAME: "should be a model name: lowercase letters, digits and '-', at most 40, "
    "starting and ending with a letter or digit",
}
ModelName = Annotated[str, Field(pattern=_MODEL_NAME)]
K8sName = Annotated[str, Field(pattern=_DNS_LABEL)]
Task = Literal["binary_classification", "multiclass_classification", "regression"]
# The metrics the trainer computes per task, the first being the default objective (the serving
# image's model_server.hyperparameters.TASK_METRICS; a unit test keeps the two equal).
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "binary_classification": ("auc", "accuracy", "f1", "precision", "recall", "logloss"),
    "multiclass_classification": ("accuracy", "macro_f1", "logloss"),
    "regression": ("rmse", "mae", "r2"),
}
# Higher is better for these; lower is better for everything else we know.
_MAXIMIZE = {"auc", "accuracy", "f1", "macro_f1", "r2", "precision", "recall"}
_KNOWN_METRICS = {metric for metrics in TASK_METRICS.values() for metric in metrics}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSchema(_Strict):
    """The dataset's columns. CSV with a header row; every feature column numeric unless it is
    listed in `categorical_columns` (text categories such as `plan: basic|plus|premium`)."""

    label_column: str = Field(min_length=1)
    feature_columns: list[str] = Field(min_length=1)
    categorical_columns: list[str] = Field(default_factory=list)
    min_rows: int = Field(default=100, ge=10)
    max_bytes: int = Field(default=512 * 1024 * 1024, ge=1)

    @model_validator(mode="after")
    def _label_not_a_feature(self) -> DataSchema:
        if self.label_column in self.feature_columns:
            raise ValueError(f"label_column {self.label_column!r} must not also be a feature column")
        if len(set(self.feature_columns)) != len(self.feature_columns):
            raise ValueError("feature_columns has duplicates")
        unknown = [c for c in self.categorical_columns if c not in self.feature_columns]
        if unknown:
            raise ValueError(
                f"categorical_columns {unknown} are not among feature_columns {self.feature_columns}"
            )
        if len(set(self.categorical_columns)) != len(self.categorical_columns):
            dupes = sorted({c for c in self.categorical_columns if self.categorical_columns.count(c) > 1})
            raise ValueError(f"categorical_columns lists {dupes} more than once")
        return self


class DataConfig(_Strict):
    # Objects under incoming/<model>/ trigger a run; the prefix is fixed by the model name so an
    # S3 event can always be mapped back to exactly one model.
    schema_: DataSchema = Field(alias="schema")
    task: Task = "binary_classification"

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Objective(_Strict):
    # Absent from the document: the task's default (ModelConfig fills it in: auc, accuracy, rmse).
    metric: str = "auc"
    # Candidate must beat the champion by at least this much (in the metric's own units).
    min_improvement: float = Field(default=0.0, ge=0.0)

    @field_validator("metric")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in _KNOWN_METRICS:
            raise ValueError(f"unknown metric {value!r}; expected one of {sorted(_KNOWN_METRICS)}")
        return value

    @property
    def maximize(self) -> bool:
        return self.metric in _MAXIMIZE


_S3_CODE_URI = re.compile(r"^s3://([a-z0-9][a-z0-9.\-]{0,62})/(\S+\.tar\.gz)$")
_PLAIN_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


class TrainingScript(_Strict):
    """Script mode: the team's own training script, run by the serving image's `train` (its
    harness: same data split and evaluation as a built-in algorithm; README, "Script mode")."""

    # The script to run, relative to the code folder (SageMaker's `entry_point`).
    entry_point: str = Field(min_length=1, max_length=256)
    # The code: an s3://.../*.tar.gz, or a local folder that `modelops model put` packs and uploads
    # to s3://<stack bucket>/code/<model>/<sha256>.tar.gz (the stored config holds that URI).
    source: str = Field(min_length=1, max_length=1024)

    @field_validator("entry_point")
    @classmethod
    def _plain_relative_py(cls, value: str) -> str:
        # The serving image's hyperparameters.entry_point_problem applies the same rule.
        parts = value.split("/")
        if value.startswith("/") or "\\" in value or any(p in ("", ".", "..") for p in parts):
            raise ValueError(
                f"{value!r} must be a plain relative path inside the code folder (no leading '/', '.', '..' or '\\')"
            )
        if not value.endswith(".py") or not all(_PLAIN_PART.match(p) for p in parts):
            raise ValueError(
                f"{value!r} must name a .py file with letters, digits, '_', '-' and '.' only "
                "(e.g. train.py or src/train.py)"
            )
        return value

    @field_validator("source")
    @classmethod
    def _s3_tarball_or_folder(cls, value: str) -> str:
        if value.startswith("s3://") and not _S3_CODE_URI.match(value):
            raise ValueError(f"{value!r} must be s3://<bucket>/<key>.tar.gz (or a local folder)")
        if "://" in value and not value.startswith("s3://"):
            raise ValueError(f"{value!r} must be an s3:// URI of a .tar.gz or a local folder")
        return value

    @property
    def is_s3(self) -> bool:
        return self.source.startswith("s3://")


class TrainingConfig(_Strict):
    # Empty means the stack's image: its TrainingImage parameter, else the one `modelops bootstrap`
    # built from serving_image/ (the `runtime` target, whose `train` entrypoint SageMaker runs).
    image: str = ""
    instance_type: str = Field(default="ml.m5.large", pattern=r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
    instance_count: int = Field(default=1, ge=1, le=1)
    volume_size_gb: int = Field(default=10, ge=1, le=512)
    managed_spot: bool = False
    max_runtime_seconds: int = Field(default=3600, ge=60, le=5 * 24 * 3600)
    # Only with managed spot: how long to wait for capacity in addition to the runtime.
    max_wait_seconds: int | None = Field(default=None, ge=60)
    # The built-in trainer's algorithm (the serving image's model_server/algorithms.py, which checks
    # `hyperparameters` against the algorithm's table when the job runs). A unit test keeps this
    # list and the image's the same; the layer does not import the image's code.
    algorithm: Literal["hist_gradient_boosting", "random_forest", "linear", "xgboost", "lightgbm"] = (
        "hist_gradient_boosting"
    )
    hyperparameters: dict[str, str | int | float | bool] = Field(default_factory=dict)
    objective: Objective = Field(default_factory=Objective)
    # Script mode: the team's script trains the model instead of `algorithm` (which must stay the
    # default); `hyperparameters` go to the script. With `image` too, that image must run the
    # serving image's `train` (e.g. an image built FROM it with more libraries).
    script: TrainingScript | None = None

    @field_validator("hyperparameters")
    @classmethod
    def _no_algorithm(cls, value: dict[str, str | int | float | bool]) -> dict[str, str | int | float | bool]:
        if "algorithm" in value:
            raise ValueError("set training.algorithm, not training.hyperparameters.algorithm")
        # modelops_* switch the training program itself (modelops_judge: the judge job's mode).
        ours = sorted(k for k in value if k.lower().startswith("modelops_"))
        if ours:
            raise ValueError(
                f"hyperparameters {ours}: the prefix modelops_ is reserved for the workflow's own"
            )
        return value

    @model_validator(mode="after")
    def _script_or_algorithm(self) -> TrainingConfig:
        if self.script is not None and self.algorithm != "hist_gradient_boosting":
            raise ValueError(
                f"training.script and training.algorithm {self.algorithm!r} exclude each other: "
                "the script chooses the model; remove one of them"
            )
        reserved = sorted({"entry_point", "script_timeout_seconds"} & set(self.hyperparameters))
        if "entry_point" in reserved:
            raise ValueError("set training.script.entry_point, not training.hyperparameters.entry_point")
        if reserved and self.script is None:
            raise ValueError(f"training.hyperparameters {reserved} apply to training.script only")
        return self

    @model_validator(mode="after")
    def _spot_wait(self) -> TrainingConfig:
        if self.max_wait_seconds is not None:
            if not self.managed_spot:
                raise ValueError("max_wait_seconds is only valid with managed_spot: true")
            if self.max_wait_seconds < self.max_runtime_seconds:
                raise ValueError("max_wait_seconds must be >= max_runtime_seconds")
        return self


class KubernetesConfig(_Strict):
    namespace: K8sName = "models"
    stable_deployment: K8sName
    canary_deployment: K8sName
    container: K8sName = "model"
    service: K8sName
    # A Service selecting only the canary pods; smoke tests go through its API-server proxy.
    canary_service: K8sName
    port: int = Field(default=8080, ge=1, le=65535)
    # Replicas given to a stable Deployment that has none yet (a model's first version). After
    # that the stable's replica count is left alone (an HPA may own it).
    initial_replicas: int = Field(default=2, ge=1, le=100)
    # Weighted routers (canary.router gateway_api / alb): a Service selecting only the stable pods,
    # the backend the router weighs against canary_service.
    stable_service: K8sName | None = None
    # canary.router gateway_api: the HTTPRoute whose rule holds the stable and canary backendRefs.
    http_route: K8sName | None = None
    # canary.router alb: the Ingress, and the name of its `alb.ingress.kubernetes.io/actions.<name>`
    # forward action whose target groups are the stable and canary Services.
    ingress: K8sName | None = None
    ingress_action: K8sName | None = None

    @model_validator(mode="after")
    def _distinct(self) -> KubernetesConfig:
        if self.stable_deployment == self.canary_deployment:
            raise ValueError("stable_deployment and canary_deployment must differ")
        if self.stable_service is not None and self.stable_service == self.canary_service:
            raise ValueError("stable_service and canary_service must differ")
        return self


class LinearShift(_Strict):
    """CodeDeploy's linear shifting: `percent` more of the traffic every `interval_seconds` (each
    step's bake), up to the last step below 100: {percent: 10, interval_seconds: 60} is the steps
    10, 20, ..., 90, each baked 60 s."""

    percent: int = Field(ge=1, le=50)
    interval_seconds: int = Field(ge=1, le=24 * 3600)


Router = Literal["replicas", "gateway_api", "alb"]
WEIGHTED_ROUTERS = ("gateway_api", "alb")


class CanaryConfig(_Strict):
    # How traffic reaches the canary (README, "Traffic routers and steps"): `replicas` (its share of
    # ready pods behind the model's Service), `gateway_api` (an HTTPRoute's backendRef weights) or
    # `alb` (an Ingress's weighted target groups, AWS Load Balancer Controller).
    router: Router = "replicas"
    # The traffic steps, percent of traffic to the canary, each baked and analysed: `steps`
    # (strictly increasing, each below 100) or `linear` (CodeDeploy-style), not both. Neither: one
    # step, the canary's share of pods (replicas) as before.
    steps: list[int] | None = Field(default=None, min_length=1, max_length=20)
    linear: LinearShift | None = None
    # The canary's pods: at most one of replicas / percent (of the stable Deployment's replicas,
    # at least 1). With the replicas router and no steps exactly one is needed; with steps the
    # replicas router derives the pods per step, and a weighted router without either sizes the
    # canary for its largest step (ceil(stable replicas x last step / 100), at least 1).
    replicas: int | None = Field(default=None, ge=1, le=100)
    percent: int | None = Field(default=None, ge=1, le=50)
    bake_seconds: int = Field(default=300, ge=1, le=24 * 3600)
    watch_seconds: int = Field(default=600, ge=1, le=24 * 3600)
    ready_timeout_seconds: int = Field(default=600, ge=10, le=3600)
    smoke_sample_size: int = Field(default=20, ge=1, le=1000)
    # Analysis thresholds (canary versus stable over the bake window).
    min_requests: int = Field(default=50, ge=0)
    max_error_rate: float = Field(default=0.02, ge=0.0, le=1.0)
    max_error_rate_increase: float = Field(default=0.01, ge=0.0, le=1.0)
    max_latency_p99_ms: float = Field(default=500.0, gt=0)
    max_latency_ratio: float = Field(default=1.5, ge=1.0)
    # The ratio counts only when the canary's p99 is also this much above stable's: at a 2 ms
    # stable p99, one slow scheduling slice on a fresh pod makes 3x, and that is not a regression.
    min_latency_increase_ms: float = Field(default=20.0, ge=0)

    @field_validator("steps")
    @classmethod
    def _increasing(cls, steps: list[int] | None) -> list[int] | None:
        if steps is None:
            return None
        bad = [p for p in steps if not 1 <= p <= 99]
        if bad:
            raise ValueError(f"steps {bad} out of range: each step is a percent of traffic from 1 to 99")
        for before, after in itertools.pairwise(steps):
            if after <= before:
                raise ValueError(f"steps {steps} must be strictly increasing ({after} follows {before})")
        return steps

    @model_validator(mode="after")
    def _one_size(self) -> CanaryConfig:
        if self.steps is not None and self.linear is not None:
            raise ValueError("set canary.steps or canary.linear, not both")
        if self.replicas is not None and self.percent is not None:
            raise ValueError("set exactly one of canary.replicas or canary.percent")
        stepped = self.steps is not None or self.linear is not None
        if self.router == "replicas":
            if stepped and (self.replicas is not None or self.percent is not None):
                raise ValueError(
                    "with canary.router replicas the steps decide the canary's pods per step; "
                    "remove canary.replicas / canary.percent (or drop the steps)"
                )
            if not stepped and self.replicas is None and self.percent is None:
                raise ValueError("set exactly one of canary.replicas or canary.percent")
        elif not stepped:
            raise ValueError(
                f"canary.router {self.router} sets traffic weights: give them as canary.steps "
                "(e.g. [10, 25, 50]) or canary.linear"
            )
        return self

    @property
    def traffic_steps(self) -> list[int]:
        """The canary's traffic percent per step; [] for one step sized by replicas/percent."""
        if self.steps is not None:
            return list(self.steps)
        if self.linear is not None:
            return list(range(self.linear.percent, 100, self.linear.percent))
        return []

    @property
    def step_bake_seconds(self) -> int:
        """How long each step bakes: linear's interval, else bake_seconds."""
        return self.linear.interval_seconds if self.linear is not None else self.bake_seconds

    def canary_replicas(self, stable_replicas: int) -> int:
        """Replicas for the canary Deployment given the stable Deployment's replica count (for the
        replicas router with steps, see modelops.routers.replicas_for_share)."""
        if self.replicas is not None:
            return self.replicas
        if self.percent is not None:
            return max(1, (stable_replicas * self.percent + 99) // 100)
        steps = self.traffic_steps
        largest = steps[-1] if steps else 100
        return max(1, (stable_replicas * largest + 99) // 100)


class AlarmConfig(_Strict):
    """Thresholds for the alarms `modelops model put` creates per model and variant."""

    period_seconds: Literal[10, 20, 30, 60, 120, 300] = 60
    evaluation_periods: int = Field(default=3, ge=1, le=100)
    datapoints_to_alarm: int = Field(default=2, ge=1, le=100)
    error_rate_threshold: float = Field(default=0.05, gt=0.0, le=1.0)
    latency_p99_ms_threshold: float = Field(default=1000.0, gt=0)
    # Requests below this in a period make the error-rate datapoint missing, not 0/0.
    min_requests_per_period: int = Field(default=5, ge=1)

    @model_validator(mode="after")
    def _m_of_n(self) -> AlarmConfig:
        if self.datapoints_to_alarm > self.evaluation_periods:
            raise ValueError(
                f"datapoints_to_alarm ({self.datapoints_to_alarm}) must be <= evaluation_periods "
                f"({self.evaluation_periods})"
            )
        return self


class RetentionConfig(_Strict):
    """How many of the model's promoted versions keep their serving image in ECR beyond what the
    Deployments reference (README, "Image retention"): the ones `rollback --to` can bring back."""

    # The newest K distinct versions whose run ended `promoted`, by the run history.
    keep_promoted: int = Field(default=5, ge=1, le=100)


class ApprovalConfig(_Strict):
    """A person's approval between the canary analysis and promotion (optional per model).

    With `required`, a version whose canary passed waits for `modelops approve` / `modelops reject`
    (or `modelops promote`); after `timeout_seconds` without an answer it is rolled back."""

    required: bool = False
    timeout_seconds: int = Field(default=24 * 3600, ge=1, le=5 * 24 * 3600)


class ScheduleConfig(_Strict):
    # An EventBridge Scheduler expression: rate(...) or cron(...); None means no scheduled retraining.
    expression: str | None = None
    timezone: str = "UTC"
    enabled: bool = True

    @field_validator("expression")
    @classmethod
    def _expression(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(
            r"(rate\(\d+ (minute|minutes|hour|hours|day|days)\)|cron\(.+\))", value
        ):
            raise ValueError("expected rate(N unit) or cron(...)")
        return value


class DriftConfig(_Strict):
    """The drift monitor (modelops.drift, steps/drift.py): every `period_minutes` it compares the
    stable variant's live traffic of that window with the serving version's baseline, and the
    alarm `<stack>-<model>-drift` fires when the largest PSI (a feature's or the predictions')
    exceeds `threshold` over at least `min_samples` predictions; its ALARM starts a retrain."""

    enabled: bool = False
    period_minutes: int = Field(default=60, ge=1, le=24 * 60)
    threshold: float = Field(default=0.25, gt=0.0, le=100.0)
    min_samples: int = Field(default=500, ge=1)
    # Watch only these features (default: every feature); the predictions are always watched.
    features: list[str] | None = None


class ModelConfig(_Strict):
    name: ModelName
    data: DataConfig
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    kubernetes: KubernetesConfig
    canary: CanaryConfig
    alarms: AlarmConfig = Field(default_factory=AlarmConfig)
    approval: ApprovalConfig = Field(default_factory=ApprovalConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    drift: DriftConfig = Field(default_factory=DriftConfig)

    @model_validator(mode="before")
    @classmethod
    def _retired_serving_section(cls, doc: Any) -> Any:
        """`serving.fault_error_rate` / `fault_latency_ms` were demo switches baked into a model;
        they are gone (a bad version is now a bad model). Every config stored before has them at
        0, so such a section is dropped; a fault actually switched on is refused, saying why."""
        if not isinstance(doc, dict) or "serving" not in doc:
            return doc
        serving = doc["serving"]
        retired = {"fault_error_rate", "fault_latency_ms"}
        if isinstance(serving, dict) and set(serving) <= retired and not any(serving.values()):
            return {k: v for k, v in doc.items() if k != "serving"}
        raise ValueError(
            "the serving section (fault_error_rate, fault_latency_ms) was removed: a model version "
            "misbehaves only as its model does; delete the section"
        )

    @model_validator(mode="before")
    @classmethod
    def _default_metric(cls, doc: Any) -> Any:
        """An objective without a metric takes its task's default (auc only suits binary)."""
        if not isinstance(doc, dict):
            return doc
        data, training = doc.get("data"), doc.get("training") or {}
        task = data.get("task", "binary_classification") if isinstance(data, dict) else None
        if not isinstance(task, str) or task not in TASK_METRICS or not isinstance(training, dict):
            return doc  # field validation reports the bad task or section
        objective = training.get("objective") or {}
        if not isinstance(objective, dict) or "metric" in objective:
            return doc
        return {**doc, "training": {**training, "objective": {**objective, "metric": TASK_METRICS[task][0]}}}

    @model_validator(mode="after")
    def _router_names(self) -> ModelConfig:
        """Each weighted router needs the objects it patches named in `kubernetes`."""
        router, k = self.canary.router, self.kubernetes
        needed = {
            "gateway_api": ("stable_service", "http_route"),
            "alb": ("stable_service", "ingress", "ingress_action"),
        }.get(router, ())
        missing = [f"kubernetes.{field}" for field in needed if getattr(k, field) is None]
        if missing:
            raise ValueError(f"canary.router {router} needs {', '.join(missing)}")
        return self

    @model_validator(mode="after")
    def _metric_fits_task(self) -> ModelConfig:
        metric, task = self.training.objective.metric, self.data.task
        if metric not in TASK_METRICS[task]:
            raise ValueError(
                f"training.objective.metric {metric!r} does not apply to data.task {task}; "
                f"expected one of {list(TASK_METRICS[task])}"
            )
        return self

    @model_validator(mode="after")
    def _drift_features_known(self) -> ModelConfig:
        watched = self.drift.features or []
        unknown = [f for f in watched if f not in self.data.schema_.feature_columns]
        if unknown:
            raise ValueError(
                f"drift.features {unknown} are not among data.schema.feature_columns "
                f"{self.data.schema_.feature_columns}"
            )
        return self

    @property
    def data_prefix(self) -> str:
        return f"incoming/{self.name}/"

    def to_document(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


def parse_config(document: dict[str, Any], *, source: str = "model config") -> ModelConfig:
    """Validate a config document; raise ConfigError listing every bad field."""
    try:
        return ModelConfig.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(f"{source} is invalid: {format_validation_error(exc)}") from None


class _DuplicateKeyError(ValueError):
    pass


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last silently,
    so a second `canary:` block would replace the first without a word)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base`; a key after it may override a merged one
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, list | dict):
                continue  # unhashable; SafeLoader reports it below
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's error on one line: `line L, column C: problem (context at line L, column C)`."""
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return " ".join(str(exc).split())
    mark = exc.problem_mark
    text = f"line {mark.line + 1}, column {mark.column + 1}: {exc.problem}"
    if exc.context:
        where = exc.context_mark
        elsewhere = where is not None and (where.line, where.column) != (mark.line, mark.column)
        text += f" ({exc.context}"
        text += f" at line {where.line + 1}, column {where.column + 1})" if elsewhere and where else ")"
    return text


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise _DuplicateKeyError(f"duplicate key {key!r}")
        document[key] = value
    return document


def load_config_file(path: str | Path) -> ModelConfig:
    """Read a JSON or YAML model config file and validate it."""
    path = Path(path)
    kind = "JSON" if path.suffix == ".json" else "YAML"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read model config {path}: {exc.strerror}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{path} is not UTF-8 text (line {line}, byte {exc.start}); save it as UTF-8"
        ) from None
    if not text.strip():
        raise ConfigError(f"{path} is empty; expected a model config ({kind} mapping with name, data, ...)")
    try:
        if kind == "JSON":
            document = json.loads(text, object_pairs_hook=_unique_pairs)
        else:
            document = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: builds no objects
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {_yaml_problem(exc)}") from None
    except (json.JSONDecodeError, _DuplicateKeyError) as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from None
    if document is None:
        raise ConfigError(f"{path} holds no document (only comments?); expected a model config mapping")
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(document).__name__}")
    return parse_config(document, source=str(path))


def format_validation_error(exc: ValidationError) -> str:
    """One line per bad field: `field.path: message`."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(document)"
        message = err["msg"]
        if err["type"] == "model_type":  # "... or instance of _AlarmDetail": a Python class name
            message = "Input should be a valid dictionary"
        elif err["type"] == "value_error":
            message = message.removeprefix("Value error, ")
        elif err["type"] == "string_pattern_mismatch":
            pattern = (err.get("ctx") or {}).get("pattern")
            message = (
                f"{_PATTERN_HINTS[pattern]}, got {err['input']!r}" if pattern in _PATTERN_HINTS else message
            )
        parts.append(f"{loc}: {message}")
    return "; ".join(parts)
