"""Duplicates and bursts (issue 5, item 3) at the integration tier: the real state machine in moto's
interpreter, the real handlers in-process, each S3 event through the real start_pipeline.

Every figure is read back from what the workflow recorded (execution histories, the state table,
the Deployments), not from the test's own bookkeeping.
"""

from __future__ import annotations

import itertools
import json
import random
import time
from collections import Counter
from datetime import datetime
from typing import Any

import pytest
from modelops.deployments import current_image

from tests.integration.workflow.conftest import OLD
from tests.integration.workflow.test_workflow import CSV, FAST, _object_created
from tests.waiting import wait_for

MODELS = [f"model-{i:02d}" for i in range(20)]
BURST = 1000
RUN_ANNOTATION = "modelops.io/run"


def lock_window(harness, arn: str) -> tuple[datetime, datetime] | None:
    """When the execution held the model's lock: from AcquireLock's exit with the lock acquired to
    entering ReleaseLock (inside the true holding time, so overlapping windows are real overlaps);
    None for a run that did not get the lock."""
    events = harness.sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    acquired = releasing = None
    for event in events:
        exited = event.get("stateExitedEventDetails") or {}
        entered = event.get("stateEnteredEventDetails") or {}
        if exited.get("name") == "AcquireLock" and json.loads(exited["output"])["lock"]["acquired"]:
            acquired = event["timestamp"]
        if entered.get("name") == "ReleaseLock" and acquired is not None:
            releasing = event["timestamp"]
    if acquired is None:
        return None
    assert releasing is not None, f"{arn} took the lock and never reached ReleaseLock"
    return acquired, releasing


@pytest.mark.timeout(180)
def test_twenty_models_at_once_proceed_independently(harness, kube):
    # Given 20 models, each with its own config, namespace, Deployments and lock
    for name in MODELS:
        harness.add_model(name, OLD, **FAST)

    # When one dataset lands for each, all at once
    arns = {}
    for name in MODELS:
        started = harness.start(_object_created(harness, f"incoming/{name}/2026-12-01.csv", CSV))
        assert started["started"], started
        arns[name] = started["execution_arn"]
    results = {name: harness.wait(arn, timeout=150) for name, arn in arns.items()}

    # Then every run was promoted
    for name, result in results.items():
        assert result["status"] == "SUCCEEDED" and "Promoted" in harness.states(arns[name]), (name, result)
    # And they ran at the same time: all 20 executions were running, and all 20 held their own
    # model's lock, at one moment (runs serialized through one lock could not do either)
    assert max(r["startDate"] for r in results.values()) < min(r["stopDate"] for r in results.values())
    windows = {name: lock_window(harness, arn) for name, arn in arns.items()}
    assert all(windows.values()), windows
    latest_acquired = max(w[0] for w in windows.values() if w)
    earliest_release = min(w[1] for w in windows.values() if w)
    assert latest_acquired < earliest_release, "some run only got its lock after another released"

    # And each model ended on its own new version: its champion, its history, its Deployments
    store = harness.store()
    images = set()
    for name in MODELS:
        run_id = arns[name].rsplit(":", 1)[-1]
        champion = store.get_doc(name, "CHAMPION")
        history = store.query_docs(name, "HISTORY#")
        stable, canary = kube.deployments[f"{name}-stable"], kube.deployments[f"{name}-canary"]
        assert champion["run_id"] == run_id and champion["version"] == "1", (name, champion)
        assert [(h["run_id"], h["status"]) for h in history] == [(run_id, "promoted")], (name, history)
        assert history[0]["dataset"]["key"] == f"incoming/{name}/2026-12-01.csv"
        assert current_image(stable, "model") == champion["image"] != OLD and canary["spec"]["replicas"] == 0
        for obj in (stable, canary):  # the last patch of each came from this model's own run
            assert obj["spec"]["template"]["metadata"]["annotations"][RUN_ANNOTATION] == run_id, name
        assert store.lock_holder(name) is None and store.get_doc(name, "PENDING") is None
        images.add(champion["image"])
    assert len(images) == len(MODELS), "two models ended on one image"
    # And no run touched another model's Deployments: every call named the model's own namespace
    strays = [call for call in kube.calls if call[1] != f"ns-{call[2].rsplit('-', 1)[0]}"]
    assert not strays and {call[2] for call in kube.calls} == {
        f"{name}-{variant}" for name in MODELS for variant in ("stable", "canary")
    }
    print(
        f"\n20 models: all running together for "
        f"{(min(r['stopDate'] for r in results.values()) - max(r['startDate'] for r in results.values())).total_seconds():.1f} s, "
        f"all holding their locks together for {(earliest_release - latest_acquired).total_seconds():.1f} s"
    )


