"""ResolveRequest: validate the execution input and build the run context the later states read."""

from __future__ import annotations

from typing import Any

from modelops.handler_kit import BaseEnv, env, logger, tracer
from modelops.steps.resolve import resolve
from modelops.training_image import recorded_image
from modelops.wiring import services
from pydantic import BaseModel, ConfigDict


class Env(BaseEnv):
    BUCKET_NAME: str
    SAGEMAKER_ROLE_ARN: str
    TRAINING_IMAGE: str = ""  # empty: the stack's own image, recorded by `modelops bootstrap`
    TRAINING_IMAGE_PARAMETER: str = ""
    POLL_SECONDS: int = 30


class Event(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request: Any  # checked by modelops.triggers.parse_execution_input, which names the bad field
    execution_name: str


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    settings = env(Env)
    parsed = Event.model_validate(event)
    ports = services()
    run = resolve(
        parsed.request,
        execution_name=parsed.execution_name,
        store=ports.store(),
        objects=ports.objects(),
        bucket=settings.BUCKET_NAME,
        stack_name=settings.STACK_NAME,
        sagemaker_role_arn=settings.SAGEMAKER_ROLE_ARN,
        training_image=settings.TRAINING_IMAGE,
        poll_seconds=settings.POLL_SECONDS,
        recorded_image=lambda: (
            recorded_image(ports.parameters(), settings.TRAINING_IMAGE_PARAMETER)
            if settings.TRAINING_IMAGE_PARAMETER
            else None
        ),
    )
    return run.to_payload()
