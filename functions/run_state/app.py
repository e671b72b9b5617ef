"""The per-model lock and run history: acquire, release (starting a coalesced follow-up), finish."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from modelops.adapters.aws import client
from modelops.handler_kit import BaseEnv, env, logger, store, tracer
from modelops.pipeline import acquire, finish, release
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class Env(BaseEnv):
    STATE_MACHINE_ARN: str


class Acquire(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["acquire"]
    run: dict[str, Any]


class Release(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["release"]
    run: dict[str, Any]


class Finish(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["finish"]
    status: Literal["promoted", "rejected", "failed", "rolled_back", "rollback_failed"]
    state: dict[str, Any]


Action: TypeAdapter[Acquire | Release | Finish] = TypeAdapter(
    Annotated[Acquire | Release | Finish, Field(discriminator="action")]
)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = Action.validate_python(event)
    if isinstance(request, Acquire):
        return acquire(
            request.run,
            store=store(),
            s3=client("s3"),
            sfn=client("stepfunctions"),
            state_machine_arn=env(Env).STATE_MACHINE_ARN,
        )
    if isinstance(request, Release):
        return release(
            request.run,
            store=store(),
            sfn=client("stepfunctions"),
            state_machine_arn=env(Env).STATE_MACHINE_ARN,
        )
    return finish(request.state, request.status, store=store(), sagemaker=client("sagemaker"))
