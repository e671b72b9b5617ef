"""EvaluateModel (candidate versus champion from the training or judge job's evaluation.json),
PrepareJudge (the judge job's request) and ExplainTrainingFailure / ExplainJudgeFailure."""

from __future__ import annotations

from typing import Any, Literal

from modelops.handler_kit import logger, tracer
from modelops.run import Run
from modelops.steps.evaluation import evaluate
from modelops.steps.training import explain_training_failure, prepare_judge
from modelops.wiring import services
from pydantic import BaseModel, ConfigDict


class Event(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["evaluate", "explain_failure", "prepare_judge"]
    run: Run
    job: Literal["training", "judge"] = "training"  # explain_failure: which job failed


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    parsed = Event.model_validate(event)
    ports = services()
    if parsed.action == "explain_failure":  # always raises
        explain_training_failure(parsed.run, jobs=ports.training_jobs(), judge=parsed.job == "judge")
    if parsed.action == "prepare_judge":
        return prepare_judge(parsed.run, jobs=ports.training_jobs())
    return evaluate(parsed.run, jobs=ports.training_jobs(), objects=ports.objects()).to_payload()
