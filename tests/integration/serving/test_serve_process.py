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
from typing import Any

import pytest

from modelops_local.sample_data import CHURN_FEATURES, CHURN_LABEL, generate_churn_csv
from tests.serving_models import has_c_compiler
from tests.team_models import demo_team_model, with_step

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


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory) -> Path:
    """A model folder produced by the real `train` program (run as SageMaker would run it)."""
    base = tmp_path_factory.mktemp("ml")
    generate_churn_csv(base / "input" / "data" / "train" / "customers.csv", 200, seed=5)
    return _train(base, {"label_column": CHURN_LABEL, "feature_columns": json.dumps(list(CHURN_FEATURES))})


def _train(base: Path, hyperparameters: dict[str, str]) -> Path:
    """Run the `train` program (as SageMaker would) on the data already in base's train channel."""
    (base / "input" / "config").mkdir(parents=True)
    (base / "input" / "config" / "hyperparameters.json").write_text(
        json.dumps({**hyperparameters, "max_iter": "10"})
    )
    subprocess.run(
        [sys.executable, str(SERVING_IMAGE / "bin" / "train")],
        env={**os.environ, "SAGEMAKER_BASE_DIR": str(base)},
        check=True,
        capture_output=True,
        timeout=120,
    )
    return base


@pytest.fixture(scope="module")
def native_model(trained_model, tmp_path_factory) -> Path:
    """The trained model folder with the native predictor built into it, as the image build does."""
    if not has_c_compiler():
        pytest.skip("no C compiler: the native predictor cannot be built here")
    base = tmp_path_factory.mktemp("ml-native")
    shutil.copytree(trained_model / "model", base / "model")
    done = subprocess.run(
        [sys.executable, "-m", "model_server.native", "build", str(base / "model")],
        env={**os.environ, "PYTHONPATH": str(SERVING_IMAGE)},
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert "native predictor: built native/forest.so" in done.stdout, done.stdout + done.stderr
    return base


def _slow(trained_model: Path, tmp_path: Path, ms: int) -> Path:
    """A copy of the trained model behind a team step that takes `ms` per call (tests/model_code)."""
    base = tmp_path / "ml"
    with_step(trained_model / "model", base / "model", "slow_step", "pause", ms=ms)
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


def _positive(doc: dict[str, Any]) -> Any:
    """P(positive class) per row of a binary classifier's answer (its probabilities' 2nd column)."""
    import numpy as np

    assert len(doc["classes"]) == 2 and len(doc["probabilities"]) == len(doc["predictions"])
    return np.asarray(doc["probabilities"], dtype=np.float64)[:, 1]


def test_ping_and_predictions_over_json_and_csv(trained_model, start_server):
    # Given a serving process for a trained model
    server = start_server(trained_model)

    # When /ping is called
    status, doc = server.request("GET", "/ping")

    # Then it is ready and reports its version and predictor (scikit-learn may still be loading)
    assert doc.pop("predictor") in {"compiled", "scikit-learn"}
    assert (status, doc) == (200, {"status": "ready", "model_version": "7"})

    # And JSON lists, JSON objects and CSV rows all predict one probability per row
    status, doc = server.predict([ROW, ROW])
    assert status == 200 and len(doc["predictions"]) == 2 and doc["model_version"] == "7"
    by_name = {"instances": [dict(zip(CHURN_FEATURES, ROW, strict=True))]}
    status, named = server.request("POST", "/invocations", json.dumps(by_name).encode(), "application/json")
    assert status == 200 and named["probabilities"] == doc["probabilities"][:1]
    csv_body = ("\n".join(",".join(map(str, ROW)) for _ in range(3)) + "\n").encode()
    status, from_csv = server.request("POST", "/invocations", csv_body, "text/csv")
    assert status == 200 and from_csv["probabilities"] == doc["probabilities"][:1] * 3


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
    every = server.emf_documents(want_requests=7, want_predicted=5)
    docs = [d for d in every if "Requests" in d]
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
    # And the rest are the drift statistics of the 5 predicted rows: a histogram per feature and
    # one of the predictions (the 2 refused requests were never predicted)
    drift = [d for d in every if "Requests" not in d]
    per_feature: dict[str, int] = {}
    for doc in drift:
        if "FeatureBins" in doc:
            per_feature[doc["Feature"]] = per_feature.get(doc["Feature"], 0) + doc["FeatureBins"]["Count"]
    assert len(per_feature) == len(ROW) and set(per_feature.values()) == {5}
    assert sum(d["PredictionBins"]["Count"] for d in drift if "PredictionBins" in d) == 5


def test_a_model_that_fails_on_new_customers_answers_500_for_them_and_counts_the_errors(
    start_server, tmp_path
):
    # Given the demo team's bad version (its feature step takes log(tenure)), trained by its script
    demo_team_model(tmp_path / "ml")
    server = start_server(tmp_path / "ml")
    customer, new_customer = [10, 80, 2, 30, 1, 0], [0, 80, 2, 30, 1, 0]

    # When existing and new customers are asked about
    results = [server.predict([row]) for row in (customer, new_customer, customer, new_customer)]

    # Then every new customer is a 500 naming the model's error, the others are answered
    assert [status for status, _ in results] == [200, 500, 200, 500]
    assert results[1][1] == {"error": "prediction failed: ValueError: math domain error"}
    # And the metrics show the errors, which is what trips the canary's alarms
    docs = server.emf_documents(want_requests=4)
    assert sum(d.get("Errors", 0) for d in docs) == 2  # the drift statistics' lines carry none


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


# --- the serving contract: shapes, equality with the original model, errors, draining ------------


def _holdout(n: int, seed: int = 99) -> list[list[float]]:
    """Feature rows the model never saw (a different seed from training)."""
    from modelops_local.sample_data import churn_rows

    return [[float(r[f]) for f in CHURN_FEATURES] for r in churn_rows(n, seed, 0.0)]


def _original_probabilities(trained_model: Path, rows: list[list[float]]):
    import joblib
    import numpy as np

    estimator = joblib.load(trained_model / "model" / "model.joblib")
    return estimator, estimator.predict_proba(np.asarray(rows))[:, 1]


def _wait_sklearn_loaded(server: Server) -> None:
    _wait_for(lambda: "model loaded in" in server.stderr_path.read_text(), 30, "scikit-learn to load")


@pytest.mark.parametrize(
    ("folder", "predictor"), [("trained_model", "scikit-learn"), ("native_model", "native")]
)
def test_predictions_equal_the_original_models_for_single_rows_batches_json_and_csv(
    trained_model, start_server, request, folder, predictor
):
    # Given a serving process with its fast predictor (the compiled Python forest, or the native
    # one the image build made) and scikit-learn loaded
    import numpy as np

    server = start_server(request.getfixturevalue(folder))
    _wait_sklearn_loaded(server)
    assert server.request("GET", "/ping")[1]["predictor"] == predictor
    # (the native predictor answers alone: scikit-learn is never imported next to it)
    assert ("scikit-learn is not loaded" in server.stderr_path.read_text()) == (predictor == "native")
    rows = _holdout(500)
    estimator, want = _original_probabilities(trained_model, rows)

    # When the held-out rows are sent one by one, as one JSON batch, and as one CSV body
    singles = [_positive(server.predict([row])[1])[0] for row in rows[:40]]
    status, batch = server.predict(rows)
    assert status == 200
    csv_body = "".join(",".join(repr(v) for v in row) + "\n" for row in rows).encode()
    status, from_csv = server.request("POST", "/invocations", csv_body, "text/csv")
    assert status == 200

    # Then every probability equals predict_proba's within 1e-6 (without the native predictor,
    # small batches run the compiled forest and this large one scikit-learn), and the labels
    # answered are predict's classes, by name
    assert np.max(np.abs(np.asarray(singles) - want[:40])) <= 1e-6
    assert np.max(np.abs(_positive(batch) - want)) <= 1e-6
    assert np.max(np.abs(_positive(from_csv) - want)) <= 1e-6
    classes = estimator.predict(np.asarray(rows))
    assert batch["predictions"] == [batch["classes"][c] for c in classes]


@pytest.mark.parametrize("folder", ["trained_model", "native_model"])
def test_concurrent_requests_are_batched_yet_each_gets_its_own_answer(
    trained_model, start_server, request, folder
):
    # Given 16 clients sending different rows at the same time
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    server = start_server(request.getfixturevalue(folder))
    rows = _holdout(320, seed=7)
    _, want = _original_probabilities(trained_model, rows)

    def client(start: int) -> list[float]:
        got = []
        for row in rows[start : start + 20]:
            status, doc = server.predict([row])
            assert status == 200
            got.append(_positive(doc)[0])
        return got

    with ThreadPoolExecutor(16) as pool:
        answers = [p for part in pool.map(client, range(0, 320, 20)) for p in part]

    # Then every answer is the model's for that client's row: batching never mixes requests up
    assert np.max(np.abs(np.asarray(answers) - want)) <= 1e-6


def _raw(server: Server, method: str, path: str, body: bytes = b"", headers: dict | None = None):
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request(method, path, body, headers or {})
        response = connection.getresponse()
        return (
            response.status,
            json.loads(response.read() or b"{}"),
            {k.lower(): v for k, v in response.getheaders()},
        )
    finally:
        connection.close()


JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "message"),
    [
        ("POST", "/invocations", b'{"instances": [[1, 2', JSON, 400, "body is not valid JSON"),
        ("POST", "/invocations", b'{"rows": []}', JSON, 400, 'JSON object has no "instances" field'),
        ("POST", "/invocations", b'{"instances": []}', JSON, 400, "no instances to predict"),
        (
            "POST",
            "/invocations",
            b"[[1, 2, 3]]",
            JSON,
            400,
            "instance 0 has 3 values; the model expects 6 features",
        ),
        ("POST", "/invocations", b'[[1, 2, 3, 4, 5, "six"]]', JSON, 400, "is not a number: 'six'"),
        ("POST", "/invocations", b"[[1, 2, 3, 4, 5, true]]", JSON, 400, "is not a number: True"),
        ("POST", "/invocations", b'[{"tenure_months": 1}]', JSON, 400, "instance 0 lacks features"),
        ("POST", "/invocations", b'{"instances": 5}', JSON, 400, '"instances" must be a list'),
        ("POST", "/invocations", b"[[1e400, 2, 3, 4, 5, 6]]", JSON, 400, "body is not valid JSON"),
        (
            "POST",
            "/invocations",
            b"1,2,3,4,5,6\n1,2,x,4,5,6\n",
            {"Content-Type": "text/csv"},
            400,
            "CSV line 2 feature 'support_calls' is not a number: 'x'",
        ),
        ("POST", "/invocations", b"1,2,3\n", {"Content-Type": "text/csv"}, 400, "CSV line 1 has 3 values"),
        ("POST", "/invocations", b"1,2,inf,4,5,6\n", {"Content-Type": "text/csv"}, 400, "is infinite"),
        ("POST", "/invocations", b"\xff\xfe", {"Content-Type": "text/csv"}, 400, "CSV body is not UTF-8"),
        (
            "POST",
            "/invocations",
            b"<x/>",
            {"Content-Type": "application/xml"},
            415,
            "unsupported Content-Type",
        ),
        (
            "POST",
            "/invocations",
            b"[[1,2,3,4,5,6]]",
            {**JSON, "Accept": "text/html"},
            406,
            "responses are application/json",
        ),
        ("GET", "/invocations", b"", {}, 405, "use POST"),
        ("POST", "/ping", b"", {}, 405, "use GET"),
        ("GET", "/metrics", b"", {}, 404, "no route GET /metrics"),
    ],
)
def test_malformed_requests_get_a_4xx_naming_the_problem(
    trained_model, start_server, method, path, body, headers, status, message
):
    server = start_server(trained_model)
    got_status, doc, response_headers = _raw(server, method, path, body, headers)
    assert (got_status, message in doc.get("error", "")) == (status, True), doc
    assert response_headers.get("x-modelops-variant") == "canary"
    # And the server keeps serving good requests afterwards
    assert server.predict([ROW])[0] == 200


