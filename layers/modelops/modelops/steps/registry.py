"""RegisterModel: the accepted candidate becomes a new version in its SageMaker model package group.

Idempotent: a retried RegisterModel finds the version its run already registered."""

from __future__ import annotations

from modelops.ports import ModelRegistry
from modelops.run import EvaluationResult, Package, Run
from modelops.triggers import safe_name

#: A registered version's approval once its run ends (SageMaker Model Registry semantics).
APPROVAL_BY_STATUS = {
    "promoted": "Approved",
    "rolled_back": "Rejected",
    "rollback_failed": "Rejected",
    "failed": "Rejected",
}


def group_name(stack: str, model: str) -> str:
    """The model's package group: one per stack and model."""
    return safe_name(f"{stack}-{model}", 63)


def package_group(run: Run) -> str:
    return group_name(run.stack, run.model)


def register(run: Run, evaluation: EvaluationResult, *, registry: ModelRegistry) -> Package:
    group = package_group(run)
    registry.ensure_group(group, f"modelops versions of {run.model}")
    version = registry.find_version(group, run.run_id) or registry.create_version(
        group,
        description=f"run {run.run_id}: {evaluation.reason}",
        image=run.training_image,
        artifact=evaluation.model_artifact,
        metadata={
            "run_id": run.run_id,
            "metric": evaluation.metric,
            "candidate": str(evaluation.candidate),
            **(
                {"baseline": str(evaluation.baseline["artifact"])}
                if evaluation.baseline and evaluation.baseline.get("artifact")
                else {}
            ),
        },
    )
    return Package(version=version.version, package_arn=version.package_arn, group=group)
