"""EKS access for Lambdas: endpoint and CA from eks:DescribeCluster, a bearer token from a presigned
STS GetCallerIdentity URL (`k8s-aws-v1.` + base64url), as `aws eks get-token` makes it.

The token is valid 15 minutes on EKS; we cache it and the API client for 10 and refresh after.
Nothing here knows where the cluster runs: the endpoint is whatever DescribeCluster says.
"""

from __future__ import annotations

import base64
import contextlib
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any

TOKEN_PREFIX = "k8s-aws-v1."
TOKEN_TTL_SECONDS = 600  # EKS accepts 15 min; refresh well before
_PRESIGN_EXPIRES = 60
CLUSTER_ID_HEADER = "x-k8s-aws-id"


def make_token(sts_client: Any, cluster_name: str) -> str:
    """The bearer token EKS accepts for the identity behind `sts_client`: a presigned
    GetCallerIdentity URL that also signs the `x-k8s-aws-id` header naming the cluster, built
    through botocore's public presign and event APIs as `aws eks get-token` builds it."""

    def add_cluster_header(request: Any, **_: Any) -> None:
        request.headers[CLUSTER_ID_HEADER] = cluster_name

    event = "before-sign.sts.GetCallerIdentity"
    sts_client.meta.events.register(event, add_cluster_header)
    try:
        url = sts_client.generate_presigned_url(
            "get_caller_identity", Params={}, ExpiresIn=_PRESIGN_EXPIRES, HttpMethod="GET"
        )
    finally:
        sts_client.meta.events.unregister(event, add_cluster_header)
    return TOKEN_PREFIX + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


@dataclass
class _Cached:
    api_client: Any
    expires_at: float


class EksConnector:
    """Builds (and caches while warm) a kubernetes ApiClient for one cluster."""

    def __init__(
        self, cluster_name: str, eks_client: Any, sts_client: Any, *, clock: Any = time.monotonic
    ) -> None:
        self.cluster_name = cluster_name
        self.eks = eks_client
        self.sts = sts_client
        self.clock = clock
        self._cached: _Cached | None = None
        self._lock = threading.Lock()
        self._ca_file: str | None = None

    def api_client(self) -> Any:
        with self._lock:
            if self._cached is not None and self.clock() < self._cached.expires_at:
                return self._cached.api_client
            self._cached = _Cached(self._build(), self.clock() + TOKEN_TTL_SECONDS)
            return self._cached.api_client

    def invalidate(self) -> None:
        """Forget the cached client (after a 401: the token may have expired early)."""
        with self._lock:
            self._cached = None

    def _build(self) -> Any:
        from kubernetes import client as k8s  # imported here: ~0.3 s, only functions that talk to EKS pay it

        cluster = self.eks.describe_cluster(name=self.cluster_name)["cluster"]
        configuration = k8s.Configuration()
        configuration.host = cluster["endpoint"]
        ca_data = (cluster.get("certificateAuthority") or {}).get("data")
        if ca_data:
            if self._ca_file is None:
                with tempfile.NamedTemporaryFile(prefix="eks-ca-", suffix=".pem", delete=False) as handle:
                    handle.write(base64.b64decode(ca_data))
                self._ca_file = handle.name
            configuration.ssl_ca_cert = self._ca_file
            configuration.verify_ssl = True
        configuration.api_key = {"authorization": "Bearer " + make_token(self.sts, self.cluster_name)}
        configuration.retries = 0  # retries are ours (and the state machine's), with backoff
        return k8s.ApiClient(configuration)

    def __del__(self) -> None:  # pragma: no cover - best effort tidy-up of the CA temp file
        if self._ca_file and os.path.exists(self._ca_file):
            with contextlib.suppress(OSError):
                os.unlink(self._ca_file)
