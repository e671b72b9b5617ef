"""Every SageMaker container-contract name in one place: paths, environment variables, defaults.

SageMaker runs `docker run <image> train` with the job's inputs under /opt/ml and `serve` with the
model under /opt/ml/model. Outside a container, `SAGEMAKER_BASE_DIR` moves that root, so the same
programs run as local processes. Values are read when called (never at import), so a caller can
build an environment and pass it in.

Reference: https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-training-algo.html
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# --- environment variable names ------------------------------------------------------------------
BASE_DIR_ENV = "SAGEMAKER_BASE_DIR"
DEFAULT_BASE_DIR = "/opt/ml"
# The framework toolkits' overrides; honoured so the programs also run under sagemaker-training.
MODEL_DIR_ENV = "SM_MODEL_DIR"
OUTPUT_DATA_DIR_ENV = "SM_OUTPUT_DATA_DIR"
CHANNEL_ENV_PREFIX = "SM_CHANNEL_"
# Set by SageMaker in training containers.
TRAINING_JOB_NAME_ENV = "TRAINING_JOB_NAME"
# Serving: SageMaker hosting sets SAGEMAKER_BIND_TO_PORT; Kubernetes and local runs use PORT.
BIND_PORT_ENV = "SAGEMAKER_BIND_TO_PORT"
PORT_ENV = "PORT"
DEFAULT_PORT = 8080
HOST_ENV = "SERVE_HOST"
DEFAULT_HOST = "0.0.0.0"
# Local runs only: after binding, the server writes its port here (useful with PORT=0).
PORT_FILE_ENV = "SERVE_PORT_FILE"
# Metrics (embedded metric format) and identity of the serving pod.
METRIC_NAMESPACE_ENV = "MODELOPS_METRIC_NAMESPACE"
DEFAULT_METRIC_NAMESPACE = "ModelOps"
MODEL_ENV = "MODELOPS_MODEL"
VARIANT_ENV = "MODELOPS_VARIANT"
VERSION_ENV = "MODELOPS_VERSION"
EMF_FLUSH_ENV = "EMF_FLUSH_SECONDS"
DEFAULT_EMF_FLUSH_SECONDS = 1.0
# Serving behaviour (defaults suit a Kubernetes pod; see serving_image/README.md).
DRAIN_SECONDS_ENV = "SERVE_DRAIN_SECONDS"  # after SIGTERM: keep serving, /ping 503, Connection: close
DEFAULT_DRAIN_SECONDS = 0.0
GRACEFUL_TIMEOUT_ENV = "SERVE_GRACEFUL_TIMEOUT_SECONDS"  # then: wait this long for in-flight requests
DEFAULT_GRACEFUL_TIMEOUT_SECONDS = 20.0
KEEP_ALIVE_ENV = "SERVE_KEEP_ALIVE_SECONDS"  # idle keep-alive; above the 60 s of AWS load balancers
DEFAULT_KEEP_ALIVE_SECONDS = 65.0
BATCH_MAX_ROWS_ENV = "SERVE_BATCH_MAX_ROWS"
DEFAULT_BATCH_MAX_ROWS = 4096  # 16 concurrent 100-row requests in one scikit-learn call
BATCH_WAIT_MS_ENV = "SERVE_BATCH_WAIT_MS"  # 0: batch only requests that arrived together
DEFAULT_BATCH_WAIT_MS = 0.0
COMPILED_MAX_ROWS_ENV = "SERVE_COMPILED_MAX_ROWS"  # batches this big go to scikit-learn
DEFAULT_COMPILED_MAX_ROWS = 64
# Live drift statistics against the model's baseline.json (baseline.py): on unless "off".
DRIFT_STATS_ENV = "SERVE_DRIFT_STATS"
# Before /ping answers 200, the check rows take a request's path for at most this long (warmup.py).
WARMUP_SECONDS_ENV = "SERVE_WARMUP_SECONDS"  # 0: off
DEFAULT_WARMUP_SECONDS = 2.0

# --- file names ----------------------------------------------------------------------------------
HYPERPARAMETERS_FILE = "hyperparameters.json"
INPUT_DATA_CONFIG_FILE = "inputdataconfig.json"
RESOURCE_CONFIG_FILE = "resourceconfig.json"
FAILURE_FILE = "failure"
MODEL_FILE = "model.joblib"
METADATA_FILE = "metadata.json"
FOREST_FILE = "forest.json"
EVALUATION_FILE = "evaluation.json"
TRAIN_CHANNEL = "train"
CHAMPION_CHANNEL = "champion"
# Judge mode (train.py): the model.tar.gz to judge, written by a training image of the team's own.
CANDIDATE_CHANNEL = "candidate"
# Script mode: the channel of the team's code archive, and its copy in the model folder.
CODE_CHANNEL = "code"
CODE_DIR = "code"


@dataclass(frozen=True)
class ContainerPaths:
    """The container's folders, resolved against one base directory."""

    base_dir: Path
    model_dir: Path
    output_data_dir: Path
    channel_overrides: Mapping[str, Path]

    @property
    def input_config_dir(self) -> Path:
        return self.base_dir / "input" / "config"

    @property
    def hyperparameters_file(self) -> Path:
        return self.input_config_dir / HYPERPARAMETERS_FILE

    @property
    def input_data_config_file(self) -> Path:
        return self.input_config_dir / INPUT_DATA_CONFIG_FILE

    @property
    def resource_config_file(self) -> Path:
        return self.input_config_dir / RESOURCE_CONFIG_FILE

    @property
    def input_data_dir(self) -> Path:
        return self.base_dir / "input" / "data"

    @property
    def output_dir(self) -> Path:
        return self.base_dir / "output"

    @property
    def failure_file(self) -> Path:
        return self.output_dir / FAILURE_FILE

    def channel_dir(self, channel: str) -> Path:
        """Where SageMaker puts a channel's files: input/data/<channel>/ (or SM_CHANNEL_<NAME>)."""
        return self.channel_overrides.get(channel, self.input_data_dir / channel)


