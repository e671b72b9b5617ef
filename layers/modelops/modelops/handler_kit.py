"""What every handler shares: powertools Logger and Tracer, and environment parsing.

Handlers stay thin: parse the event (pydantic), call one domain function, return. Environment
variables are a pydantic model checked on first use, so a missing variable is a clear ConfigError
naming it rather than a KeyError deep in the code.
"""

from __future__ import annotations

import functools
import os
from typing import TypeVar

from aws_lambda_powertools import Logger, Tracer
from pydantic import BaseModel, ConfigDict, ValidationError

from modelops.config import format_validation_error
from modelops.errors import ConfigError

logger = Logger()
tracer = Tracer()

E = TypeVar("E", bound=BaseModel)


class BaseEnv(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    TABLE_NAME: str
    STACK_NAME: str


@functools.cache
def _env_cached(model: type[BaseModel], items: tuple[tuple[str, str], ...]) -> BaseModel:
    try:
        return model.model_validate(dict(items))
    except ValidationError as exc:
        raise ConfigError(f"function environment is invalid: {format_validation_error(exc)}") from None


def env(model: type[E]) -> E:
    """Parse os.environ into `model` (cached per distinct environment)."""
    names = model.model_fields.keys()
    items = tuple(sorted((k, v) for k, v in os.environ.items() if k in names))
    return _env_cached(model, items)  # type: ignore[return-value]
