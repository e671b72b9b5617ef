"""Helpers for the controller/Service tests: a tiny fake serving image, manifests, bounded waits."""

from __future__ import annotations

import copy
import http.client
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelops_local.kube import KubeStore
from tests import waiting

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/fake@sha256:" + "a" * 64
IMAGE_V2 = "123456789012.dkr.ecr.us-east-1.amazonaws.com/fake@sha256:" + "b" * 64
MISSING_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/fake@sha256:" + "f" * 64

# The fake image's `serve`: the container contract (PORT, SERVE_HOST, SERVE_PORT_FILE), GET /ping,
# POST /invocations answering with the pod's name, and env knobs FAKE_CRASH=1 (exit at start),
# FAKE_READY_DELAY=<s> (503 on /ping until then), FAKE_UNHEALTHY_AFTER=<s> (500 from then on).
# Drains in-flight requests on SIGTERM.
FAKE_SERVE = r"""#!/usr/bin/env python3
import json, os, signal, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

if os.environ.get("FAKE_CRASH") == "1":
    print("crashing on purpose", file=sys.stderr)
    sys.exit(3)
POD = os.environ.get("POD_NAME") or os.environ.get("HOSTNAME", "?")
READY_AT = time.monotonic() + float(os.environ.get("FAKE_READY_DELAY") or 0)
SICK_AT = time.monotonic() + float(os.environ.get("FAKE_UNHEALTHY_AFTER") or 1e9)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, code, doc):
        data = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        now = time.monotonic()
        self.reply(500 if now >= SICK_AT else 200 if now >= READY_AT else 503, {"pod": POD})

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        print(json.dumps({"pod": POD, "invocations": 1}), flush=True)
        self.reply(200, {"pod": POD, "version": os.environ.get("MODELOPS_VERSION"), "echo": body.decode()})


server = ThreadingHTTPServer((os.environ["SERVE_HOST"], int(os.environ["PORT"])), Handler)
server.daemon_threads = False  # server_close() waits for in-flight requests
tmp = os.environ["SERVE_PORT_FILE"] + ".tmp"
with open(tmp, "w") as f:
    f.write(str(server.server_address[1]))
os.replace(tmp, os.environ["SERVE_PORT_FILE"])
print(json.dumps({"pod": POD, "started": True}), flush=True)
signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
server.serve_forever(poll_interval=0.05)
server.server_close()
"""


def fake_rootfs(root: Path) -> Path:
    """A rootfs folder holding the fake image (opt/program/bin/serve, an empty opt/ml/model)."""
    program = root / "opt" / "program" / "bin"
    program.mkdir(parents=True, exist_ok=True)
    (program / "serve").write_text(FAKE_SERVE)
    (root / "opt" / "ml" / "model").mkdir(parents=True, exist_ok=True)
    return root


def image_resolver(images: dict[str, Path]) -> Callable[[str], Path]:
    def resolve(reference: str) -> Path:
        if reference not in images:
            raise LookupError(f"manifest unknown: {reference}")
        return images[reference]

    return resolve


def deployment(
    name: str,
    *,
    replicas: int = 1,
    app: str = "churn",
    variant: str = "stable",
    image: str = IMAGE,
    env: dict[str, str] | None = None,
    max_surge: int | str = 1,
    max_unavailable: int | str = 0,
    progress_deadline: int = 60,
    strategy: str = "RollingUpdate",
    namespace: str = "models",
) -> dict[str, Any]:
    """A Deployment shaped like serving_image/k8s/10-deployment-stable.yaml, with 1 s probes."""
    labels = {"app": app, "variant": variant}
    probe = {"httpGet": {"path": "/ping", "port": "http"}, "periodSeconds": 1, "failureThreshold": 2}
    variables = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "MODELOPS_VARIANT", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['variant']"}}},
        {"name": "PORT", "value": "8080"},
        *({"name": k, "value": v} for k, v in (env or {}).items()),
    ]
    rolling = {"rollingUpdate": {"maxSurge": max_surge, "maxUnavailable": max_unavailable}}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "replicas": replicas,
            "progressDeadlineSeconds": progress_deadline,
            "strategy": {"type": strategy, **(rolling if strategy == "RollingUpdate" else {})},
            "selector": {"matchLabels": dict(labels)},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "terminationGracePeriodSeconds": 30,
                    "containers": [
                        {
                            "name": "model",
                            "image": image,
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "env": variables,
                            "startupProbe": dict(copy.deepcopy(probe), failureThreshold=30),
                            "readinessProbe": copy.deepcopy(probe),
                            "livenessProbe": dict(copy.deepcopy(probe), failureThreshold=3),
                        }
                    ],
                },
            },
        },
    }


