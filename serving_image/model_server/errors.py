"""Named errors of the train and serve programs. Messages name the file, column or field at fault."""

from __future__ import annotations


class TrainingError(Exception):
    """Training cannot proceed; the message becomes SageMaker's FailureReason."""


class HyperparameterError(TrainingError):
    """A hyperparameter is missing or has a bad value."""


class TrainingDataError(TrainingError):
    """The training channel's files do not match the hyperparameters (columns, values, labels)."""


class ChampionError(TrainingError):
    """The champion channel holds something that is not a model artifact of this image."""


class CandidateError(TrainingError):
    """Judge mode: the candidate channel holds no usable model of the model config's task and columns."""


class ModelLoadError(Exception):
    """A model directory cannot be served (missing or unreadable model or metadata)."""


class BadRequestError(Exception):
    """An /invocations request the server refuses; `status` is the HTTP status (400, 411, 413, 415)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
