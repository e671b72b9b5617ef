"""AcquireLock and ReleaseLock: one run per model at a time; what arrives meanwhile is coalesced.

A run that finds the model locked stores its request as the model's PENDING request (newest wins),
in one transaction with a check that the holder still holds the lock; the holder's ReleaseLock
(release, then pop PENDING) starts one follow-up run for it. A run started by data checks, once it
holds the lock, whether newer data arrived or its data was already trained (`newer_or_trained`).
"""

from __future__ import annotations

from typing import Any

from modelops.errors import DatasetInvalidError, TransientError
from modelops.ports import Executions, ObjectStore, Store
from modelops.run import Run
from modelops.steps.dataset import newest_object
from modelops.triggers import PipelineRequest, queued_request

#: Triggers whose run trains "the data that arrived": an upload, or the follow-up of uploads
#: coalesced behind a holder. They defer to newer data and never retrain an object already trained.
#: A schedule or a manual start asks for a run and gets one.
DATA_TRIGGERS = ("s3", "queued")
#: Tries at taking the lock or queueing behind its holder before the state fails and is retried
#: (each failed try means the lock was released or taken over in between).
COALESCE_ATTEMPTS = 5
#: Slack on the lock's expiry beyond the run's own longest path.
LOCK_MARGIN_SECONDS = 3600


def lock_ttl_seconds(run: Run) -> int:
    """Long enough for the run's longest path: training, both rollouts, bake, approval and watch."""
    training, canary = run.config.training, run.config.canary
    return (
        training.max_runtime_seconds
        + (training.max_wait_seconds or 0)
        + 2 * canary.ready_timeout_seconds
        + canary.bake_seconds
        + canary.watch_seconds
        + (run.config.approval.timeout_seconds if run.config.approval.required else 0)
        + LOCK_MARGIN_SECONDS
    )


def acquire(run: Run, *, store: Store, objects: ObjectStore, executions: Executions) -> dict[str, Any]:
    """Take the model's lock, or coalesce this request behind its holder. A data-triggered run that
    gets the lock but has newer or already-trained data gives it back at once, starting the
    follow-up of anything coalesced meanwhile."""
    for _ in range(COALESCE_ATTEMPTS):
        result = store.acquire_lock(run.model, run.run_id, lock_ttl_seconds(run))
        if result.acquired:
            break
        # Coalesced only while the holder still holds the lock: a PENDING request written after
        # its ReleaseLock popped PENDING would wait for a run that never comes.
        if result.holder and store.coalesce(run.model, result.holder, run.request.model_dump(mode="json")):
            return {
                "acquired": False,
                "holder": result.holder,
                "message": f"coalesced: {result.holder} is rolling out {run.model}; this request runs after it finishes",
            }
    else:
        raise TransientError(
            f"the lock on {run.model} changed hands {COALESCE_ATTEMPTS} times while this run tried to "
            "take it or queue behind it; the state retries (Retry on TransientError)"
        )
    try:
        skip, trains = newer_or_trained(run, objects, store)
    except Exception:
        store.release_lock(run.model, run.run_id)  # the retried state takes it again
        raise
    if skip is None:
        return {"acquired": True, "expires_at": result.expires_at, "object": trains}
    released = release(run.model, run.run_id, store=store, executions=executions)
    return {"acquired": False, **skip, "follow_up": released["follow_up"]}


def newer_or_trained(
    run: Run, objects: ObjectStore, store: Store
) -> tuple[dict[str, str] | None, dict[str, str] | None]:
    """Checked while holding the lock, for a run started by data (DATA_TRIGGERS) on an object under
    the model's prefix: (why it must not train or None, the object it trains as {key, etag} or None).

    Uploads can be delivered, and runs reach the lock, in any order. A run that finds a newer object
    defers to it: the newer object's own run trains it, or, if that run was coalesced, the follow-up
    does (follow-ups take the newest object). A run whose object (same key and ETag) was already
    trained, typically the follow-up of a burst whose newest upload's own run trained it, has nothing
    new (`record_outcome` records TRAINED once a run's candidate was evaluated). Checking under the
    lock, each holder sees every upload before it, so the last run to train uses the newest data and
    none retrains older data after it; only holders list the prefix, so a burst's coalesced runs
    cost a conditional write and a transaction each."""
    dataset, prefix = run.dataset, run.config.data_prefix
    if run.request.trigger not in DATA_TRIGGERS or not dataset.key.startswith(prefix):
        return None, None
    try:
        key, etag = newest_object(objects, dataset.bucket, prefix)
    except DatasetInvalidError:
        return None, None  # the object is gone: validation reports it
    if key != dataset.key:
        newer = {
            "superseded_by": key,
            "message": f"superseded: {key} is newer than {dataset.key} and is trained instead",
        }
        return newer, None
    trained = store.get_doc(run.model, "TRAINED")
    if trained and (trained.get("key"), trained.get("etag")) == (key, etag):
        done = {
            "already_trained_by": trained["run_id"],
            "message": f"{key} (ETag {etag}) was already trained by {trained['run_id']}; nothing newer to "
            "train (start the model manually to retrain it)",
        }
        return done, None
    return None, {"key": key, "etag": etag}


def release(model: str, run_id: str, *, store: Store, executions: Executions) -> dict[str, Any]:
    """Release the lock; if requests were coalesced meanwhile, start one run for the newest."""
    released = store.release_lock(model, run_id)
    pending = store.pop_pending(model)
    follow_up = None
    if pending is not None:
        request = queued_request(PipelineRequest.model_validate(pending), run_id)
        try:
            executions.start(request.execution_name(), request.model_dump_json())
        except Exception:
            store.put_doc(model, "PENDING", pending)  # keep it for the next release
            raise
        follow_up = request.execution_name()  # started now, or already by an earlier try
    return {"released": released, "follow_up": follow_up}
