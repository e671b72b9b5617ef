"""Candidate versus champion from the training job's evaluation.json; or explain a failed training."""

from __future__ import annotations

from typing import Any, Literal

from modelops.adapters.aws import client
from modelops.handler_kit import logger, tracer
from modelops.pipeline import evaluate, explain_training_failure
from pydantic import BaseModel, ConfigDict


class Event(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["evaluate", "explain_failure"]
    run: dict[str, Any]


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    parsed = Event.model_validate(event)
    if parsed.action == "explain_failure":
        explain_training_failure(parsed.run, sagemaker=client("sagemaker"))  # always raises
    return evaluate(parsed.run, sagemaker=client("sagemaker"), s3=client("s3"))
