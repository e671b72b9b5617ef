"""ValidateDataset: check the dataset against the model's schema before paying for training."""

from __future__ import annotations

from typing import Any

from modelops.handler_kit import logger, tracer
from modelops.run import Run
from modelops.steps.dataset import validate_dataset
from modelops.wiring import services
from pydantic import BaseModel, ConfigDict


class Event(BaseModel):
    model_config = ConfigDict(extra="forbid")
    run: Run


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return validate_dataset(Event.model_validate(event).run, objects=services().objects())
