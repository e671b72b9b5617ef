"""Explicit fault injection for tests: make the next N matching requests fail, stall or drop.

Off by default. A fault matches a request by verb (get, list, watch, create, update, patch, delete,
deletecollection) and resource as RBAC names it ("deployments", "deployments/scale",
"services/proxy"), optionally namespace and name; None matches anything.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass
class Fault:
    verb: str | None
    resource: str | None
    status: int | None = 500  # None: no error (a pure delay)
    times: int = 1  # how many matching requests it hits
    delay: float = 0.0  # seconds to stall before answering
    namespace: str | None = None
    name: str | None = None
    message: str | None = None
    retry_after: int | None = None  # seconds, sent as Retry-After and details.retryAfterSeconds
    disconnect: bool = False  # close the connection without an answer
    fired: int = 0  # how many requests it has hit so far

    def matches(self, verb: str, resource: str, namespace: str | None, name: str | None) -> bool:
        return (
            self.fired < self.times
            and self.verb in (None, verb)
            and self.resource in (None, resource)
            and self.namespace in (None, namespace)
            and self.name in (None, name)
        )


class FaultInjector:
    """The faults pending on one server; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(
        self,
        verb: str | None = None,
        resource: str | None = None,
        *,
        status: int | None = 500,
        times: int = 1,
        delay: float = 0.0,
        namespace: str | None = None,
        name: str | None = None,
        message: str | None = None,
        retry_after: int | None = None,
        disconnect: bool = False,
    ) -> Fault:
        """Arm a fault; returns it (its `fired` counts the requests it hit)."""
        if times < 1:
            raise ValueError("times must be at least 1")
        if status is None and not delay and not disconnect:
            raise ValueError("a fault needs a status, a delay or disconnect=True")
        fault = Fault(verb, resource, status, times, delay, namespace, name, message, retry_after, disconnect)
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, verb: str, resource: str, namespace: str | None, name: str | None) -> Fault | None:
        """The first armed fault matching this request, counted as fired; None if none."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(verb, resource, namespace, name):
                    fault.fired += 1
                    return fault
        return None

    @property
    def pending(self) -> list[Fault]:
        """Faults that have not yet hit all their requests."""
        with self._lock:
            return [f for f in self._faults if f.fired < f.times]

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
