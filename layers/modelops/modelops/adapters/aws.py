"""boto3 clients with bounded timeouts and standard retries.

Endpoints come from the environment: boto3 honours AWS_ENDPOINT_URL (and per-service
AWS_ENDPOINT_URL_<SERVICE>), which is how the same code reaches AWS or the local runtime.
"""

from __future__ import annotations

import functools
from typing import Any

import boto3
from botocore.config import Config

_CONFIG = Config(
    connect_timeout=5,
    read_timeout=30,
    retries={"mode": "standard", "max_attempts": 5},
)


@functools.cache
def client(service: str) -> Any:
    """A cached client per service (module-level cache = reused while the Lambda is warm)."""
    return boto3.session.Session().client(service, config=_CONFIG)


def error_code(exc: Exception) -> str:
    """The AWS error code of a botocore ClientError ('' for anything else)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestThrottled",
        "ServiceUnavailable",
        "InternalFailure",
        "InternalServerError",
        "SlowDown",
    }
)
