"""S3 Object Created (EventBridge), per-model schedules, manual starts and a model's drift alarm
going to ALARM (EventBridge) -> one workflow execution.

The execution name is the idempotency key: a redelivered event or repeated schedule slot starts
nothing new. Bad input from an event trigger is logged and notified, then returned (retrying could
not fix it); a manual (direct) invoke gets the error raised back.
"""

from __future__ import annotations

from typing import Any

from modelops.errors import RequestError, UnknownModelError
from modelops.handler_kit import BaseEnv, env, logger, tracer
from modelops.steps.start import start_run
from modelops.triggers import parse_trigger
from modelops.wiring import services


class Env(BaseEnv):
    STATE_MACHINE_ARN: str
    BUCKET_NAME: str
    TOPIC_ARN: str
    ALARM_PREFIX: str


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: Any, context: Any) -> dict[str, Any]:
    settings = env(Env)
    ports = services()
    # Events (EventBridge, Scheduler, an S3 notification) are answered, not raised: a retry cannot fix them.
    from_event = isinstance(event, dict) and (
        event.get("source") in {"aws.s3", "modelops.schedule", "aws.cloudwatch"} or "Records" in event
    )
    try:
        request = parse_trigger(event, bucket=settings.BUCKET_NAME, alarm_prefix=settings.ALARM_PREFIX)
        result = start_run(request, store=ports.store(), executions=ports.executions())
    except (RequestError, UnknownModelError) as exc:
        if not from_event:
            raise
        logger.error("trigger rejected", extra={"error": type(exc).__name__, "reason": str(exc)})
        ports.notifier().publish("[modelops] trigger rejected", str(exc))
        return {"started": False, "error": type(exc).__name__, "message": str(exc)}
    logger.info("trigger handled", extra=result)
    return result
