"""Request metrics as CloudWatch embedded metric format (EMF) lines on stdout.

Each flush interval with traffic produces one JSON document per line:

    {"_aws": {"Timestamp": <ms>, "CloudWatchMetrics": [{"Namespace": "ModelOps",
      "Dimensions": [["Model", "Variant"], ["Model", "Variant", "Version"]],
      "Metrics": [{"Name": "Requests", "Unit": "Count", "StorageResolution": 1}, ...]}]},
     "Model": "churn", "Variant": "canary", "Version": "3",
     "Requests": 12, "Errors": 1, "Latency": [3.1, 2.7, ...]}

EMF allows at most 100 values per metric in one document, so latencies beyond the first 100 go into
further documents that carry only `Latency`.

With a baseline (baseline.py), each interval with traffic also gives one document per feature,
metric `FeatureBins` with dimensions Model, Variant and Feature, and one for the predictions,
`PredictionBins` with dimensions Model and Variant. Their value is a histogram: `Values` are the
codes seen (bin or category 1..k, k+1 missing, k+2 unseen category), `Counts` how often each was
seen, with `Max`, `Min`, `Count` and `Sum` over them, the shape AWS's own EMF library
(aws-embedded-metrics-java, `Histogram`) writes and PutMetricData's Values/Counts take. Spec:
https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from model_server.baseline import LiveStats

MAX_VALUES_PER_METRIC = 100
DIMENSION_SETS = [["Model", "Variant"], ["Model", "Variant", "Version"]]
_REQUESTS = {"Name": "Requests", "Unit": "Count", "StorageResolution": 1}
_ERRORS = {"Name": "Errors", "Unit": "Count", "StorageResolution": 1}
_LATENCY = {"Name": "Latency", "Unit": "Milliseconds", "StorageResolution": 1}
FEATURE_METRIC = "FeatureBins"
PREDICTION_METRIC = "PredictionBins"


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


def histogram(counts: NDArray[np.int64]) -> dict[str, Any] | None:
    """The EMF histogram value of code counts (slot i counts code i); None when all are zero."""
    codes = [i for i in range(len(counts)) if counts[i]]
    if not codes:
        return None
    tally = [int(counts[i]) for i in codes]
    return {
        "Values": [float(c) for c in codes],
        "Counts": tally,
        "Max": float(codes[-1]),
        "Min": float(codes[0]),
        "Count": sum(tally),
        "Sum": float(sum(c * n for c, n in zip(codes, tally, strict=True))),
    }


def stats_documents(
    *,
    namespace: str,
    model: str,
    variant: str,
    features: Sequence[tuple[str, NDArray[np.int64]]],
    predictions: NDArray[np.int64],
    timestamp_ms: int,
) -> list[dict[str, Any]]:
    """The drift statistics' EMF documents for one interval: one per feature seen, one for the
    predictions (none when nothing was predicted)."""
    documents = []
    series: list[tuple[NDArray[np.int64], str, dict[str, str]]] = [
        *((counts, FEATURE_METRIC, {"Feature": name}) for name, counts in features),
        (predictions, PREDICTION_METRIC, {}),
    ]
    for counts, metric, extra in series:
        value = histogram(counts)
        if value is None:
            continue
        dimensions = ["Model", "Variant", *extra]
        documents.append(
            {
                "_aws": {
                    "Timestamp": timestamp_ms,
                    "CloudWatchMetrics": [
                        {
                            "Namespace": namespace,
                            "Dimensions": [dimensions],
                            "Metrics": [{"Name": metric, "Unit": "Count", "StorageResolution": 60}],
                        }
                    ],
                },
                "Model": model,
                "Variant": variant,
                **extra,
                metric: value,
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
        # The live drift statistics, once the model and its baseline are loaded (server.py).
        self.stats: LiveStats | None = None

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
        timestamp_ms = int(self._clock() * 1000)
        documents = emf_documents(
            namespace=self.namespace,
            dimensions=dimensions,
            requests=requests,
            errors=errors,
            latencies_ms=latencies,
            timestamp_ms=timestamp_ms,
        )
        stats = self.stats
        if stats is not None:
            rows, features, predictions = stats.drain()
            if rows:
                documents += stats_documents(
                    namespace=self.namespace,
                    model=dimensions["Model"],
                    variant=dimensions["Variant"],
                    features=features,
                    predictions=predictions,
                    timestamp_ms=timestamp_ms,
                )
        return documents


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
