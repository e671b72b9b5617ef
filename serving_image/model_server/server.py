"""The `serve` program: the SageMaker hosting contract (`GET /ping`, `POST /invocations`) on a
threaded stdlib HTTP server, with per-request demo faults and EMF metrics on stdout.

/ping answers 503 until the model in model/ is loaded (in the background, after the port is bound),
then 200. Logs go to stderr; stdout carries only EMF lines.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from model_server.artifact import LoadedModel, load_model
from model_server.contract import ContractError, ServeSettings, container_paths, serve_settings
from model_server.emf import EmfFlusher, RequestMetrics
from model_server.errors import BadRequestError, ModelLoadError
from model_server.inputs import parse_instances

log = logging.getLogger("model_server.serve")
MAX_BODY_BYTES = 6 * 1024 * 1024  # SageMaker real-time inference's payload limit


class ModelService:
    """The model behind the endpoints: loading state, predictions, faults, metrics."""

    def __init__(self, model_dir: Path, settings: ServeSettings, metrics: RequestMetrics) -> None:
        self.model_dir = model_dir
        self.settings = settings
        self.metrics = metrics
        self.model: LoadedModel | None = None
        self.load_error: str | None = None
        self.version = settings.version or "unknown"
        self._rng = random.Random(settings.fault_seed)
        self._rng_lock = threading.Lock()

    def load(self) -> None:
        """Load the model; on failure /ping keeps answering 503 with the reason."""
        started = time.monotonic()
        try:
            model = load_model(self.model_dir)
        except ModelLoadError as exc:
            self.load_error = str(exc)
            log.error("model not loaded: %s", exc)
            return
        meta = model.metadata
        if not self.settings.version and meta.training_job:
            self.version = meta.training_job
            self.metrics.set_dimension("Version", self.version)
        self.model = model
        log.info(
            "model loaded in %.2fs: task=%s features=%d version=%s fault_error_rate=%s fault_latency_ms=%s",
            time.monotonic() - started,
            meta.task,
            len(meta.feature_columns),
            self.version,
            meta.fault_error_rate,
            meta.fault_latency_ms,
        )

    def ping(self) -> tuple[int, dict[str, Any]]:
        if self.model is not None:
            return 200, {"status": "ready", "model_version": self.version}
        if self.load_error:
            return 503, {"status": "failed", "error": self.load_error}
        return 503, {"status": "loading"}

    def invoke(self, body: bytes, content_type: str | None) -> tuple[int, dict[str, Any]]:
        """(status, JSON document) for one /invocations request, demo faults applied."""
        model = self.model
        if model is None:
            return 503, {"error": f"model not loaded: {self.load_error or 'still loading'}"}
        try:
            rows = parse_instances(body, content_type, model.metadata.feature_columns)
        except BadRequestError as exc:
            return exc.status, {"error": exc.message}
        meta = model.metadata
        if meta.fault_latency_ms:
            time.sleep(meta.fault_latency_ms / 1000.0)
        if meta.fault_error_rate:
            with self._rng_lock:
                roll = self._rng.random()
            if roll < meta.fault_error_rate:
                return 500, {
                    "error": f"injected fault: this model version fails {meta.fault_error_rate:.0%} of requests"
                }
        try:
            predictions = model.predict(rows)
        except Exception as exc:  # a model bug must answer 500, not drop the connection
            log.exception("prediction failed")
            return 500, {"error": f"prediction failed: {type(exc).__name__}: {exc}"}
        return 200, {"predictions": predictions, "model_version": self.version}


class ModelHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    service: ModelService


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ModelHTTPServer

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] == "/ping":
            status, doc = self.server.service.ping()
            self._reply(status, doc)
        else:
            self._reply(404, {"error": f"no route GET {self.path}; use GET /ping or POST /invocations"})

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] != "/invocations":
            self._drain_body()
            self._reply(404, {"error": f"no route POST {self.path}; use POST /invocations"})
            return
        started = time.perf_counter()
        try:
            body = self._read_body()
            self._check_accept()
        except BadRequestError as exc:
            status, doc = exc.status, {"error": exc.message}
        else:
            status, doc = self.server.service.invoke(body, self.headers.get("Content-Type"))
        self._reply(status, doc)
        self.server.service.metrics.record(status, (time.perf_counter() - started) * 1000.0)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True
            raise BadRequestError(411, "chunked bodies are not supported; send Content-Length")
        raw = self.headers.get("Content-Length")
        if raw is None:
            raise BadRequestError(411, "Content-Length header is required")
        try:
            length = int(raw)
        except ValueError:
            self.close_connection = True
            raise BadRequestError(400, f"Content-Length {raw!r} is not a number") from None
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            raise BadRequestError(413, f"body of {length} bytes exceeds the {MAX_BODY_BYTES}-byte limit")
        return self.rfile.read(length) if length > 0 else b""

    def _check_accept(self) -> None:
        accept = (self.headers.get("Accept") or "").lower()
        if accept and not any(t in accept for t in ("application/json", "*/*", "application/*")):
            raise BadRequestError(406, f"cannot answer Accept: {accept}; responses are application/json")

    def _drain_body(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if 0 < length <= MAX_BODY_BYTES:
            self.rfile.read(length)
        elif length:
            self.close_connection = True

    def _reply(self, status: int, doc: dict[str, Any]) -> None:
        payload = json.dumps(doc).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        # Who answered: lets clients (and the demo's traffic) attribute a response to a variant.
        service = self.server.service
        self.send_header("X-Modelops-Variant", service.settings.variant)
        self.send_header("X-Modelops-Version", service.version)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        status = int(code) if isinstance(code, int | HTTPStatus) or str(code).isdigit() else 0
        level = logging.WARNING if status >= 500 else logging.DEBUG
        log.log(level, '"%s" %s', self.requestline, code)


def serve(env: Mapping[str, str] | None = None, stdout: TextIO | None = None) -> int:
    """Run the server until SIGTERM/SIGINT; returns the process exit code."""
    env = os.environ if env is None else env
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        settings = serve_settings(env)
    except ContractError as exc:
        log.error("cannot start: %s", exc)
        return 2
    paths = container_paths(env)
    metrics = RequestMetrics(
        namespace=settings.metric_namespace,
        model=settings.model,
        variant=settings.variant,
        version=settings.version or "unknown",
    )
    service = ModelService(paths.model_dir, settings, metrics)
    try:
        server = ModelHTTPServer((settings.host, settings.port), Handler)
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", settings.host, settings.port, exc)
        return 2
    server.service = service
    port = server.server_address[1]
    if settings.port_file:
        _write_atomically(settings.port_file, f"{port}\n")
    log.info("listening on http://%s:%s (model folder %s)", settings.host, port, paths.model_dir)

    flusher = EmfFlusher(metrics, stdout or sys.stdout, settings.emf_flush_seconds)
    flusher.start()
    threading.Thread(target=service.load, name="model-loader", daemon=True).start()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s: shutting down", signal.Signals(signum).name)
        threading.Thread(target=server.shutdown, name="shutdown", daemon=True).start()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        flusher.stop()
    return 0


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
