"""Start the CodeBuild image build and report its state; the digest comes from ECR.

CodeBuild is called from a function rather than from ASL: its API members are camelCase, which the
Step Functions aws-sdk integration and the local interpreter name differently (see ARCHITECTURE.md).
"""

from __future__ import annotations

from typing import Any, Literal

from modelops.adapters.aws import client
from modelops.handler_kit import BaseEnv, env, logger, tracer
from modelops.pipeline import build_status, start_build
from pydantic import BaseModel, ConfigDict


class Env(BaseEnv):
    PROJECT_NAME: str
    IMAGE_REPOSITORY_NAME: str
    IMAGE_REPOSITORY_URI: str


class Event(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["start", "status"]
    run: dict[str, Any]
    evaluation: dict[str, Any] | None = None
    package: dict[str, Any] | None = None
    build: dict[str, Any] | None = None


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    settings = env(Env)
    parsed = Event.model_validate(event)
    if parsed.action == "start":
        if parsed.evaluation is None or parsed.package is None:
            raise ValueError("action start needs 'evaluation' and 'package'")
        return start_build(
            parsed.run,
            parsed.evaluation,
            parsed.package,
            codebuild=client("codebuild"),
            project=settings.PROJECT_NAME,
            repository_uri=settings.IMAGE_REPOSITORY_URI,
        )
    if parsed.build is None:
        raise ValueError("action status needs 'build'")
    return build_status(
        parsed.build,
        codebuild=client("codebuild"),
        ecr=client("ecr"),
        repository_name=settings.IMAGE_REPOSITORY_NAME,
        repository_uri=settings.IMAGE_REPOSITORY_URI,
    )
