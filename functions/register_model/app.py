"""Register the accepted candidate as a new version in the SageMaker model registry."""

from __future__ import annotations

from typing import Any

from modelops.adapters.aws import client
from modelops.handler_kit import logger, tracer
from modelops.pipeline import register
from pydantic import BaseModel, ConfigDict


class Event(BaseModel):
    model_config = ConfigDict(extra="forbid")
    run: dict[str, Any]
    evaluation: dict[str, Any]


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    parsed = Event.model_validate(event)
    return register(parsed.run, parsed.evaluation, sagemaker=client("sagemaker"))
