"""The `serve` program as a process: HTTP on an ephemeral loopback port, EMF lines on stdout."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelops_local.sample_data import CHURN_FEATURES, CHURN_LABEL, generate_churn_csv
from tests.integration.serving.conftest import Server, Servers, _wait_for
from tests.serving_models import has_c_compiler
from tests.team_models import demo_team_model, with_step

ROOT = Path(__file__).resolve().parents[3]
SERVING_IMAGE = ROOT / "serving_image"
ROW = [10, 80.5, 2, 30.0, 1, 0]


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


@pytest.fixture(scope="module")
def shared_server(trained_model, tmp_path_factory) -> Iterator[Server]:
    """One serving process for the trained model that every case of a bad-request table is sent
    to in turn, on its own connection (each case then checks it still serves a good request):
    starting one per case cost more than the cases themselves."""
    servers = Servers(tmp_path_factory.mktemp("shared-serve"))
    try:
        yield servers.start(trained_model)
    finally:
        servers.stop()


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
    shared_server, method, path, body, headers, status, message
):
    server = shared_server
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


# --- the HTTP layer (httpserver.py): never misparse, never hang --------------------------------


def _exchange(server: Server, data: bytes | list[bytes], *, answers: int, timeout: float = 10.0):
    """Send `data` (a list: piece by piece, each its own write) on one connection and read until
    `answers` responses arrived or the server closed it: [(status, headers, JSON body)], closed."""
    import socket

    sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        for piece in [data] if isinstance(data, bytes) else data:
            sock.sendall(piece)
        return _read_responses(sock, answers)
    finally:
        sock.close()


def _read_responses(sock, answers: int):
    buffer, out = b"", []
    closed = False
    while len(out) < answers and not closed:
        head_end = buffer.find(b"\r\n\r\n")
        if head_end >= 0:
            lines = buffer[:head_end].decode("latin-1").split("\r\n")
            headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
            end = head_end + 4 + int(headers.get("content-length", "0"))
            if len(buffer) >= end:
                status = int(lines[0].split()[1])
                body = buffer[head_end + 4 : end]
                out.append((status, headers, json.loads(body) if body else None))
                buffer = buffer[end:]
                continue
        chunk = sock.recv(65536)
        closed = not chunk
        buffer += chunk
    if not closed:  # one more read: did the server close after the last answer?
        sock.settimeout(0.5)
        try:
            closed = sock.recv(65536) == b""
        except TimeoutError:
            closed = False
    return out, closed


def _post(body: bytes, *extra: str) -> bytes:
    head = ["POST /invocations HTTP/1.1", "Host: x", "Content-Type: application/json", *extra]
    if not any(h.lower().startswith("transfer-encoding") for h in extra):
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def test_pipelined_requests_are_answered_in_order_on_one_connection(trained_model, start_server):
    # Given three different rows and their answers one request at a time
    server = start_server(trained_model)
    rows = _holdout(3, seed=21)
    alone = [server.predict([row])[1]["probabilities"] for row in rows]

    # When a ping and the three predictions are written in one go on one keep-alive connection
    pipelined = b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n" + b"".join(
        _post(json.dumps([row]).encode()) for row in rows
    )
    answers, closed = _exchange(server, pipelined, answers=4)

    # Then four answers come back in the order asked, each its own request's, and the connection stays open
    assert [status for status, _, _ in answers] == [200] * 4 and not closed
    assert answers[0][2]["status"] == "ready"
    assert [doc["probabilities"] for _, _, doc in answers[1:]] == alone


def test_a_request_split_into_small_writes_is_parsed_whole(trained_model, start_server):
    server = start_server(trained_model)
    request = _post(json.dumps({"instances": [ROW, ROW]}).encode())
    pieces = [
        request[i : i + 7] for i in range(0, len(request), 7)
    ]  # splits the request line, headers and body

    answers, closed = _exchange(server, pieces, answers=1)

    assert [(s, len(doc["predictions"])) for s, _, doc in answers] == [(200, 2)] and not closed


def test_expect_100_continue_is_answered_before_the_body_is_sent(trained_model, start_server):
    import socket

    server = start_server(trained_model)
    body = json.dumps([ROW]).encode()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        sock.sendall(
            _post(b"", "Expect: 100-continue").replace(
                b"Content-Length: 0", b"Content-Length: %d" % len(body)
            )
        )
        assert sock.recv(1024) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        answers, _ = _read_responses(sock, 1)
    finally:
        sock.close()
    assert answers[0][0] == 200 and len(answers[0][2]["predictions"]) == 1


@pytest.mark.parametrize(
    ("request_bytes", "status", "message"),
    [
        (b"POST /invocations HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n", 400, "malformed HTTP request"),
        (b"GARBAGE\r\n\r\n", 400, "malformed HTTP request"),
        (
            b"POST /invocations HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
            "malformed HTTP request",
        ),
        (b"POST /invocations HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", 400, "malformed HTTP request"),
        (
            b"POST /invocations HTTP/1.1\r\nX-Big: " + b"a" * (70 * 1024) + b"\r\n\r\n",
            431,
            "request line and headers exceed 65536 bytes",
        ),
        (
            b"POST /invocations HTTP/1.1\r\nExpect: 200-ok\r\nContent-Length: 2\r\n\r\n[]",
            417,
            "Expect: 200-ok",
        ),
        (
            b"GET /ping HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            400,
            "upgrades are not supported",
        ),
    ],
    ids=["bad-header", "not-http", "length-and-chunked", "bad-length", "huge-headers", "expect", "upgrade"],
)
def test_bytes_that_are_not_a_valid_request_get_a_4xx_and_nothing_after_them_is_parsed(
    shared_server, request_bytes, status, message
):
    server = shared_server
    # a valid prediction follows in the same write: after a refusal it must not be answered
    answers, closed = _exchange(server, request_bytes + _post(json.dumps([ROW]).encode()), answers=2)

    assert [(s, message in doc["error"]) for s, _, doc in answers] == [(status, True)], answers
    assert answers[0][1]["connection"] == "close" and closed
    assert answers[0][1]["x-modelops-variant"] == "canary"
    assert server.predict([ROW])[0] == 200  # and the server goes on


def test_a_chunked_body_over_the_limit_is_refused_with_413_as_it_passes_it(trained_model, start_server):
    server = start_server(trained_model)
    chunk = b"x" * (1024 * 1024)
    head = _post(b"", "Transfer-Encoding: chunked")
    pieces = [head] + [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * 7

    answers, closed = _exchange(server, pieces, answers=1, timeout=30)

    assert answers[0][0] == 413 and "exceeds the 6291456-byte limit" in answers[0][2]["error"]
    assert closed


def test_http_1_0_closes_after_its_answer_unless_it_asks_to_keep_alive(trained_model, start_server):
    server = start_server(trained_model)
    ping = b"GET /ping HTTP/1.0\r\n\r\n"

    answers, closed = _exchange(server, ping, answers=1)
    assert answers[0][0] == 200 and closed

    answers, closed = _exchange(
        server, ping.replace(b"\r\n\r\n", b"\r\nConnection: keep-alive\r\n\r\n") * 2, answers=2
    )
    assert [s for s, _, _ in answers] == [200, 200] and not closed


def test_an_idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout(trained_model, start_server):
    import socket

    server = start_server(trained_model, SERVE_KEEP_ALIVE_SECONDS="1")
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        started = time.monotonic()
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        answers, _ = _read_responses(sock, 1)
        sock.settimeout(5)
        assert sock.recv(1024) == b""  # closed by the server, not by the 5 s timeout
        assert 0.9 <= time.monotonic() - started < 4  # the timer starts once the answer is written
        # and a half-sent request is bounded the same way
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as half:
            half.sendall(b"POST /invocations HTTP/1.1\r\nContent-Le")
            assert half.recv(1024) == b""
    finally:
        sock.close()
    assert answers[0][0] == 200


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
