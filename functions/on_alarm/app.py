"""CloudWatch Alarm State Change -> SendTaskFailure on the active rollout's bake/watch token."""

from __future__ import annotations

from typing import Any

from modelops.handler_kit import BaseEnv, env, logger, tracer
from modelops.steps.alarms import handle_alarm
from modelops.wiring import services


class Env(BaseEnv):
    ALARM_PREFIX: str


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: Any, context: Any) -> dict[str, Any]:
    ports = services()
    result = handle_alarm(
        event, store=ports.store(), callbacks=ports.callbacks(), alarm_prefix=env(Env).ALARM_PREFIX
    )
    logger.info("alarm handled", extra=result)
    return result
