"""Which adapter serves each port: the AWS one, built from the function's environment when a handler
first asks and reused while the Lambda stays warm.

Handlers get their ports from `services()`. A test that wants a fake behind a port (an in-process
Kubernetes, a build service that records what it was asked) subclasses `Services` and installs it
with `installed(...)` for the duration of a block; nothing patches module globals.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from pydantic import Field

from modelops.adapters.aws import client
from modelops.handler_kit import BaseEnv, env
from modelops.ports import (
    DriftMetrics,
    Executions,
    ImageBuilds,
    ImageCatalog,
    ImageRepository,
    Kube,
    Metrics,
    ModelCatalog,
    ModelRegistry,
    Notifier,
    ObjectStore,
    Parameters,
    Rollback,
    Store,
    TaskCallbacks,
    TrainingJobs,
)

if TYPE_CHECKING:  # imported where used: only the rollout function pays for the Kubernetes client
    from modelops.adapters.codebuild import EcrRepository
    from modelops.adapters.eks import EksConnector


class _WorkflowEnv(BaseEnv):
    STATE_MACHINE_ARN: str


class _RepositoryEnv(BaseEnv):
    IMAGE_REPOSITORY_NAME: str
    IMAGE_REPOSITORY_URI: str


class _BuildEnv(_RepositoryEnv):
    PROJECT_NAME: str


class _MetricsEnv(BaseEnv):
    ALARM_PREFIX: str
    METRIC_NAMESPACE: str


class _ClusterEnv(BaseEnv):
    CLUSTER_NAME: str
    # The Kubernetes client's read timeout per request (connect: 5 s).
    KUBE_READ_TIMEOUT_SECONDS: float = Field(default=20.0, gt=0)


class _TopicEnv(BaseEnv):
    TOPIC_ARN: str


class _RollbackEnv(BaseEnv):
    ROLLOUT_FUNCTION_ARN: str


class Services:
    """The AWS adapter behind each port. A missing environment variable is a ConfigError naming it."""

    def __init__(self) -> None:
        self._connectors: dict[str, EksConnector] = {}
        self._lock = threading.Lock()

    def store(self) -> Store:
        from modelops.adapters.store import StateStore

        return StateStore(env(BaseEnv).TABLE_NAME, client("dynamodb"))

    def catalog(self) -> ModelCatalog:
        """The state table as the retention clean-up reads it (every model, its history)."""
        from modelops.adapters.store import StateStore

        return StateStore(env(BaseEnv).TABLE_NAME, client("dynamodb"))

    def objects(self) -> ObjectStore:
        from modelops.adapters.s3 import S3Objects

        return S3Objects(client("s3"))

    def parameters(self) -> Parameters:
        from modelops.adapters.ssm import SsmParameters

        return SsmParameters(client("ssm"))

    def training_jobs(self) -> TrainingJobs:
        from modelops.adapters.sagemaker import SageMakerTrainingJobs

        return SageMakerTrainingJobs(client("sagemaker"))

    def registry(self) -> ModelRegistry:
        from modelops.adapters.sagemaker import SageMakerRegistry

        return SageMakerRegistry(client("sagemaker"))

    def image_builds(self) -> ImageBuilds:
        from modelops.adapters.codebuild import CodeBuildImages

        return CodeBuildImages(client("codebuild"), project=env(_BuildEnv).PROJECT_NAME)

    def _ecr(self) -> EcrRepository:
        from modelops.adapters.codebuild import EcrRepository

        settings = env(_RepositoryEnv)
        return EcrRepository(
            client("ecr"), name=settings.IMAGE_REPOSITORY_NAME, uri=settings.IMAGE_REPOSITORY_URI
        )

    def image_repository(self) -> ImageRepository:
        return self._ecr()

    def image_catalog(self) -> ImageCatalog:
        """The serving repository as the retention clean-up lists and deletes its images."""
        return self._ecr()

    def executions(self) -> Executions:
        from modelops.adapters.stepfunctions import StepFunctionsExecutions

        return StepFunctionsExecutions(
            client("stepfunctions"), state_machine_arn=env(_WorkflowEnv).STATE_MACHINE_ARN
        )

    def callbacks(self) -> TaskCallbacks:
        from modelops.adapters.stepfunctions import StepFunctionsCallbacks

        return StepFunctionsCallbacks(client("stepfunctions"))

    def notifier(self) -> Notifier:
        from modelops.adapters.sns import SnsNotifier

        return SnsNotifier(client("sns"), topic_arn=env(_TopicEnv).TOPIC_ARN)

    def metrics(self) -> Metrics:
        from modelops.adapters.cloudwatch import CloudWatchMetrics

        settings = env(_MetricsEnv)
        return CloudWatchMetrics(
            client("cloudwatch"), namespace=settings.METRIC_NAMESPACE, alarm_prefix=settings.ALARM_PREFIX
        )

    def drift_metrics(self) -> DriftMetrics:
        from modelops.adapters.cloudwatch import CloudWatchMetrics

        settings = env(_MetricsEnv)
        return CloudWatchMetrics(
            client("cloudwatch"), namespace=settings.METRIC_NAMESPACE, alarm_prefix=settings.ALARM_PREFIX
        )

    def kube(self) -> Kube:
        """A client for the stack's cluster; its EKS connection (endpoint, CA, token) is reused
        while warm and refreshed before the token expires or after a 401."""
        from modelops.adapters.eks import EksConnector
        from modelops.adapters.kube import KubeClient

        settings = env(_ClusterEnv)
        with self._lock:
            if settings.CLUSTER_NAME not in self._connectors:
                self._connectors[settings.CLUSTER_NAME] = EksConnector(
                    settings.CLUSTER_NAME, client("eks"), client("sts")
                )
            connector = self._connectors[settings.CLUSTER_NAME]
        return KubeClient(
            connector.api_client(),
            on_unauthorized=connector.invalidate,
            request_timeout=(5.0, settings.KUBE_READ_TIMEOUT_SECONDS),
        )

    def rollback(self) -> Rollback:
        from modelops.adapters.rollout_function import LambdaRollback

        return LambdaRollback(client("lambda"), function=env(_RollbackEnv).ROLLOUT_FUNCTION_ARN)


_default = Services()
_installed: list[Services] = []


def services() -> Services:
    """The services handlers use: the installed ones (tests), else the AWS adapters."""
    return _installed[-1] if _installed else _default


@contextlib.contextmanager
def installed(replacement: Services) -> Iterator[Services]:
    """Serve every handler from `replacement` inside the block."""
    _installed.append(replacement)
    try:
        yield replacement
    finally:
        _installed.remove(replacement)
