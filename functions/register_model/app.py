"""RegisterModel: the accepted candidate becomes a new version in the SageMaker model registry."""

from __future__ import annotations

from typing import Any

from modelops.handler_kit import logger, tracer
from modelops.run import EvaluationResult, Run
from modelops.steps.registry import register
from modelops.wiring import services
from pydantic import BaseModel, ConfigDict


class Event(BaseModel):
    model_config = ConfigDict(extra="forbid")
    run: Run
    evaluation: EvaluationResult


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    parsed = Event.model_validate(event)
    return register(parsed.run, parsed.evaluation, registry=services().registry()).to_payload()
