"""The serving contract per model format, against the real `serve` process: each format of issue 13
trained by `train`, built by the image build step, served over HTTP. JSON and CSV bodies, one row
and batches, answers equal to the model file's own library, the 4xx errors, and the drain on
SIGTERM (listening socket closed, idle keep-alive connection closed, metrics flushed, exit 0)."""

from __future__ import annotations

import contextlib
import io
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.format_models import N_FEATURES, format_rows, library_proba, train_format_model
from tests.integration.serving.conftest import Server, Servers, _wait_for
from tests.serving_models import has_c_compiler

# (algorithm, classes, what answers once the image is built)
FORMATS = {
    "hgb": ("hist_gradient_boosting", 2, "native"),
    "rf": ("random_forest", 2, "native"),
    "xgboost": ("xgboost", 2, "native"),
    "lightgbm": ("lightgbm", 2, "native"),
    "lightgbm-multiclass": ("lightgbm", 3, "native"),
    "linear": ("linear", 2, "scikit-learn"),  # the Pipeline: imputer, scaler, logistic regression
    "onnx": ("onnx", 2, "onnx"),
}
pytestmark = pytest.mark.skipif(not has_c_compiler(), reason="no C compiler (cc, gcc or clang) on PATH")


@pytest.fixture(scope="module", params=list(FORMATS))
def format_model(request, tmp_path_factory) -> tuple[str, Path]:
    """(format, SAGEMAKER_BASE_DIR) of a trained and image-built model of that format."""
    from model_server import native

    name = request.param
    algorithm, classes, _ = FORMATS[name]
    base = tmp_path_factory.mktemp(name)
    folder = train_format_model(base, algorithm, classes, categorical=False)
    with contextlib.redirect_stdout(io.StringIO()):
        assert native.main(["build", str(folder)]) == 0
    return name, base


@pytest.fixture(scope="module")
def format_server(format_model, tmp_path_factory) -> Iterator[Server]:
    """One serving process per format that every case of the bad-body table is sent to in turn
    (each case then checks it still serves a good request)."""
    name, base = format_model
    servers = Servers(tmp_path_factory.mktemp(f"serve-{name}"))
    try:
        yield servers.start(base)
    finally:
        servers.stop()


def _csv(rows: list[list[Any]]) -> bytes:
    return "".join(",".join("" if v is None else repr(v) for v in row) + "\n" for row in rows).encode()


def test_each_format_answers_json_csv_single_rows_and_batches_as_its_library_does(format_model, start_server):
    # Given the served model of one format, ready
    name, base = format_model
    _, classes, predictor = FORMATS[name]
    server = start_server(base)
    assert server.request("GET", "/ping")[1]["predictor"] == predictor
    rows, _ = format_rows(classes, False, 120, seed=31)  # held out, with missing cells
    want = library_proba(base / "model", rows)
    tolerance = 1e-5 if name in ("xgboost", "onnx") else 1e-6

    # When the rows are sent one at a time, as one JSON batch and as one CSV body
    singles = [server.predict([row]) for row in rows[:20]]
    status, batch = server.predict(rows)
    status_csv, from_csv = server.request("POST", "/invocations", _csv(rows), "text/csv")

    # Then all are 200 with the library's class probabilities and its most probable class
    assert [s for s, _ in singles] == [200] * 20 and (status, status_csv) == (200, 200)
    single = np.asarray([doc["probabilities"][0] for _, doc in singles])
    assert np.abs(single - want[:20]).max() <= tolerance
    assert np.abs(np.asarray(batch["probabilities"]) - want).max() <= tolerance
    assert from_csv["probabilities"] == batch["probabilities"]
    assert batch["predictions"] == [f"class{int(i)}" for i in np.argmax(want, axis=1)]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (b"[[1, 2", "application/json", 400, "body is not valid JSON"),
        (b"[[1, 2, 3]]", "application/json", 400, f"the model expects {N_FEATURES} features"),
        (b'{"instances": []}', "application/json", 400, "no instances to predict"),
        (b"1,2,x,4,5,6\n", "text/csv", 400, "is not a number: 'x'"),
        (b"<x/>", "application/xml", 415, "unsupported Content-Type"),
    ],
    ids=["bad-json", "width", "empty", "bad-csv", "xml"],
)
def test_each_format_refuses_bad_bodies_with_a_4xx_naming_the_problem(
    format_server, body, content_type, status, message
):
    server = format_server
    got, doc = server.request("POST", "/invocations", body, content_type)
    assert (got, message in doc["error"]) == (status, True), doc
    assert server.predict([[0.5] * N_FEATURES])[0] == 200


def test_each_format_drains_on_sigterm_and_exits_0_with_its_metrics_flushed(format_model, start_server):
    # Given a served model with an idle keep-alive client and some traffic
    _, base = format_model
    server = start_server(base, EMF_FLUSH_SECONDS="60", SERVE_DRAIN_SECONDS="0.5")
    idle = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    idle.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
    assert idle.recv(4096).startswith(b"HTTP/1.1 200 OK\r\n")
    for _ in range(3):
        assert server.predict([[0.5] * N_FEATURES])[0] == 200

    # When the pod is stopped
    stopped = time.monotonic()
    server.process.send_signal(signal.SIGTERM)

    # Then it drains (ping 503), closes the idle connection, and exits 0 well within the grace period
    with contextlib.suppress(OSError):
        status, doc = server.request("GET", "/ping")
        assert (status, doc["status"]) == (503, "draining")
    assert idle.recv(4096) == b""  # closed by the server (the 10 s timeout would raise)
    idle.close()
    assert server.process.wait(timeout=15) == 0
    assert time.monotonic() - stopped < 10
    # And the pending metrics were written before it went
    assert sum(d.get("Requests", 0) for d in server.emf_documents(want_requests=3)) == 3
    _wait_for(lambda: "stopped" in server.stderr_path.read_text(), 5, "the stop line")
