"""The serving image's package, importable from serving_image/ as in the unit tests, and the
`serve` program as a process for the tests here (`start_server`)."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.unit.serving.conftest import SERVING_IMAGE


@dataclass
class Server:
    process: subprocess.Popen[str]
    port: int
    stderr_path: Path
    stdout_lines: queue.Queue[str] = field(default_factory=queue.Queue)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def request(
        self, method: str, path: str, body: bytes | None = None, content_type: str | None = None
    ) -> tuple[int, dict]:
        req = urllib.request.Request(self.url(path), data=body, method=method)
        if content_type:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def predict(self, rows: list[list[float]]) -> tuple[int, dict]:
        return self.request(
            "POST", "/invocations", json.dumps({"instances": rows}).encode(), "application/json"
        )

    def emf_documents(self, want_requests: int, timeout: float = 10.0, want_predicted: int = 0) -> list[dict]:
        """EMF documents from stdout until they account for `want_requests` requests and, in the
        drift statistics' `PredictionBins`, `want_predicted` predicted rows (bounded)."""
        deadline = time.monotonic() + timeout
        docs: list[dict] = []

        def predicted() -> int:
            return sum(d["PredictionBins"]["Count"] for d in docs if "PredictionBins" in d)

        while sum(d.get("Requests", 0) for d in docs) < want_requests or predicted() < want_predicted:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"EMF lines for {want_requests} requests not seen in {timeout}s; got {docs}")
            try:
                docs.append(json.loads(self.stdout_lines.get(timeout=remaining)))
            except queue.Empty:
                continue
        return docs


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def _ping(server: Server) -> int:
    try:
        return server.request("GET", "/ping")[0]
    except (urllib.error.URLError, ConnectionError):
        return 0


class Servers:
    """`serve` processes started for tests, their port files and logs in `folder`; `stop()` kills
    what still runs."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.started: list[Server] = []

    def start(self, base: Path, wait_ready: bool = True, **env: str) -> Server:
        port_file = self.folder / f"port-{len(self.started)}"
        stderr_path = self.folder / f"serve-{len(self.started)}.log"
        process = subprocess.Popen(
            [sys.executable, str(SERVING_IMAGE / "bin" / "serve")],
            env={
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "SAGEMAKER_BASE_DIR": str(base),
                "PORT": "0",
                "SERVE_HOST": "127.0.0.1",
                "SERVE_PORT_FILE": str(port_file),
                "EMF_FLUSH_SECONDS": "0.2",
                "MODELOPS_MODEL": "churn",
                "MODELOPS_VARIANT": "canary",
                "MODELOPS_VERSION": "7",
                **env,
            },
            stdout=subprocess.PIPE,
            stderr=stderr_path.open("w"),
            text=True,
        )
        port = int(
            _wait_for(lambda: port_file.exists() and port_file.read_text().strip(), 20, "the port file")
        )
        server = Server(process, port, stderr_path)
        assert process.stdout is not None
        stdout = process.stdout

        def pump() -> None:
            for line in stdout:
                server.stdout_lines.put(line)

        threading.Thread(target=pump, daemon=True).start()
        self.started.append(server)
        if wait_ready:
            _wait_for(lambda: _ping(server) == 200, 30, "/ping 200")
        return server

    def stop(self) -> None:
        for server in self.started:
            if server.process.poll() is None:
                server.process.kill()
            server.process.wait(timeout=10)


@pytest.fixture
def start_server(tmp_path) -> Iterator:
    servers = Servers(tmp_path)
    yield servers.start
    servers.stop()
