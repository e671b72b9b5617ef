"""Forwarding for the service proxy path: one HTTP exchange with a backend chosen by a resolver."""

from __future__ import annotations

import http.client
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from modelops_local.kube.errors import ServiceUnavailableError

# Resolver: (namespace, service name, port as given in the URL or None) -> (host, port) of one ready
# backend, or None when the service has no endpoints.
ServiceBackend = Callable[[str, str, str | None], tuple[str, int] | None]

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "authorization",
        "content-length",
    }
)


@dataclass(frozen=True)
class ProxyResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def forward(
    method: str,
    host: str,
    port: int,
    path_and_query: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    *,
    scheme: str = "http",
    timeout: float = 30.0,
) -> ProxyResponse:
    """Send the request to the backend and return its answer (any status).

    ServiceUnavailableError (503) when the backend cannot be reached, worded like the API server.
    """
    if scheme == "https":
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(
            host, port, timeout=timeout, context=ssl._create_unverified_context()
        )
    else:
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.putrequest(method, path_and_query, skip_accept_encoding=True)
        for name, value in headers:
            if name.lower() not in HOP_BY_HOP:
                connection.putheader(name, value)
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body if body else None)
        response = connection.getresponse()
        data = response.read()
        kept = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
        return ProxyResponse(response.status, kept, data)
    except (OSError, http.client.HTTPException) as exc:
        raise ServiceUnavailableError(
            f"error trying to reach service: dial tcp {host}:{port}: {_why(exc)}"
        ) from None
    finally:
        connection.close()


def _why(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connect: connection refused"
    if isinstance(exc, TimeoutError):
        return "i/o timeout"
    return f"{type(exc).__name__}: {exc}"
