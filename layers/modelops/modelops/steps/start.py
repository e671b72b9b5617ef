"""start_pipeline: a trigger (S3 upload, schedule, manual start) becomes one workflow execution."""

from __future__ import annotations

from typing import Any

from modelops.drift import DRIFT_DOC
from modelops.ports import Executions, Store
from modelops.steps.resolve import load_model
from modelops.triggers import PipelineRequest


def start_run(request: PipelineRequest, *, store: Store, executions: Executions) -> dict[str, Any]:
    """Start the workflow for `request` unless an execution with its name already exists (the name
    is the request's idempotency key). UnknownModelError before anything starts. A drift trigger
    carries the drift monitor's latest figures (the window that raised its alarm) into the run."""
    load_model(store, request.model)
    if request.trigger == "drift":
        figures = store.get_doc(request.model, DRIFT_DOC)
        if figures:
            headline = str(figures.get("headline") or "")
            request = request.model_copy(
                update={"drift": figures, "reason": f"{headline}; {request.reason}"[:500]}
            )
    name = request.execution_name()
    arn = executions.start(name, request.model_dump_json())
    if arn is None:
        return {
            "started": False,
            "execution_name": name,
            "reason": "duplicate: this trigger already started a run",
        }
    return {"started": True, "execution_name": name, "execution_arn": arn}