def service(name: str, selector: dict[str, str], namespace: str = "models") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": selector, "ports": [{"name": "http", "port": 8080, "targetPort": "http"}]},
    }


def wait_for(what: str, check: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05) -> Any:
    """Poll `check` until it returns something truthy; AssertionError naming `what` after `timeout`."""
    return waiting.wait_for(check, what, timeout, interval)


def pods_of(store: KubeStore, selector: str, namespace: str = "models") -> list[dict[str, Any]]:
    return store.list("pods", namespace, label_selector=selector)


def ready(pod: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def ready_pods(store: KubeStore, selector: str, namespace: str = "models") -> list[dict[str, Any]]:
    """Ready, non-terminating pods (what a Service would route to)."""
    return [
        p
        for p in pods_of(store, selector, namespace)
        if ready(p) and not p["metadata"].get("deletionTimestamp")
    ]


def post(url: str, body: bytes = b"[1]", timeout: float = 5.0) -> tuple[int, dict[str, Any]]:
    """One POST /invocations on a fresh connection: (status, JSON answer)."""
    host, _, port = url.removeprefix("http://").partition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        connection.request("POST", "/invocations", body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


class LocalCluster:
    """A store + LocalController + ServiceProxies over the fake image (fast timings), for one test."""

    def __init__(self, root: Path, **controller_options: Any) -> None:
        from modelops_local.kube.controller import LocalController
        from modelops_local.kube.services import ServiceProxies

        self.store = KubeStore()
        self.store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "models"}})
        self.images = {IMAGE: fake_rootfs(root / "image-v1"), IMAGE_V2: fake_rootfs(root / "image-v2")}
        self.lines: list[tuple[str, str]] = []
        options = {
            "backoff_scale": 0.02,
            "probe_scale": 0.2,
            "max_grace_seconds": 2.0,
            "resync_seconds": 0.1,
            **controller_options,
        }
        self.state_dir = root / "state"
        self.controller = LocalController(
            self.store,
            image_resolver(self.images),
            state_dir=self.state_dir,
            on_stdout_line=lambda meta, line: self.lines.append((meta["name"], line)),
            **options,
        )
        self.services = ServiceProxies(self.store)

    def __enter__(self) -> LocalCluster:
        self.services.start()
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop(timeout=5)
        self.services.stop()

    def deployment(self, name: str) -> dict[str, Any]:
        return self.store.get("deployments", "models", name)

    def rollout(self, name: str, image: str | None = None):
        from modelops.deployments import rollout_status

        return rollout_status(self.deployment(name), container="model", expected_image=image)

    def wait_rolled_out(self, name: str, timeout: float = 15.0) -> None:
        wait_for(f"{name} rolled out", lambda: self.rollout(name).done, timeout)

    def set_image(self, name: str, image: str) -> None:
        patch = [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": image}]
        self.store.patch("deployments", "models", name, patch, "application/json-patch+json")

    def scale(self, name: str, replicas: int) -> None:
        self.store.patch(
            "deployments", "models", name, {"spec": {"replicas": replicas}}, "application/merge-patch+json"
        )
