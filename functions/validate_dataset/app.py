"""Check the dataset against the model's schema before paying for training."""

from __future__ import annotations

from typing import Any

from modelops.adapters.aws import client
from modelops.handler_kit import logger, tracer
from modelops.pipeline import validate_dataset
from pydantic import BaseModel, ConfigDict


class Event(BaseModel):
    model_config = ConfigDict(extra="forbid")
    run: dict[str, Any]


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return validate_dataset(Event.model_validate(event).run, s3=client("s3"))
