"""Judge the canary after its bake: alarms plus canary-versus-stable error rate and latency."""

from __future__ import annotations

from typing import Any

from modelops.adapters.aws import client
from modelops.adapters.cloudwatch import CloudWatchMetrics
from modelops.handler_kit import BaseEnv, env, logger, store, tracer
from modelops.pipeline import analyze_canary
from pydantic import BaseModel, ConfigDict


class Env(BaseEnv):
    ALARM_PREFIX: str
    METRIC_NAMESPACE: str


class Event(BaseModel):
    model_config = ConfigDict(extra="forbid")
    run: dict[str, Any]


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    settings = env(Env)
    metrics = CloudWatchMetrics(
        client("cloudwatch"), namespace=settings.METRIC_NAMESPACE, alarm_prefix=settings.ALARM_PREFIX
    )
    return analyze_canary(Event.model_validate(event).run, store=store(), metrics=metrics)
