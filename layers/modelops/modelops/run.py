"""The run: what ResolveRequest decides once and every later state reads, and what the states add.

The workflow carries these as JSON (`$.run`, `$.evaluation`, `$.package`, `$.build`); each handler
parses them once at its edge into the models below, so a step works on typed values and a payload
that drifted from this shape is refused with the field named, before anything changes.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from modelops.config import ModelConfig
from modelops.triggers import PipelineRequest


class _Payload(BaseModel):
    """A value the workflow carries between states: frozen."""

    model_config = ConfigDict(frozen=True)

    def to_payload(self) -> dict[str, Any]:
        """The JSON-ready form the state machine carries (config field names as documented)."""
        return self.model_dump(mode="json", by_alias=True)


class _Shape(_Payload):
    """A payload whose unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetObject(_Shape):
    """The object this run trains on."""

    bucket: str = Field(min_length=1)
    key: str = Field(min_length=1)
    version_id: str | None = None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


class Champion(BaseModel):
    """The version in production, as `RecordSuccess` stored it (the CHAMPION document)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    version: str | None = None
    image: str | None = None
    model_artifact: str | None = None
    metric: str | None = None
    value: float | None = None
    run_id: str | None = None
    promoted_at: str | None = None
    # Where the version's drift baseline is (EvaluationResult.baseline), when it has one.
    baseline: dict[str, Any] | None = None


class Limits(_Shape):
    training_polls: int = Field(ge=1)
    judge_polls: int = Field(default=1, ge=1)


class CanaryTimes(_Shape):
    bake_seconds: int = Field(ge=0)
    watch_seconds: int = Field(ge=0)


class RunRef(_Payload):
    """Who is running and with which config: all a rollout action or the clean-up needs.

    Unknown fields are ignored, so a whole `Run` parses as a `RunRef` too."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    run_id: str = Field(min_length=1)
    model: str = Field(min_length=1)
    config: ModelConfig


class Restore(_Shape):
    """A version brought back (`modelops rollback --to`): as recorded when its run promoted it."""

    version: str
    image: str
    package_arn: str
    group: str
    model_artifact: str | None = None
    metric: str | None = None
    value: float | None = None
    # The rows its own run smoke-tested its canary with (a missing value is null).
    smoke_sample: list[list[float | str | None]]
    now: bool = False
    reason: str = ""
    requested_by: str = ""


class Run(RunRef):
    """The run context (`$.run`): built by ResolveRequest, read by every later state."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stack: str = Field(min_length=1)
    request: PipelineRequest
    dataset: DatasetObject
    # The CreateTrainingJob request, passed field by field to `sagemaker:createTrainingJob`.
    training: dict[str, Any]
    champion: Champion | None = None
    poll_seconds: int = Field(ge=0)
    limits: Limits
    canary: CanaryTimes
    # When a judge job scores the candidate (a team image's; steps/training.needs_judge): the
    # stack's own training image and the judge job's name. None: the training job judged itself.
    judge_image: str | None = None
    judge_job_name: str | None = None
    # A restore run (trigger "restore"): the version it brings back; it trains and builds nothing.
    restore: Restore | None = None

    @property
    def training_job_name(self) -> str:
        return str(self.training["TrainingJobName"])

    @property
    def training_image(self) -> str:
        return str(self.training["AlgorithmSpecification"]["TrainingImage"])


class EvaluationResult(_Shape):
    """EvaluateModel's verdict (`$.evaluation`): candidate versus champion on the same holdout."""

    decision: Literal["better", "not_better"]
    metric: str
    candidate: float
    champion: float | None = None
    improvement: float | None = None
    reason: str
    model_artifact: str
    n_validation: int = Field(ge=0)
    # The drift baseline: {"artifact": the model.tar.gz holding baseline.json, "features", ...},
    # or {"artifact": None, "note": why there is none}; None from a run before baselines.
    baseline: dict[str, Any] | None = None


class Package(_Shape):
    """RegisterModel's result (`$.package`): the version in the model package group."""

    version: str
    package_arn: str
    group: str


class Build(_Shape):
    """StartBuild / CheckBuild's result (`$.build`); `image` is pinned by digest once done."""

    build_id: str
    tag: str
    done: bool = False
    phase: str | None = None
    digest: str | None = None
    image: str | None = None


class RunState(BaseModel):
    """The whole workflow state (`$`) a Record* state passes to `finish`; other states' results
    (polls, statuses) are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    run: Run
    lock: dict[str, Any] | None = None
    dataset: dict[str, Any] | None = None
    evaluation: EvaluationResult | None = None
    package: Package | None = None
    build: Build | None = None
    analysis: dict[str, Any] | None = None
    # The bake's and the approval wait's results: a person's decision (`modelops promote` /
    # `approve`: approved_by, approved_at, via) when they ended in success, else the timeout.
    bake: dict[str, Any] | None = None
    approval: dict[str, Any] | None = None
    error: dict[str, Any] | None = None

    @property
    def decision(self) -> dict[str, Any] | None:
        """Who let this version through to promotion, if a person did (approve or promote)."""
        for result in (self.approval, self.bake):
            if isinstance(result, dict) and "approved_by" in result:
                return result
        return None