def test_an_oversized_body_is_refused_with_413_before_it_is_read(trained_model, start_server):
    import http.client

    server = start_server(trained_model)
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.putrequest("POST", "/invocations")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(6 * 1024 * 1024 + 1))
    connection.endheaders()  # the body is never sent: the answer comes from the header alone
    response = connection.getresponse()
    doc = json.loads(response.read())
    connection.close()
    assert response.status == 413 and "exceeds the 6291456-byte limit" in doc["error"]
    assert response.getheader("Connection") == "close"


def test_a_chunked_body_is_accepted(trained_model, start_server):
    import http.client

    server = start_server(trained_model)
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    body = json.dumps({"instances": [ROW, ROW]}).encode()
    chunks = iter([body[:7], body[7:]])
    connection.request(
        "POST", "/invocations", chunks, {"Content-Type": "application/json"}, encode_chunked=True
    )
    response = connection.getresponse()
    assert response.status == 200 and len(json.loads(response.read())["predictions"]) == 2
    connection.close()


def _established(pid: int) -> int:
    import psutil

    return sum(1 for c in psutil.Process(pid).net_connections("tcp") if c.status == psutil.CONN_ESTABLISHED)


def _refused(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


def test_sigterm_finishes_in_flight_requests_then_exits(trained_model, start_server, tmp_path):
    # Given a version whose model takes 1.5 s per batch, and 4 requests in flight (a 500 ms batch
    # wait gathers them into one batch: the model runs on the server's event loop)
    from concurrent.futures import ThreadPoolExecutor

    server = start_server(_slow(trained_model, tmp_path, ms=1500), SERVE_BATCH_WAIT_MS="500")
    with ThreadPoolExecutor(4) as pool:
        started = time.monotonic()
        futures = [pool.submit(server.predict, [ROW]) for _ in range(4)]
        _wait_for(lambda: _established(server.process.pid) >= 4, 10, "4 connections in flight")

        # When Kubernetes sends SIGTERM
        server.process.send_signal(signal.SIGTERM)

        # Then new connections are refused at once, while the 4 requests still complete with 200
        _wait_for(lambda: _refused(server.port), 5, "the listening socket to close")
        assert not all(f.done() for f in futures)
        results = [f.result(timeout=15) for f in futures]
    assert [status for status, _ in results] == [200] * 4
    assert time.monotonic() - started >= 1.5
    # And the process exits 0 once they are answered
    assert server.process.wait(timeout=15) == 0


def test_with_a_drain_period_ping_turns_503_while_requests_are_still_served(trained_model, start_server):
    # Given a pod configured to drain for 2 s after SIGTERM
    server = start_server(trained_model, SERVE_DRAIN_SECONDS="2")

    # When it gets SIGTERM
    server.process.send_signal(signal.SIGTERM)

    # Then readiness fails (the Service stops routing here) but requests are still answered,
    # each asking the client to reconnect elsewhere
    _wait_for(lambda: _raw(server, "GET", "/ping")[0] == 503, 5, "/ping to report draining")
    assert _raw(server, "GET", "/ping")[1]["status"] == "draining"
    status, _, headers = _raw(server, "POST", "/invocations", json.dumps([ROW]).encode(), JSON)
    assert status == 200 and headers.get("connection") == "close"
    # And it exits 0 after the drain period
    assert server.process.wait(timeout=15) == 0


# --- a model with a categorical string feature -------------------------------------------------


@pytest.fixture(scope="module")
def plan_model(tmp_path_factory) -> Path:
    """A model trained by the `train` program with `plan` (text) declared categorical."""
    from tests.categorical_data import PLAN_FEATURES, generate_churn_with_plan_csv

    base = tmp_path_factory.mktemp("ml-plan")
    generate_churn_with_plan_csv(base / "input" / "data" / "train" / "customers.csv", 300, seed=6)
    return _train(
        base,
        {
            "label_column": CHURN_LABEL,
            "feature_columns": json.dumps(list(PLAN_FEATURES)),
            "categorical_columns": json.dumps(["plan"]),
        },
    )


def test_a_categorical_model_answers_strings_equal_to_its_pipeline(plan_model, start_server):
    # Given a serving process for a model with a categorical `plan` column
    import joblib
    import numpy as np

    from tests.categorical_data import PLAN_FEATURES

    server = start_server(plan_model)
    _wait_sklearn_loaded(server)
    assert server.request("GET", "/ping")[1]["predictor"] == "scikit-learn"
    plans = ["basic", "plus", "premium", None, "enterprise", ""]
    rows = [[*row, plans[i % len(plans)]] for i, row in enumerate(_holdout(60))]
    rows[1][2] = None  # a missing number too
    pipeline = joblib.load(plan_model / "model" / "model.joblib")
    matrix = np.empty((len(rows), len(PLAN_FEATURES)), dtype=object)
    matrix[:] = [[np.nan if v in (None, "") else v for v in row] for row in rows]
    want = pipeline.predict_proba(matrix)[:, 1]

    # When the rows are sent as JSON lists, JSON objects by feature name and CSV
    status, lists = server.predict(rows)
    objects = [dict(zip(PLAN_FEATURES, row, strict=True)) for row in rows]
    status_objects, by_name = server.request(
        "POST", "/invocations", json.dumps({"instances": objects}).encode(), "application/json"
    )
    csv_body = "".join(",".join("" if v is None else str(v) for v in row) + "\n" for row in rows).encode()
    status_csv, from_csv = server.request("POST", "/invocations", csv_body, "text/csv")

    # Then each answers 200 equal to the pipeline's predict_proba within 1e-6 (missing and unseen
    # plans included)
    assert (status, status_objects, status_csv) == (200, 200, 200)
    for doc in (lists, by_name, from_csv):
        assert np.max(np.abs(_positive(doc) - want)) <= 1e-6
    # And a string for a numeric feature is still a 400 naming the feature
    bad = [[*rows[0][:3], "lots", *rows[0][4:]]]
    assert server.predict(bad) == (400, {"error": "instance 0 feature 'usage_gb' is not a number: 'lots'"})
