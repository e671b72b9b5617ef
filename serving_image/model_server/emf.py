"""Request metrics as CloudWatch embedded metric format (EMF) lines on stdout.

Each flush interval with traffic produces one JSON document per line:

    {"_aws": {"Timestamp": <ms>, "CloudWatchMetrics": [{"Namespace": "ModelOps",
      "Dimensions": [["Model", "Variant"], ["Model", "Variant", "Version"]],
      "Metrics": [{"Name": "Requests", "Unit": "Count", "StorageResolution": 1}, ...]}]},
     "Model": "churn", "Variant": "canary", "Version": "3",
     "Requests": 12, "Errors": 1, "Latency": [3.1, 2.7, ...]}

EMF allows at most 100 values per metric in one document, so latencies beyond the first 100 go into
further documents that carry only `Latency`. Spec:
https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

MAX_VALUES_PER_METRIC = 100
DIMENSION_SETS = [["Model", "Variant"], ["Model", "Variant", "Version"]]
_REQUESTS = {"Name": "Requests", "Unit": "Count", "StorageResolution": 1}
_ERRORS = {"Name": "Errors", "Unit": "Count", "StorageResolution": 1}
_LATENCY = {"Name": "Latency", "Unit": "Milliseconds", "StorageResolution": 1}


def emf_documents(
    *,
    namespace: str,
    dimensions: dict[str, str],
    requests: int,
    errors: int,
    latencies_ms: list[float],
    timestamp_ms: int,
) -> list[dict[str, Any]]:
    """The EMF documents for one interval (empty when there were no requests)."""
    if requests == 0:
        return []
    chunks = [
        latencies_ms[i : i + MAX_VALUES_PER_METRIC]
        for i in range(0, len(latencies_ms), MAX_VALUES_PER_METRIC)
    ]
    documents = []
    for index, chunk in enumerate(chunks or [[]]):
        metrics = [dict(_REQUESTS), dict(_ERRORS)] if index == 0 else []
        values: dict[str, Any] = {"Requests": requests, "Errors": errors} if index == 0 else {}
        if chunk:
            metrics.append(dict(_LATENCY))
            values["Latency"] = chunk
        documents.append(
            {
                "_aws": {
                    "Timestamp": timestamp_ms,
                    "CloudWatchMetrics": [
                        {
                            "Namespace": namespace,
                            "Dimensions": [list(d) for d in DIMENSION_SETS],
                            "Metrics": metrics,
                        }
                    ],
                },
                **dimensions,
                **values,
            }
        )
    return documents


class RequestMetrics:
    """Thread-safe per-interval counters of /invocations requests."""

    def __init__(
        self,
        *,
        namespace: str,
        model: str,
        variant: str,
        version: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.namespace = namespace
        self.dimensions = {"Model": model, "Variant": variant, "Version": version}
        self._clock = clock
        self._lock = threading.Lock()
        self._requests = 0
        self._errors = 0
        self._latencies: list[float] = []

    def record(self, status: int, latency_ms: float) -> None:
        """Count one request; 5xx statuses count as errors."""
        with self._lock:
            self._requests += 1
            if status >= 500:
                self._errors += 1
            self._latencies.append(round(latency_ms, 3))

    def set_dimension(self, name: str, value: str) -> None:
        """Change a dimension value (e.g. Version once the model is loaded) for later documents."""
        with self._lock:
            self.dimensions = {**self.dimensions, name: value}

    def drain(self) -> list[dict[str, Any]]:
        """EMF documents for everything recorded since the last drain; resets the counters."""
        with self._lock:
            requests, errors, latencies = self._requests, self._errors, self._latencies
            self._requests, self._errors, self._latencies = 0, 0, []
            dimensions = self.dimensions
        return emf_documents(
            namespace=self.namespace,
            dimensions=dimensions,
            requests=requests,
            errors=errors,
            latencies_ms=latencies,
            timestamp_ms=int(self._clock() * 1000),
        )


class EmfFlusher:
    """Writes `metrics.drain()` to `stream` every `interval` seconds, and once more on stop()."""

    def __init__(self, metrics: RequestMetrics, stream: TextIO, interval: float) -> None:
        self.metrics = metrics
        self.stream = stream
        self.interval = interval
        self._stop = threading.Event()
        self._write_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="emf-flusher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the timer and flush what is left (bounded by `timeout`)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.flush()

    def flush(self) -> int:
        """Write the pending documents now; returns how many lines were written."""
        documents = self.metrics.drain()
        if not documents:
            return 0
        text = "".join(json.dumps(doc, separators=(",", ":")) + "\n" for doc in documents)
        with self._write_lock:
            self.stream.write(text)
            self.stream.flush()
        return len(documents)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()
