"""The `serve` program as a process: HTTP on an ephemeral loopback port, EMF lines on stdout."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
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

from modelops_local.sample_data import CHURN_FEATURES, CHURN_LABEL, generate_churn_csv

ROOT = Path(__file__).resolve().parents[3]
SERVING_IMAGE = ROOT / "serving_image"
ROW = [10, 80.5, 2, 30.0, 1, 0]


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

    def emf_documents(self, want_requests: int, timeout: float = 10.0) -> list[dict]:
        """EMF documents from stdout until they account for `want_requests` requests (bounded)."""
        deadline = time.monotonic() + timeout
        docs: list[dict] = []
        while sum(d.get("Requests", 0) for d in docs) < want_requests:
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


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory) -> Path:
    """A model folder produced by the real `train` program (run as SageMaker would run it)."""
    base = tmp_path_factory.mktemp("ml")
    (base / "input" / "config").mkdir(parents=True)
    (base / "input" / "config" / "hyperparameters.json").write_text(
        json.dumps(
            {
                "label_column": CHURN_LABEL,
                "feature_columns": json.dumps(list(CHURN_FEATURES)),
                "max_iter": "10",
            }
        )
    )
    generate_churn_csv(base / "input" / "data" / "train" / "customers.csv", 200, seed=5)
    subprocess.run(
        [sys.executable, str(SERVING_IMAGE / "bin" / "train")],
        env={**os.environ, "SAGEMAKER_BASE_DIR": str(base)},
        check=True,
        capture_output=True,
        timeout=120,
    )
    return base


def _variant(trained_model: Path, tmp_path: Path, **faults: float) -> Path:
    """A copy of the trained model whose metadata carries demo fault settings."""
    base = tmp_path / "ml"
    shutil.copytree(trained_model / "model", base / "model")
    meta_path = base / "model" / "metadata.json"
    meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), **faults}))
    return base


@pytest.fixture
def start_server(tmp_path) -> Iterator:
    started: list[Server] = []

    def start(base: Path, wait_ready: bool = True, **env: str) -> Server:
        port_file = tmp_path / f"port-{len(started)}"
        stderr_path = tmp_path / f"serve-{len(started)}.log"
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
        started.append(server)
        if wait_ready:
            _wait_for(lambda: _ping(server) == 200, 30, "/ping 200")
        return server

    yield start
    for server in started:
        if server.process.poll() is None:
            server.process.kill()
        server.process.wait(timeout=10)


def test_ping_and_predictions_over_json_and_csv(trained_model, start_server):
    # Given a serving process for a trained model
    server = start_server(trained_model)

    # When /ping is called
    status, doc = server.request("GET", "/ping")

    # Then it is ready and reports its version
    assert (status, doc) == (200, {"status": "ready", "model_version": "7"})

    # And JSON lists, JSON objects and CSV rows all predict one probability per row
    status, doc = server.predict([ROW, ROW])
    assert status == 200 and len(doc["predictions"]) == 2 and doc["model_version"] == "7"
    by_name = {"instances": [dict(zip(CHURN_FEATURES, ROW, strict=True))]}
    status, named = server.request("POST", "/invocations", json.dumps(by_name).encode(), "application/json")
    assert status == 200 and named["predictions"] == doc["predictions"][:1]
    csv_body = ("\n".join(",".join(map(str, ROW)) for _ in range(3)) + "\n").encode()
    status, from_csv = server.request("POST", "/invocations", csv_body, "text/csv")
    assert status == 200 and from_csv["predictions"] == doc["predictions"][:1] * 3


def test_bad_requests_get_400_or_415_with_a_clear_message(trained_model, start_server):
    server = start_server(trained_model)
    status, doc = server.predict([ROW[:4]])
    assert status == 400 and "the model expects 6 features" in doc["error"]
    status, doc = server.request("POST", "/invocations", b"1,2,3", "application/xml")
    assert status == 415 and "application/xml" in doc["error"]
    status, doc = server.request("GET", "/nope")
    assert status == 404


def test_emf_lines_count_requests_errors_and_latency(trained_model, start_server):
    # Given a serving process
    server = start_server(trained_model)

    # When it serves 5 good and 2 bad requests
    for _ in range(5):
        assert server.predict([ROW])[0] == 200
    for _ in range(2):
        assert server.predict([ROW[:2]])[0] == 400

    # Then stdout carries only EMF documents that add up to those requests (4xx are not errors)
    docs = server.emf_documents(want_requests=7)
    for doc in docs:
        directive = doc["_aws"]["CloudWatchMetrics"][0]
        assert directive["Namespace"] == "ModelOps"
        assert directive["Dimensions"] == [["Model", "Variant"], ["Model", "Variant", "Version"]]
        assert all(m["StorageResolution"] == 1 for m in directive["Metrics"])
        assert isinstance(doc["_aws"]["Timestamp"], int)
        assert (doc["Model"], doc["Variant"], doc["Version"]) == ("churn", "canary", "7")
    assert sum(d["Requests"] for d in docs) == 7
    assert sum(d["Errors"] for d in docs) == 0
    assert sum(len(d["Latency"]) for d in docs) == 7
    assert all(v >= 0 for d in docs for v in d["Latency"])


def test_a_bad_version_fails_and_slows_requests_as_its_metadata_says(trained_model, start_server, tmp_path):
    # Given a version trained with the demo faults: every request fails after 120 ms
    server = start_server(_variant(trained_model, tmp_path, fault_error_rate=1.0, fault_latency_ms=120))

    # When it is called
    started = time.monotonic()
    results = [server.predict([ROW]) for _ in range(4)]

    # Then every request is a 500 that took at least the injected latency
    assert [status for status, _ in results] == [500] * 4
    assert "injected fault" in results[0][1]["error"]
    assert time.monotonic() - started >= 4 * 0.12
    # And the metrics show the errors, which is what trips the canary's alarms
    docs = server.emf_documents(want_requests=4)
    assert sum(d["Errors"] for d in docs) == 4
    assert min(v for d in docs for v in d["Latency"]) >= 120


def test_ping_is_503_without_a_model(start_server, tmp_path):
    # Given a model folder with nothing in it
    (tmp_path / "empty" / "model").mkdir(parents=True)
    server = start_server(tmp_path / "empty", wait_ready=False)

    # Then the server runs but is not ready, and says why
    status, doc = _wait_for(
        lambda: (r := server.request("GET", "/ping"))[1].get("status") == "failed" and r,
        20,
        "the load to fail",
    )
    assert status == 503 and "metadata.json not found" in doc["error"]
    assert server.predict([ROW])[0] == 503


def test_sigterm_flushes_metrics_and_exits_cleanly(trained_model, start_server):
    # Given a server with a long flush interval and some traffic
    server = start_server(trained_model, EMF_FLUSH_SECONDS="60")
    for _ in range(3):
        server.predict([ROW])

    # When Kubernetes stops the pod
    server.process.send_signal(signal.SIGTERM)

    # Then it exits 0 and the pending metrics are written before it goes
    assert server.process.wait(timeout=15) == 0
    assert sum(d["Requests"] for d in server.emf_documents(want_requests=3)) == 3
    assert "shutting down" in server.stderr_path.read_text()


def test_every_answer_names_the_variant_and_version_that_served_it(trained_model, start_server):
    # Given a canary serving process for version 7
    server = start_server(trained_model)

    # When a prediction and a bad request are sent
    import http.client

    answers = []
    for body in (json.dumps({"instances": [ROW]}).encode(), b"not json"):
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        connection.request("POST", "/invocations", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        answers.append(
            (
                response.status,
                response.getheader("X-Modelops-Variant"),
                response.getheader("X-Modelops-Version"),
            )
        )
        connection.close()

    # Then both carry the variant and version, errors included (clients attribute failures to a variant)
    assert answers == [(200, "canary", "7"), (400, "canary", "7")]
