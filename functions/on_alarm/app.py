"""CloudWatch Alarm State Change -> SendTaskFailure on the active rollout's bake/watch token."""

from __future__ import annotations

from typing import Any

from modelops.adapters.aws import client
from modelops.handler_kit import BaseEnv, env, logger, store, tracer
from modelops.pipeline import handle_alarm


class Env(BaseEnv):
    ALARM_PREFIX: str


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: Any, context: Any) -> dict[str, Any]:
    result = handle_alarm(
        event, store=store(), sfn=client("stepfunctions"), alarm_prefix=env(Env).ALARM_PREFIX
    )
    logger.info("alarm handled", extra=result)
    return result
