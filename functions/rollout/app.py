"""Rollout actions on EKS, each idempotent: deploy_canary, status, smoke_test, await_signal,
promote, finish_promotion, rollback."""

from __future__ import annotations

import functools
from typing import Annotated, Any, Literal

from modelops.adapters.aws import client
from modelops.adapters.cloudwatch import CloudWatchMetrics
from modelops.adapters.eks import EksConnector
from modelops.adapters.kube import KubeClient
from modelops.handler_kit import BaseEnv, env, logger, store, tracer
from modelops.rollout_service import RolloutService
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class Env(BaseEnv):
    CLUSTER_NAME: str
    ALARM_PREFIX: str
    METRIC_NAMESPACE: str
    KUBE_READ_TIMEOUT_SECONDS: float = Field(default=20, gt=0)


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid")
    run: dict[str, Any]


class Deploy(_Base):
    action: Literal["deploy_canary", "promote"]
    image: str
    version: str


class Status(_Base):
    action: Literal["status"]
    target: Literal["canary", "stable", "rollback"]
    image: str | None = None


class Smoke(_Base):
    action: Literal["smoke_test"]
    sample: list[list[float]]


class Await(_Base):
    action: Literal["await_signal"]
    phase: Literal["bake", "watch"]
    task_token: str


class Simple(_Base):
    action: Literal["finish_promotion", "rollback"]


Action: TypeAdapter[Deploy | Status | Smoke | Await | Simple] = TypeAdapter(
    Annotated[Deploy | Status | Smoke | Await | Simple, Field(discriminator="action")]
)


@functools.cache
def _connector(cluster: str) -> EksConnector:
    return EksConnector(cluster, client("eks"), client("sts"))


def service() -> RolloutService:
    settings = env(Env)
    connector = _connector(settings.CLUSTER_NAME)
    sfn = client("stepfunctions")
    return RolloutService(
        kube=KubeClient(
            connector.api_client(),
            on_unauthorized=connector.invalidate,
            request_timeout=(5, settings.KUBE_READ_TIMEOUT_SECONDS),
        ),
        store=store(),
        metrics=CloudWatchMetrics(
            client("cloudwatch"), namespace=settings.METRIC_NAMESPACE, alarm_prefix=settings.ALARM_PREFIX
        ),
        send_task_failure=lambda token, error, cause: sfn.send_task_failure(
            taskToken=token, error=error, cause=cause
        ),
    )


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = Action.validate_python(event)
    logger.append_keys(action=request.action, run_id=request.run.get("run_id"))
    rollout = service()
    if isinstance(request, Deploy):
        if request.action == "deploy_canary":
            return rollout.deploy_canary(request.run, request.image, request.version)
        return rollout.promote(request.run, request.image, request.version)
    if isinstance(request, Status):
        return rollout.status(request.run, request.target, request.image)
    if isinstance(request, Smoke):
        return rollout.smoke_test(request.run, request.sample)
    if isinstance(request, Await):
        return rollout.await_signal(request.run, request.phase, request.task_token)
    if request.action == "finish_promotion":
        return rollout.finish_promotion(request.run)
    return rollout.rollback(request.run)
