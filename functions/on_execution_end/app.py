"""Step Functions Execution Status Change (ABORTED, TIMED_OUT, FAILED) -> release the model's lock,
roll the canary back through the rollout function, record the run, start the coalesced follow-up."""

from __future__ import annotations

from typing import Any

from modelops.adapters.aws import client
from modelops.cleanup import clean_up_after_execution, lambda_rollback
from modelops.handler_kit import BaseEnv, env, logger, store, tracer


class Env(BaseEnv):
    STATE_MACHINE_ARN: str
    ROLLOUT_FUNCTION_ARN: str


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: Any, context: Any) -> dict[str, Any]:
    settings = env(Env)
    result = clean_up_after_execution(
        event,
        store=store(),
        rollback=lambda_rollback(client("lambda"), settings.ROLLOUT_FUNCTION_ARN),
        sfn=client("stepfunctions"),
        state_machine_arn=settings.STATE_MACHINE_ARN,
    )
    logger.info("execution end handled", extra=result)
    return result
