"""Explicit fault injection for tests: make the next N matching requests fail, stall or drop.

Off by default. A fault matches a request by verb (get, list, create, update, patch, delete)
and resource as RBAC names it ("deployments", "deployments/scale",
"services/proxy"), optionally namespace and name; None matches anything.

What a matching request meets, in order: `delay` seconds of stall (beyond the client's read timeout
it is a timeout on the client's side, while the server still goes on), `on_match()` (a test's hook:
e.g. kill the client mid-request), `rewrite(body)` (the parsed JSON body replaced by what it
returns: a patch that lands other than sent, e.g. a bad image or command), then either the answer
`status` (the request is not served) or, with `status=None`, the request served as usual.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


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
    rewrite: Callable[[Any], Any] | None = None  # the parsed JSON body -> the body served instead
    on_match: Callable[[], None] | None = None  # called (on the server's thread) when it hits
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
        rewrite: Callable[[Any], Any] | None = None,
        on_match: Callable[[], None] | None = None,
    ) -> Fault:
        """Arm a fault; returns it (its `fired` counts the requests it hit)."""
        if times < 1:
            raise ValueError("times must be at least 1")
        if status is None and not delay and not disconnect and rewrite is None and on_match is None:
            raise ValueError("a fault needs a status, a delay, disconnect=True, rewrite or on_match")
        fault = Fault(
            verb,
            resource,
            status,
            times,
            delay,
            namespace,
            name,
            message,
            retry_after,
            disconnect,
            rewrite,
            on_match,
        )
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

    def remove(self, fault: Fault) -> None:
        """Disarm one fault (whether or not it has hit all its requests)."""
        with self._lock:
            self._faults = [f for f in self._faults if f is not fault]
