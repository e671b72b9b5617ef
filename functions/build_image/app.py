"""StartBuild and CheckBuild: the CodeBuild image build and its state; the digest comes from ECR.

CodeBuild is called from a function rather than from ASL: its API members are camelCase, which the
Step Functions aws-sdk integration and the local interpreter name differently (see ARCHITECTURE.md).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from modelops.handler_kit import logger, tracer
from modelops.run import Build, EvaluationResult, Package, Run
from modelops.steps.build import build_status, start_build
from modelops.wiring import services
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class Start(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["start"]
    run: Run
    evaluation: EvaluationResult
    package: Package


class Status(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["status"]
    run: Run
    build: Build


Action: TypeAdapter[Start | Status] = TypeAdapter(Annotated[Start | Status, Field(discriminator="action")])


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = Action.validate_python(event)
    ports = services()
    builds, images = ports.image_builds(), ports.image_repository()
    if isinstance(request, Start):
        return start_build(
            model=request.run.model,
            version=request.package.version,
            run_id=request.run.run_id,
            model_artifact=request.evaluation.model_artifact,
            baseline_artifact=(request.evaluation.baseline or {}).get("artifact"),
            builds=builds,
            images=images,
        ).to_payload()
    return build_status(request.build, builds=builds, images=images).to_payload()
