"""EvaluateModel (candidate versus champion from the training job's evaluation.json) and
ExplainTrainingFailure."""

from __future__ import annotations

from typing import Any, Literal

from modelops.handler_kit import logger, tracer
from modelops.run import Run
from modelops.steps.evaluation import evaluate
from modelops.steps.training import explain_training_failure
from modelops.wiring import services
from pydantic import BaseModel, ConfigDict


class Event(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["evaluate", "explain_failure"]
    run: Run


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    parsed = Event.model_validate(event)
    ports = services()
    if parsed.action == "explain_failure":
        explain_training_failure(parsed.run, jobs=ports.training_jobs())  # always raises
    return evaluate(parsed.run, jobs=ports.training_jobs(), objects=ports.objects()).to_payload()
