"""Builders shared by the Kubernetes stand-in's unit tests."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from modelops.adapters.eks import make_token

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
    """A token as `aws eks get-token` builds it (the product's own builder: the stand-in must accept
    exactly what the rollout function sends)."""
    return make_token(sts, cluster_name)


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