def container_paths(env: Mapping[str, str] | None = None) -> ContainerPaths:
    """The contract folders for `env` (default: this process's environment)."""
    env = os.environ if env is None else env
    base = Path(env.get(BASE_DIR_ENV) or DEFAULT_BASE_DIR)
    overrides = {
        key[len(CHANNEL_ENV_PREFIX) :].lower(): Path(value)
        for key, value in env.items()
        if key.startswith(CHANNEL_ENV_PREFIX) and value
    }
    return ContainerPaths(
        base_dir=base,
        model_dir=Path(env.get(MODEL_DIR_ENV) or base / "model"),
        output_data_dir=Path(env.get(OUTPUT_DATA_DIR_ENV) or base / "output" / "data"),
        channel_overrides=overrides,
    )


class ContractError(ValueError):
    """An environment variable of the container contract has an unusable value."""


@dataclass(frozen=True)
class ServeSettings:
    host: str
    port: int
    port_file: Path | None
    metric_namespace: str
    model: str
    variant: str
    version: str | None
    emf_flush_seconds: float
    drain_seconds: float = DEFAULT_DRAIN_SECONDS
    graceful_timeout_seconds: float = DEFAULT_GRACEFUL_TIMEOUT_SECONDS
    keep_alive_seconds: float = DEFAULT_KEEP_ALIVE_SECONDS
    batch_max_rows: int = DEFAULT_BATCH_MAX_ROWS
    batch_wait_ms: float = DEFAULT_BATCH_WAIT_MS
    compiled_max_rows: int = DEFAULT_COMPILED_MAX_ROWS
    drift_stats: bool = True
    warmup_seconds: float = DEFAULT_WARMUP_SECONDS


def serve_settings(env: Mapping[str, str] | None = None) -> ServeSettings:
    """Serving settings from `env`; ContractError names the variable with a bad value."""
    env = os.environ if env is None else env
    port_name = BIND_PORT_ENV if env.get(BIND_PORT_ENV) else PORT_ENV
    port = _int(env, port_name, DEFAULT_PORT)
    if not 0 <= port <= 65535:
        raise ContractError(f"{port_name}={port} is not a TCP port (0-65535)")
    drift = (env.get(DRIFT_STATS_ENV) or "on").strip().lower()
    if drift not in ("on", "off"):
        raise ContractError(f"{DRIFT_STATS_ENV}={drift!r} must be on or off")
    flush = _float(env, EMF_FLUSH_ENV, DEFAULT_EMF_FLUSH_SECONDS)
    if flush <= 0:
        raise ContractError(f"{EMF_FLUSH_ENV}={flush} must be > 0 seconds")
    return ServeSettings(
        host=env.get(HOST_ENV) or DEFAULT_HOST,
        port=port,
        port_file=Path(env[PORT_FILE_ENV]) if env.get(PORT_FILE_ENV) else None,
        metric_namespace=env.get(METRIC_NAMESPACE_ENV) or DEFAULT_METRIC_NAMESPACE,
        model=env.get(MODEL_ENV) or "unknown",
        variant=env.get(VARIANT_ENV) or "stable",
        version=env.get(VERSION_ENV) or None,
        emf_flush_seconds=flush,
        drain_seconds=_at_least(env, DRAIN_SECONDS_ENV, DEFAULT_DRAIN_SECONDS, 0),
        graceful_timeout_seconds=_at_least(env, GRACEFUL_TIMEOUT_ENV, DEFAULT_GRACEFUL_TIMEOUT_SECONDS, 0),
        keep_alive_seconds=_at_least(env, KEEP_ALIVE_ENV, DEFAULT_KEEP_ALIVE_SECONDS, 1),
        batch_max_rows=int(_at_least(env, BATCH_MAX_ROWS_ENV, DEFAULT_BATCH_MAX_ROWS, 1, integer=True)),
        batch_wait_ms=_at_least(env, BATCH_WAIT_MS_ENV, DEFAULT_BATCH_WAIT_MS, 0),
        compiled_max_rows=int(
            _at_least(env, COMPILED_MAX_ROWS_ENV, DEFAULT_COMPILED_MAX_ROWS, 0, integer=True)
        ),
        drift_stats=drift == "on",
        warmup_seconds=_at_least(env, WARMUP_SECONDS_ENV, DEFAULT_WARMUP_SECONDS, 0),
    )


def _at_least(
    env: Mapping[str, str], name: str, default: float, low: float, *, integer: bool = False
) -> float:
    value: float = _int(env, name, int(default)) if integer else _float(env, name, default)
    if value < low:
        raise ContractError(f"{name}={value} must be >= {low}")
    return value


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ContractError(f"{name}={raw!r} is not an integer") from None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ContractError(f"{name}={raw!r} is not a number") from None
