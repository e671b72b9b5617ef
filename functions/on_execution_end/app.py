"""Step Functions Execution Status Change (ABORTED, TIMED_OUT, FAILED) -> release the model's lock,
roll the canary back through the rollout function, record the run, start the coalesced follow-up."""

from __future__ import annotations

from typing import Any

from modelops.handler_kit import BaseEnv, env, logger, tracer
from modelops.steps.cleanup import clean_up_after_execution
from modelops.wiring import services


class Env(BaseEnv):
    STATE_MACHINE_ARN: str
    ROLLOUT_FUNCTION_ARN: str


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: Any, context: Any) -> dict[str, Any]:
    settings = env(Env)
    ports = services()
    result = clean_up_after_execution(
        event,
        store=ports.store(),
        rollback=ports.rollback(),
        executions=ports.executions(),
        state_machine_arn=settings.STATE_MACHINE_ARN,
    )
    logger.info("execution end handled", extra=result)
    return result
