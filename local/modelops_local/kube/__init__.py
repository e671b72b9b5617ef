"""A small, faithful Kubernetes API server for the subset modelops uses.

    store = KubeStore()                                   # thread-safe, usable in-process
    server = KubeApiServer(store, authenticate=EksTokenValidator("demo", {"testing": "testing"}))
    server.start()                                        # https://127.0.0.1:<ephemeral port>
    server.service_backend = resolver                     # (ns, service, port) -> (host, port) | None
    server.faults.add("patch", "deployments", status=503) # explicit fault injection for tests
    server.stop()

See store.py for the semantics (resourceVersion, generation, conflicts, patches, subresources),
server.py for HTTP, auth.py for EKS tokens.
"""

from modelops_local.kube.auth import EksTokenValidator, TokenRejectedError
from modelops_local.kube.errors import (
    AlreadyExistsError,
    BadRequestError,
    ConflictError,
    ForbiddenError,
    InvalidError,
    KubeApiError,
    MethodNotAllowedError,
    NotFoundError,
    ServiceUnavailableError,
    UnauthorizedError,
    UnsupportedMediaTypeError,
)
from modelops_local.kube.faults import Fault, FaultInjector
from modelops_local.kube.patch import JSON_PATCH, MERGE_PATCH
from modelops_local.kube.proxy import ServiceBackend
from modelops_local.kube.resources import UnknownResourceError
from modelops_local.kube.server import KubeApiServer
from modelops_local.kube.store import DeleteResult, KubeStore

__all__ = [
    "JSON_PATCH",
    "MERGE_PATCH",
    "AlreadyExistsError",
    "BadRequestError",
    "ConflictError",
    "DeleteResult",
    "EksTokenValidator",
    "Fault",
    "FaultInjector",
    "ForbiddenError",
    "InvalidError",
    "KubeApiError",
    "KubeApiServer",
    "KubeStore",
    "MethodNotAllowedError",
    "NotFoundError",
    "ServiceBackend",
    "ServiceUnavailableError",
    "TokenRejectedError",
    "UnauthorizedError",
    "UnknownResourceError",
    "UnsupportedMediaTypeError",
]
