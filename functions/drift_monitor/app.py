"""The drift monitor's schedule tick -> PSI of the model's live traffic against its baseline,
published as metrics (the drift alarm watches them) and stored for `modelops status`."""

from __future__ import annotations

from typing import Any

from modelops.handler_kit import logger, tracer
from modelops.steps.drift import monitor, parse_tick
from modelops.wiring import services


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: Any, context: Any) -> dict[str, Any]:
    tick = parse_tick(event)
    ports = services()
    result = monitor(tick, store=ports.store(), objects=ports.objects(), metrics=ports.drift_metrics())
    logger.info("drift checked", extra=result)
    return result
