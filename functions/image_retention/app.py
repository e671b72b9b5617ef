"""Scheduled (`<stack>-image-retention`, EventBridge Scheduler) -> delete the serving images that no
model's Deployments, last promoted versions, champion or active rollout need
(modelops.steps.retention); `{"dry_run": true}` reports what it would delete and deletes nothing."""

from __future__ import annotations

from typing import Any

from modelops.handler_kit import BaseEnv, env, logger, tracer
from modelops.steps.retention import clean_up_images, summary
from modelops.wiring import services
from pydantic import BaseModel, ConfigDict, Field


class Env(BaseEnv):
    # Images pushed less than this long ago are kept whatever else holds (a build in flight).
    RETENTION_GRACE_HOURS: float = Field(gt=0)


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dry_run: bool = False


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: Any, context: Any) -> dict[str, Any]:
    settings = env(Env)
    request = Request.model_validate(event or {})
    ports = services()
    report = clean_up_images(
        catalog=ports.catalog(),
        kube=ports.kube,  # connects when the first model's Deployments are read
        images=ports.image_catalog(),
        grace_seconds=settings.RETENTION_GRACE_HOURS * 3600,
        dry_run=request.dry_run,
    )
    logger.info(
        "image retention",
        extra={**summary(report), "deleted_images": [e["digest"] for e in report["deleted"]]},
    )
    return report
