"""Builders shared by the Kubernetes stand-in's unit tests."""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable
from typing import Any

import boto3
import pytest

from modelops_local.kube import KubeStore


def deployment_body(
    name: str = "churn-stable", *, namespace: str = "models", image: str = "repo/model:1"
) -> dict[str, Any]:
    """A valid apps/v1 Deployment with two containers (model + sidecar)."""
    labels = {"app": "churn", "variant": name.rsplit("-", 1)[-1]}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": dict(labels)},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "containers": [
                        {
                            "name": "model",
                            "image": image,
                            "ports": [{"containerPort": 8080}],
                            "env": [{"name": "MODELOPS_VERSION", "value": "1"}],
                        },
                        {"name": "sidecar", "image": "busybox:1.36"},
                    ]
                },
            },
        },
    }


@pytest.fixture
def deployment() -> Callable[..., dict[str, Any]]:
    return lambda *args, **kwargs: copy.deepcopy(deployment_body(*args, **kwargs))


@pytest.fixture
def store() -> KubeStore:
    """A store with the default namespaces plus `models`."""
    kube = KubeStore()
    kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "models"}})
    return kube


def _make_eks_token(sts: Any, cluster_name: str) -> str:
    """A token as `aws eks get-token` builds it: presigned GetCallerIdentity signing x-k8s-aws-id."""

    def add_cluster_header(request: Any, **_: Any) -> None:
        request.headers["x-k8s-aws-id"] = cluster_name

    sts.meta.events.register("before-sign.sts.GetCallerIdentity", add_cluster_header)
    try:
        url = sts.generate_presigned_url("get_caller_identity", Params={}, ExpiresIn=60, HttpMethod="GET")
    finally:
        sts.meta.events.unregister("before-sign.sts.GetCallerIdentity", add_cluster_header)
    return "k8s-aws-v1." + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


@pytest.fixture
def make_eks_token() -> Callable[..., str]:
    """make_eks_token(cluster, key="testing", secret="testing", endpoint=None, region="us-east-1", token=None)."""

    def make(
        cluster: str,
        *,
        key: str = "testing",
        secret: str = "testing",
        endpoint: str | None = None,
        region: str = "us-east-1",
        session_token: str | None = None,
    ) -> str:
        sts = boto3.client(
            "sts",
            region_name=region,
            endpoint_url=endpoint,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            aws_session_token=session_token,
        )
        return _make_eks_token(sts, cluster)

    return make
