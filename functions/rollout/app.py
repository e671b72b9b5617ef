"""The rollout actions on EKS, each idempotent: RestoreNow (begin), DeployCanary, ShiftTraffic,
Check*Ready (status), SmokeTest, Bake, AwaitApproval and Watch (await_signal), Promote, FinishPromotion,
Rollback."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from modelops.handler_kit import logger, tracer
from modelops.run import RunRef
from modelops.steps.rollout import RolloutService
from modelops.wiring import services
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # The whole run, or just its reference (the clean-up's rollback sends only that).
    run: RunRef


class Deploy(_Base):
    action: Literal["begin", "deploy_canary", "promote"]
    image: str
    version: str


class Status(_Base):
    action: Literal["status"]
    target: Literal["canary", "stable", "rollback"]
    image: str | None = None


class Smoke(_Base):
    action: Literal["smoke_test"]
    # Feature rows in the schema's order; a missing value is null, a categorical value its text.
    sample: list[list[float | str | None]]


class Await(_Base):
    action: Literal["await_signal"]
    phase: Literal["bake", "approval", "watch"]
    task_token: str


class Shift(_Base):
    action: Literal["shift_traffic"]
    # The step's position in the model's canary steps (0 first).
    index: int = Field(ge=0, le=100)


class Simple(_Base):
    action: Literal["finish_promotion", "rollback"]


Action: TypeAdapter[Deploy | Status | Smoke | Await | Shift | Simple] = TypeAdapter(
    Annotated[Deploy | Status | Smoke | Await | Shift | Simple, Field(discriminator="action")]
)


def rollout_service() -> RolloutService:
    ports = services()
    return RolloutService(
        kube=ports.kube(), store=ports.store(), metrics=ports.metrics(), callbacks=ports.callbacks()
    )


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = Action.validate_python(event)
    logger.append_keys(action=request.action, run_id=request.run.run_id)
    rollout = rollout_service()
    if isinstance(request, Deploy):
        if request.action == "begin":
            return rollout.begin(request.run, request.image, request.version)
        if request.action == "deploy_canary":
            return rollout.deploy_canary(request.run, request.image, request.version)
        return rollout.promote(request.run, request.image, request.version)
    if isinstance(request, Status):
        return rollout.status(request.run, request.target, request.image)
    if isinstance(request, Smoke):
        return rollout.smoke_test(request.run, request.sample)
    if isinstance(request, Await):
        return rollout.await_signal(request.run, request.phase, request.task_token)
    if isinstance(request, Shift):
        return rollout.shift_traffic(request.run, request.index)
    if request.action == "finish_promotion":
        return rollout.finish_promotion(request.run)
    return rollout.rollback(request.run)
