"""AnalyzeCanary: judge the canary after its bake: alarms plus canary-versus-stable error rate and latency."""

from __future__ import annotations

from typing import Any

from modelops.handler_kit import logger, tracer
from modelops.run import Run
from modelops.steps.analysis import analyze_canary
from modelops.wiring import services
from pydantic import BaseModel, ConfigDict


class Event(BaseModel):
    model_config = ConfigDict(extra="forbid")
    run: Run


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    ports = services()
    return analyze_canary(Event.model_validate(event).run, store=ports.store(), metrics=ports.metrics())
