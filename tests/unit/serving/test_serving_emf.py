"""Embedded metric format lines: exactly what CloudWatch Logs extracts metrics from."""

from __future__ import annotations

import io
import json

from model_server.emf import EmfFlusher, RequestMetrics, emf_documents


def _metrics(clock: float = 1_700_000_000.5) -> RequestMetrics:
    return RequestMetrics(
        namespace="ModelOps", model="churn", variant="canary", version="3", clock=lambda: clock
    )


def test_one_interval_becomes_one_emf_document():
    # Given three requests, one a 5xx and one a 4xx
    metrics = _metrics()
    metrics.record(200, 3.25)
    metrics.record(500, 10.0)
    metrics.record(400, 1.0)

    # When the interval is drained
    [doc] = metrics.drain()

    # Then the document follows the EMF spec: metadata under _aws, values at the root
    assert doc["_aws"] == {
        "Timestamp": 1_700_000_000_500,
        "CloudWatchMetrics": [
            {
                "Namespace": "ModelOps",
                "Dimensions": [["Model", "Variant"], ["Model", "Variant", "Version"]],
                "Metrics": [
                    {"Name": "Requests", "Unit": "Count", "StorageResolution": 1},
                    {"Name": "Errors", "Unit": "Count", "StorageResolution": 1},
                    {"Name": "Latency", "Unit": "Milliseconds", "StorageResolution": 1},
                ],
            }
        ],
    }
    assert {k: doc[k] for k in ("Model", "Variant", "Version")} == {
        "Model": "churn",
        "Variant": "canary",
        "Version": "3",
    }
    # And only 5xx count as errors
    assert (doc["Requests"], doc["Errors"], doc["Latency"]) == (3, 1, [3.25, 10.0, 1.0])
    # And every dimension and metric named in the metadata is present at the root
    directive = doc["_aws"]["CloudWatchMetrics"][0]
    assert all(name in doc for dims in directive["Dimensions"] for name in dims)
    assert all(m["Name"] in doc for m in directive["Metrics"])


def test_no_traffic_no_document():
    # Given an interval without requests
    metrics = _metrics()

    # Then nothing is emitted, and draining resets the counters
    assert metrics.drain() == []
    metrics.record(200, 1.0)
    assert len(metrics.drain()) == 1
    assert metrics.drain() == []


def test_more_than_100_latencies_spill_into_latency_only_documents():
    # Given 250 requests in one interval
    docs = emf_documents(
        namespace="ModelOps",
        dimensions={"Model": "m", "Variant": "stable", "Version": "1"},
        requests=250,
        errors=5,
        latencies_ms=[float(i) for i in range(250)],
        timestamp_ms=1,
    )

    # Then no metric carries more than 100 values and no value is lost or double-counted
    assert len(docs) == 3
    assert all(len(d.get("Latency", [])) <= 100 for d in docs)
    assert sum(len(d["Latency"]) for d in docs) == 250
    assert sum(d.get("Requests", 0) for d in docs) == 250
    assert sum(d.get("Errors", 0) for d in docs) == 5
    # And each document declares exactly the metrics it carries
    for d in docs:
        declared = {m["Name"] for m in d["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
        assert declared == {k for k in ("Requests", "Errors", "Latency") if k in d}


def test_flusher_writes_one_json_object_per_line():
    # Given recorded traffic and a stream
    metrics, stream = _metrics(), io.StringIO()
    for _ in range(150):
        metrics.record(200, 2.0)
    flusher = EmfFlusher(metrics, stream, interval=60)

    # When it flushes
    written = flusher.flush()

    # Then each line is one complete JSON document
    lines = stream.getvalue().splitlines()
    assert written == len(lines) == 2
    assert [json.loads(line)["_aws"]["Timestamp"] for line in lines] == [1_700_000_000_500] * 2


def test_version_dimension_can_change_after_the_model_loads():
    # Given a pod that learned its version from the model's metadata
    metrics = _metrics()
    metrics.set_dimension("Version", "churn-job-9")
    metrics.record(200, 1.0)

    # Then later documents carry it
    assert metrics.drain()[0]["Version"] == "churn-job-9"
