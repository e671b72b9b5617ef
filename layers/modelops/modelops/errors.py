"""Named errors. The class name is the error name Step Functions sees (Lambda's errorType), so the
state machine's Retry and Catch clauses match on these names: rename one and the workflow changes.
"""

from __future__ import annotations


class ModelopsError(Exception):
    """Base class; never raised itself."""


# --- bad input: fail fast, nothing changed -----------------------------------------------------
class ConfigError(ModelopsError):
    """A model configuration document or the function's environment is invalid."""


class RequestError(ModelopsError):
    """A trigger (S3 event, schedule, manual input) is malformed or names nothing we serve."""


class UnknownModelError(ModelopsError):
    """The request names a model that has no stored configuration."""


class TrainingImageMissingError(ConfigError):
    """No training image: the stack's own was never built (`modelops bootstrap`) and none is configured."""


class DatasetInvalidError(ModelopsError):
    """The dataset cannot be parsed or does not match the model's schema."""


# --- training, evaluation, build ----------------------------------------------------------------
class TrainingFailedError(ModelopsError):
    """The training job failed, was stopped, or exceeded its max runtime."""


class EvaluationError(ModelopsError):
    """The evaluation file is missing or malformed."""


class DriftError(ModelopsError):
    """A drift baseline or the live counts cannot be compared (the message names what is wrong)."""


class BuildFailedError(ModelopsError):
    """The image build failed or produced no image digest."""


class BootstrapError(ModelopsError):
    """`modelops bootstrap` could not build or record the stack's training image (nothing recorded)."""


# --- Kubernetes ------------------------------------------------------------------------------------
class KubeForbiddenError(ModelopsError):
    """403: the functions' identity lacks an RBAC permission (named in the message)."""


class KubeNotFoundError(ModelopsError):
    """404: a Deployment or Service the model config names does not exist."""


class KubeConflictError(ModelopsError):
    """409 that persisted after re-reading and retrying."""


class KubeUnavailableError(ModelopsError):
    """5xx or timeout from the API server; retried with backoff by the state machine."""


class KubeInvalidError(ModelopsError):
    """422 or a failed JSON Patch `test`: the object is not what the model config says."""


class RolloutFailedError(ModelopsError):
    """A Deployment rollout cannot complete (ProgressDeadlineExceeded, wrong image, deadline)."""


class SmokeTestFailedError(ModelopsError):
    """The canary answered smoke predictions wrongly or not at all."""


class AbortRequestedError(ModelopsError):
    """`modelops abort` asked to roll the run's version back; its next rollout step stops and rolls back."""


class CommandRefusedError(ModelopsError):
    """A rollout command (approve, reject, promote, abort, rollback) that the model's state does not
    allow right now; nothing was changed."""


class RollbackFailedError(ModelopsError):
    """The stable Deployment could not be verified on its previous image. Page a human."""


# --- transient -------------------------------------------------------------------------------------
class TransientError(ModelopsError):
    """Throttling or a passing fault in an AWS call; safe to retry."""
