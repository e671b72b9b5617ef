"""A running Kubernetes API stand-in and official-client factories for the integration tests."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from modelops.adapters.eks import make_token

from modelops_local.kube import KubeApiServer, KubeStore

TOKENS = {"admin-token": "admin", "deployer-token": "deployer"}


def deployment_body(
    name: str = "churn-stable", image: str = "repo/model:1", replicas: int = 2
) -> dict[str, Any]:
    labels = {"app": "churn", "variant": name.rsplit("-", 1)[-1]}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": dict(labels)},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(labels)},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "containers": [
                        {
                            "name": "model",
                            "image": image,
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
    """deployment(name="churn-stable", image="repo/model:1", replicas=2): a Deployment body."""
    return deployment_body


@pytest.fixture
def store() -> KubeStore:
    kube = KubeStore()
    kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "models"}})
    return kube


@pytest.fixture
def server(store: KubeStore) -> Iterator[KubeApiServer]:
    api = KubeApiServer(store, authenticate=TOKENS.get).start()
    yield api
    api.stop()


@pytest.fixture
def ca_file(server: KubeApiServer, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    path.write_bytes(server.ca_pem)
    return str(path)


@pytest.fixture
def make_client(server: KubeApiServer, ca_file: str) -> Iterator[Callable[..., client.ApiClient]]:
    """make_client(token="admin-token") -> an official ApiClient against the stand-in (no retries)."""
    clients: list[client.ApiClient] = []

    def make(token: str = "admin-token") -> client.ApiClient:
        configuration = client.Configuration(
            host=server.url, ssl_ca_cert=ca_file, api_key={"authorization": "Bearer " + token}
        )
        configuration.retries = 0
        api_client = client.ApiClient(configuration)
        clients.append(api_client)
        return api_client

    yield make
    for api_client in clients:
        api_client.close()


@pytest.fixture
def apps(make_client) -> client.AppsV1Api:
    return client.AppsV1Api(make_client())


@pytest.fixture
def core(make_client) -> client.CoreV1Api:
    return client.CoreV1Api(make_client())


class _EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _echo(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        data = json.dumps(
            {
                "method": self.command,
                "path": self.path,
                "body": body,
                "authorization": self.headers.get("Authorization"),
                "content_type": self.headers.get("Content-Type"),
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Backend", "echo")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = _echo


@pytest.fixture
def echo_backend() -> Iterator[tuple[str, int]]:
    """A tiny HTTP backend on 127.0.0.1:<ephemeral> that echoes method, path and body as JSON."""
    backend = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)
    backend.daemon_threads = True
    thread = threading.Thread(target=backend.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield ("127.0.0.1", int(backend.server_address[1]))
    backend.shutdown()
    backend.server_close()
    thread.join(5)


def make_eks_token(sts: Any, cluster_name: str) -> str:
    """A token as `aws eks get-token` builds it (the product's own builder: the stand-in must accept
    exactly what the rollout function sends)."""
    return make_token(sts, cluster_name)


@pytest.fixture
def eks_token() -> Callable[[str], str]:
    import boto3

    sts = boto3.client(
        "sts", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    return lambda cluster: make_eks_token(sts, cluster)
