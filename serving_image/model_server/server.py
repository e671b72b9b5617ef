"""The `serve` program: the SageMaker hosting contract (`GET /ping`, `POST /invocations`, port 8080).

One process, one event loop (uvloop), HTTP/1.1 parsed by httptools in our own asyncio Protocol
(httpserver.py: keep-alive, pipelining, body and header limits), no ASGI layer, no framework.
Requests that arrive together are predicted in one call (predictor.MicroBatcher), with the
native predictor built with the image, or else the compiled forest for small batches and
scikit-learn for large ones (predictor.Predictor; /ping names which).

- /ping answers 503 until the model is loaded (in the background, after the port is bound) and
  warmed up (warmup.py: its check rows through a request's path, bounded by
  `SERVE_WARMUP_SECONDS`), then 200; 503 again once the pod is draining.
- Bad bodies get 4xx with a message naming what is wrong (inputs.py); 5xx only when the model
  itself fails (its error in the body) or the server is not ready.
- Every answer carries `X-Modelops-Variant` and `X-Modelops-Version`.
- Metrics: per-request counters in memory, and live drift statistics against the model's
  baseline.json (baseline.py: the batch's rows are kept by reference and binned off the hot path);
  a background thread writes them to stdout as EMF lines
  once per flush interval (emf.py). Logs go to stderr; stdout carries only EMF lines.
- SIGTERM (Kubernetes on rollout): /ping turns 503 and responses say `Connection: close` for
  `SERVE_DRAIN_SECONDS` (the Service stops routing here meanwhile); then the listening socket
  closes, idle keep-alive connections close, in-flight requests finish (at most
  `SERVE_GRACEFUL_TIMEOUT_SECONDS`, then their connections are cut), pending metrics are flushed,
  and the process exits 0. A second signal skips the drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import orjson

from model_server.artifact import ModelMetadata, load_estimator, read_forest, read_metadata
from model_server.baseline import BASELINE_FILE, BaselineError, LiveStats
from model_server.contract import ContractError, ServeSettings, container_paths, serve_settings
from model_server.emf import EmfFlusher, RequestMetrics
from model_server.errors import BadRequestError, ModelLoadError
from model_server.forest import ForestError, compile_forest
from model_server.httpserver import HttpServer, Request, Response
from model_server.inputs import parse_rows
from model_server.native import NativeError
from model_server.native import load as load_native
from model_server.predictor import Answer, MicroBatcher, NativePredictor, Predictor, Row, answer
from model_server.trees import TreesError
from model_server.trees import is_built as trees_built
from model_server.trees import load as load_trees
from model_server.trees import unsupported as trees_unsupported
from model_server.warmup import warm_up

log = logging.getLogger("model_server.serve")
MAX_BODY_BYTES = 6 * 1024 * 1024  # SageMaker real-time inference's payload limit


class ModelService:
    """The model behind the endpoints: loading state, predictions, metrics."""

    def __init__(self, model_dir: Path, settings: ServeSettings, metrics: RequestMetrics) -> None:
        self.model_dir = model_dir
        self.settings = settings
        self.metrics = metrics
        self.predictor: Predictor | None = None
        self.load_error: str | None = None
        self.ready = False  # loaded and warmed up: /ping answers 200
        self.draining = False
        self.version = settings.version or "unknown"
        self.batcher = MicroBatcher(
            self._predict,
            max_rows=settings.batch_max_rows,
            max_wait_seconds=settings.batch_wait_ms / 1000.0,
        )

    def _predict(self, rows: Sequence[Row]) -> list[Answer]:
        assert self.predictor is not None
        answers = self.predictor.predict_rows(rows)
        stats = self.metrics.stats
        if stats is not None:
            stats.observe(rows, answers)  # references only; binned by the metrics thread
        return answers

    def _load_baseline(self, meta: ModelMetadata) -> None:
        """Keep live drift statistics against the model's baseline.json, when it has one and
        they are not switched off; a baseline that cannot be used is logged, never fatal."""
        path = self.model_dir / BASELINE_FILE
        if not self.settings.drift_stats or not path.is_file():
            log.info(
                "no live drift statistics: %s", "switched off" if path.is_file() else f"no {BASELINE_FILE}"
            )
            return
        try:
            baseline = orjson.loads(path.read_bytes())
            stats = LiveStats(baseline, task=meta.task)
        except (OSError, orjson.JSONDecodeError, BaselineError) as exc:
            log.warning("live drift statistics off: %s unusable: %s", BASELINE_FILE, exc)
            return
        if [f.name for f in stats.features] != list(meta.feature_columns):
            log.warning("live drift statistics off: %s's features differ from the model's", BASELINE_FILE)
            return
        self.metrics.stats = stats

    def load(self) -> None:
        """Load the model: the native predictor, or else the compiled forest with scikit-learn
        behind it for large batches, or scikit-learn alone; then warm it up (warmup.py) and only
        then turn /ping to 200, so the first requests a pod takes find nothing left to do.

        A model folder that cannot be served leaves /ping at 503 with the reason."""
        started = time.monotonic()
        try:
            meta = read_metadata(self.model_dir)
            self._load_baseline(meta)
            if not self.settings.version and meta.training_job:
                self.version = meta.training_job
                self.metrics.set_dimension("Version", self.version)
            forest, native = None, None
            try:
                doc = read_forest(self.model_dir, meta)
                native = self._native(meta, doc)
                if doc is not None and native is None:
                    # the Python forest only where it will answer: without the native predictor
                    forest = compile_forest(doc)
            except (ModelLoadError, ForestError) as exc:
                log.warning("compiled predictor unusable, using scikit-learn for every batch: %s", exc)
            if native is not None or forest is not None:
                library = "scikit-learn" if meta.format == "sklearn" else meta.format
                self.predictor = Predictor(
                    meta, forest=forest, native=native, compiled_max_rows=self.settings.compiled_max_rows
                )
                log.info(
                    "loaded in %.2fs with the %s predictor; %s",
                    time.monotonic() - started,
                    self.predictor.kind,
                    f"it answers every batch, {library} is not loaded"
                    if native is not None
                    else "loading scikit-learn behind it for large batches",
                )
            # The native predictor was checked against the estimator when the image was built;
            # importing scikit-learn next to it would only cost ~60 MiB and, under traffic, a
            # second of GIL-bound imports in the canary's first seconds (its p99).
            estimator = None if native is not None else load_estimator(self.model_dir, meta)
        except ModelLoadError as exc:
            self.predictor = None  # a broken artifact is never served, even if its forest compiled
            self.load_error = str(exc)
            log.error("model not loaded: %s", exc)
            return
        if self.predictor is None:
            self.predictor = Predictor(meta, forest=self._small_batches(meta, estimator), estimator=estimator)
        elif estimator is not None:
            self.predictor.estimator = estimator
        self._warm_up(self.predictor)
        # Everything loaded so far lives as long as the process: keep it out of the collector's
        # full passes, which otherwise walk scikit-learn's and SciPy's objects again and again
        # under load (tens of milliseconds each, straight into the tail latency).
        gc.collect()
        gc.freeze()
        self.ready = True
        log.info(
            "model loaded in %.2fs: task=%s algorithm=%s format=%s features=%d version=%s",
            time.monotonic() - started,
            meta.task,
            meta.algorithm,
            meta.format,
            len(meta.feature_columns),
            self.version,
        )

    def _warm_up(self, predictor: Predictor) -> None:
        done = warm_up(predictor, self.model_dir, self.settings.warmup_seconds)
        log.log(
            logging.WARNING if done.failed else logging.INFO,
            "warm-up: %d check-row requests (%d rows) in %.3fs%s%s",
            done.requests,
            done.rows,
            done.seconds,
            f"; {done.failed} failed, first: {done.first_error}" if done.failed else "",
            f"; stopped: {done.stopped}" if done.stopped else "",
        )

    def _native(self, meta: ModelMetadata, doc: Any) -> NativePredictor | None:
        """The native library built with the image: the trees through tl2cgen (trees.py) or the
        hand-written forest (native.py); None, saying why, when there is none to use."""
        try:
            if trees_built(self.model_dir) or (doc is None and trees_unsupported(meta) is None):
                return load_trees(self.model_dir, meta)
            if doc is not None and meta.forest_file:
                return load_native(self.model_dir, meta.forest_file, doc)
        except (NativeError, TreesError) as exc:
            log.info("native predictor not used (the compiled forest or the model's library serves): %s", exc)
        return None

    def _small_batches(self, meta: ModelMetadata, estimator: Any) -> NativePredictor | None:
        """The linear Pipeline as per-row arithmetic (linear.py) for small batches, when the model
        is one and reproduces check.json; None (scikit-learn answers every batch) otherwise."""
        if meta.algorithm != "linear" or meta.format != "sklearn" or meta.categorical_columns:
            return None
        from model_server import linear

        fast, how = linear.checked(estimator, meta.task, self.model_dir)
        if fast is None:
            log.info("linear pipeline not compiled (scikit-learn answers every batch): %s", how)
        else:
            log.info(
                "linear pipeline compiled for batches under %d rows (%s); scikit-learn above",
                self.settings.compiled_max_rows,
                how,
            )
        return fast

    def ping(self) -> tuple[int, dict[str, Any]]:
        if self.draining:
            return 503, {"status": "draining", "model_version": self.version}
        if self.ready and self.predictor is not None:
            return 200, {"status": "ready", "model_version": self.version, "predictor": self.predictor.kind}
        if self.load_error:
            return 503, {"status": "failed", "error": self.load_error}
        return 503, {"status": "loading" if self.predictor is None else "warming up"}

    async def invoke(self, body: bytes, content_type: str | None) -> tuple[int, dict[str, Any]]:
        """(status, JSON document) for one /invocations request."""
        predictor = self.predictor
        if predictor is None:
            return 503, {"error": f"model not loaded: {self.load_error or 'still loading'}"}
        meta = predictor.metadata
        try:
            rows = parse_rows(body, content_type, meta.feature_columns, meta.categorical_columns)
        except BadRequestError as exc:
            return exc.status, {"error": exc.message}
        try:
            predictions = await self.batcher.submit(rows)
        except Exception as exc:  # a model bug must answer 500, not drop the connection
            log.error("prediction failed: %s: %s", type(exc).__name__, exc, exc_info=exc)
            return 500, {"error": f"prediction failed: {type(exc).__name__}: {exc}"}
        return 200, {**answer(meta, predictions), "model_version": self.version}


class App:
    """Routing, headers and metrics for the HTTP server (httpserver.py)."""

    def __init__(self, service: ModelService) -> None:
        self.service = service
        self._identity: tuple[str, bytes] | None = None

    def identity(self) -> bytes:
        """Who answered, as header lines: lets clients (and the demo's traffic) attribute a
        response to a variant. The version is known once the model is loaded."""
        version = self.service.version
        if self._identity is None or self._identity[0] != version:
            lines = b"x-modelops-variant: %s\r\nx-modelops-version: %s\r\n" % (
                _header_value(self.service.settings.variant),
                _header_value(version),
            )
            self._identity = (version, lines)
        return self._identity[1]

    def reply(self, status: int, doc: dict[str, Any], *, close: bool = False) -> Response:
        # draining: `Connection: close` makes keep-alive clients reconnect to another pod
        return Response(status, orjson.dumps(doc), close=close or self.service.draining)

    def refusal(self, status: int, message: str) -> Response:
        """The HTTP layer's own refusals (a body too large, headers too long, not HTTP): they
        close the connection rather than parse what follows, and count as requests."""
        self.service.metrics.record(status, 0.0)
        return self.reply(status, {"error": message}, close=True)

    async def __call__(self, request: Request) -> Response:
        method, path = request.method, request.path
        if path == "/invocations":
            if method == "POST":
                return await self._invocations(request)
            return self.reply(405, {"error": f"{method} /invocations: use POST"}, close=True)
        if path == "/ping":
            if method == "GET":
                status, doc = self.service.ping()
                return self.reply(status, doc)
            return self.reply(405, {"error": f"{method} /ping: use GET"}, close=True)
        return self.reply(
            404, {"error": f"no route {method} {path}; use GET /ping or POST /invocations"}, close=True
        )

    async def _invocations(self, request: Request) -> Response:
        started = time.perf_counter()
        accept = request.accept
        if (
            accept
            and "application/json" not in accept
            and "*/*" not in accept
            and "application/*" not in accept
        ):
            status, doc = 406, {"error": f"cannot answer Accept: {accept}; responses are application/json"}
        else:
            status, doc = await self.service.invoke(request.body, request.content_type)
        response = self.reply(status, doc)
        self.service.metrics.record(status, (time.perf_counter() - started) * 1000.0)
        return response


def _header_value(value: str) -> bytes:
    """A header value as bytes, never able to end the header line early."""
    return value.replace("\r", " ").replace("\n", " ").encode("latin-1", "replace")


def _run(app: App, sock: socket.socket, settings: ServeSettings) -> None:
    """Serve on `sock` until SIGTERM/SIGINT, draining first (see the module docstring)."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = HttpServer(
            app,
            app.refusal,
            app.identity,
            max_body_bytes=MAX_BODY_BYTES,
            keep_alive_seconds=settings.keep_alive_seconds,
        )
        await server.start(sock)
        stop = asyncio.Event()
        drain: list[asyncio.TimerHandle] = []

        def on_signal(sig: signal.Signals) -> None:
            if app.service.draining or settings.drain_seconds <= 0:
                log.info("signal %s: shutting down (in-flight requests finish first)", sig.name)
                app.service.draining = True
                stop.set()
                return
            app.service.draining = True
            log.info("signal %s: draining for %.1fs, then shutting down", sig.name, settings.drain_seconds)

            def drained() -> None:
                log.info("drain period over: shutting down")
                stop.set()

            drain.append(loop.call_later(settings.drain_seconds, drained))

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig)
        await stop.wait()
        for handle in drain:
            handle.cancel()
        await server.shutdown(settings.graceful_timeout_seconds)

    if _importable("uvloop"):
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())


def _importable(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    # Listening before the port is announced: early connections wait in the backlog until the loop runs.
    sock.listen(2048)
    sock.setblocking(False)
    return sock


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
        sock = _listen(settings.host, settings.port)
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", settings.host, settings.port, exc)
        return 2
    port = sock.getsockname()[1]
    if settings.port_file:
        _write_atomically(settings.port_file, f"{port}\n")
    log.info(
        "listening on http://%s:%s (model folder %s; %s event loop, httptools)",
        settings.host,
        port,
        paths.model_dir,
        "uvloop" if _importable("uvloop") else "asyncio",
    )

    flusher = EmfFlusher(metrics, stdout or sys.stdout, settings.emf_flush_seconds)
    flusher.start()
    threading.Thread(target=service.load, name="model-loader", daemon=True).start()
    try:
        _run(App(service), sock, settings)
    finally:
        with contextlib.suppress(OSError):
            sock.close()
        flusher.stop()
    log.info("stopped")
    return 0


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
