"""boto3 clients with bounded timeouts and standard retries.

Endpoints come from the environment: boto3 honours AWS_ENDPOINT_URL (and per-service
AWS_ENDPOINT_URL_<SERVICE>), which is how the same code reaches AWS or the local runtime.
"""

from __future__ import annotations

import threading
from typing import Any

import boto3
from botocore.config import Config

_CONFIG = Config(
    connect_timeout=5,
    read_timeout=30,
    retries={"mode": "standard", "max_attempts": 5},
)


class _Clients:
    """One client per service, cached for the process (reused while the Lambda is warm).

    Every client comes from one boto3 session: a session reads botocore's data files (endpoints,
    partitions, retry rules) for itself, about 0.1 s of CPU, which a session per client paid again
    for every service a cold start touched. Clients are safe to share between threads; making them
    from one session is not, so they are made (once per service) under a lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._session: boto3.session.Session | None = None
        self._clients: dict[str, Any] = {}

    def __call__(self, service: str) -> Any:
        with self._lock:
            made = self._clients.get(service)
            if made is None:
                if self._session is None:
                    self._session = boto3.session.Session()
                made = self._clients[service] = self._session.client(service, config=_CONFIG)
            return made

    def cached_services(self) -> list[str]:
        """The services with a client, in the order they were made."""
        with self._lock:
            return list(self._clients)

    def cache_clear(self) -> None:
        """Forget every client and the session: the next ones read the environment again
        (credentials, region, endpoints)."""
        with self._lock:
            self._session = None
            self._clients = {}


client = _Clients()


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
