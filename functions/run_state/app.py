"""AcquireLock, ReleaseLock and the Record* states: the per-model lock and the run's outcome."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from modelops.handler_kit import logger, tracer
from modelops.run import Run, RunState
from modelops.steps.lock import acquire, release
from modelops.steps.notify import Status, record_outcome
from modelops.wiring import services
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class Acquire(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["acquire"]
    run: Run


class Release(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["release"]
    run: Run


class Finish(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["finish"]
    status: Status
    state: RunState


Action: TypeAdapter[Acquire | Release | Finish] = TypeAdapter(
    Annotated[Acquire | Release | Finish, Field(discriminator="action")]
)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = Action.validate_python(event)
    ports = services()
    if isinstance(request, Acquire):
        return acquire(
            request.run, store=ports.store(), objects=ports.objects(), executions=ports.executions()
        )
    if isinstance(request, Release):
        return release(
            request.run.model, request.run.run_id, store=ports.store(), executions=ports.executions()
        )
    return record_outcome(request.state, request.status, store=ports.store(), registry=ports.registry())