@pytest.mark.timeout(900)
def test_a_thousand_uploads_within_a_minute_never_run_two_rollouts_and_end_on_the_newest(harness, kube):
    # Given a model serving its first version
    harness.put_model(**FAST)
    first = harness.start(_object_created(harness, "incoming/churn/0000-first.csv", CSV))
    assert harness.wait(first["execution_arn"])["status"] == "SUCCEEDED"
    keys = [f"incoming/churn/burst-{i:04d}.csv" for i in range(BURST)]  # upload order = key order

    # When 1,000 datasets land back to back, each Object Created event reaching start_pipeline
    # right after its upload, out of order within each batch of 20 (EventBridge keeps no order).
    # Step Functions starts them late (here: none evaluates until the last is delivered; in moto the
    # executions would otherwise take the delivering thread's interpreter time), so all 1,000 race
    # for the lock at once
    shuffle = random.Random(5)
    names = set()
    began = time.monotonic()
    with harness.executions_held():
        for batch in range(0, BURST, 20):
            events = [_object_created(harness, key, CSV) for key in keys[batch : batch + 20]]
            shuffle.shuffle(events)
            for event in events:
                started = harness.start(event)
                assert started["started"], started
                names.add(started["execution_name"])
        delivered_in = time.monotonic() - began
    assert len(names) == BURST and delivered_in < 60, f"{BURST} deliveries took {delivered_in:.1f} s"

    # Then every run ends and nothing is left: the lock is free and no request waits
    store = harness.store()
    first_name = first["execution_name"]

    unsettled = ["nothing read yet"]  # what the last poll found still going, for the failure message

    def settled() -> list[dict[str, Any]] | None:
        executions = [e for e in harness.executions() if e["name"] != first_name]
        running = [e["name"] for e in executions if e["status"] == "RUNNING"]
        if len(executions) < BURST or running:
            unsettled[:] = [f"{len(executions)} executions, running: {running[:10]}"]
            return None
        holder, pending = store.lock_holder("churn"), store.get_doc("churn", "PENDING")
        unsettled[:] = [f"lock holder {holder!r}, pending request {str(pending)[:800]}"]
        return executions if holder is None and pending is None else None

    try:
        executions = wait_for(settled, "every burst execution to end, the lock free", timeout=600, interval=1)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {unsettled[0]}") from None
    settled_in = time.monotonic() - began
    failed = [e for e in executions if e["status"] != "SUCCEEDED"]
    assert not failed, failed

    # And each upload started exactly one execution; the rest are follow-ups of coalesced requests
    follow_ups = [e for e in executions if "-queued-" in e["name"]]
    assert {e["name"] for e in executions} - {e["name"] for e in follow_ups} == names

    # And no two runs ever held the model at once (at most one execution past AcquireLock)
    locks = {
        e["name"]: json.loads(harness.sfn.describe_execution(executionArn=e["executionArn"])["output"])[
            "lock"
        ]
        for e in executions
    }
    arn = {e["name"]: e["executionArn"] for e in executions}
    windows = sorted(
        (lock_window(harness, arn[name]), name) for name, lock in locks.items() if lock["acquired"]
    )
    for ((_, released), before), ((acquired, _), after) in itertools.pairwise(windows):
        assert acquired >= released, f"{after} took the lock while {before} still held it"

    # And every other run was coalesced behind a holder, superseded by newer data, or found its
    # object already trained, and trained nothing (only the holders have a run record)
    outcomes = Counter(
        "superseded"
        if "superseded_by" in lock
        else "already trained"
        if "already_trained_by" in lock
        else "coalesced"
        for lock in locks.values()
        if not lock["acquired"]
    )
    records = {r["run_id"]: r for r in store.query_docs("churn", "HISTORY#")}
    assert set(records) - {first_name} == {name for _, name in windows}

    # And the last run to train used the newest upload (no run trained older data after newer),
    # was promoted, and is what serves
    trained = [records[name] for _, name in windows]
    trained_keys = [r["dataset"]["key"] for r in trained]
    assert trained_keys[-1] == keys[-1] and trained_keys == sorted(set(trained_keys)), trained_keys
    assert trained[-1]["status"] == "promoted"
    assert (
        current_image(kube.deployments["churn-stable"], "model")
        == store.get_doc("churn", "CHAMPION")["image"]
    )
    assert store.get_doc("churn", "CHAMPION")["run_id"] == trained[-1]["run_id"]
    assert kube.deployments["churn-canary"]["spec"]["replicas"] == 0
    print(
        f"\nburst: {BURST} uploads delivered in {delivered_in:.1f} s, all {len(executions)} executions "
        f"ended {settled_in:.0f} s after the first upload; {len(windows)} took the lock and trained, "
        f"{dict(outcomes)}, {len(follow_ups)} follow-ups"
    )
