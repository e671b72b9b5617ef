"""The per-model lock and coalescing: a request that finds the model locked is queued behind the
holder only while the holder still holds the lock, so the holder's ReleaseLock always sees it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from modelops.adapters.store import StateStore
from modelops.config import load_config_file
from modelops.errors import TransientError
from modelops.run import Run
from modelops.steps.lock import COALESCE_ATTEMPTS, acquire, release
from modelops.steps.resolve import resolve

ROOT = Path(__file__).resolve().parents[3]
HOLDER = "churn-s3-holder"


class _Config:
    def __init__(self, store: StateStore) -> None:
        self.store = store

    def get_model_document(self, model: str) -> dict[str, Any] | None:
        return self.store.get_model_document(model)

    def get_doc(self, model: str, key: str) -> dict[str, Any] | None:
        return self.store.get_doc(model, key)


class _Executions:
    def __init__(self) -> None:
        self.started: list[str] = []

    def start(self, name: str, payload: str) -> str | None:
        self.started.append(name)
        return name


@pytest.fixture
def store(store: StateStore) -> StateStore:
    store.put_model_document("churn", load_config_file(ROOT / "models" / "churn.yaml").to_document())
    return store


def _run(store: StateStore, name: str) -> Run:
    return resolve(
        {
            "model": "churn",
            "trigger": "manual",
            "dataset": {"key": "incoming/churn/d.csv"},
            "idempotency_key": name,
        },
        execution_name=name,
        store=_Config(store),  # type: ignore[arg-type]
        objects=None,  # type: ignore[arg-type]
        bucket="bucket",
        stack_name="stack",
        sagemaker_role_arn="arn:aws:iam::123456789012:role/sm",
        training_image="123456789012.dkr.ecr.us-east-1.amazonaws.com/modelops-serving:train",
        poll_seconds=30,
    )


def test_a_request_is_queued_only_while_its_holder_holds_an_unexpired_lock(store):
    request = {"model": "churn", "reason": "queued"}
    # Given no lock at all, then a lock held by someone else, then an expired one: nothing is queued
    assert store.coalesce("churn", HOLDER, request) is False
    store.acquire_lock("churn", "churn-other", 600)
    assert store.coalesce("churn", HOLDER, request) is False
    store.release_lock("churn", "churn-other")
    store.acquire_lock("churn", HOLDER, 60, now=1_000)
    assert store.coalesce("churn", HOLDER, request, now=1_061) is False
    assert store.get_doc("churn", "PENDING") is None
    # And while the holder holds it, the request is the model's PENDING request
    assert store.coalesce("churn", HOLDER, request, now=1_030) is True
    assert store.get_doc("churn", "PENDING") == request


class _ReleasesOnFirstCoalesce(StateStore):
    """The race: the holder's ReleaseLock (release, pop PENDING) runs between a run's failed
    AcquireLock write and its queueing."""

    def __init__(self, store: StateStore, executions: _Executions) -> None:
        super().__init__(store.table, store.client)
        self.executions = executions
        self.raced = 0

    def coalesce(self, model: str, holder: str, request: dict[str, Any], *, now: float | None = None) -> bool:
        if not self.raced:
            self.raced += 1
            release(model, holder, store=StateStore(self.table, self.client), executions=self.executions)
        return super().coalesce(model, holder, request, now=now)


def test_a_run_whose_holder_releases_while_it_queues_takes_the_lock_instead_of_being_stranded(store):
    # Given a run holding the lock
    executions = _Executions()
    store.acquire_lock("churn", HOLDER, 600)
    racing = _ReleasesOnFirstCoalesce(store, executions)
    # When another run finds it locked and the holder releases (finding nothing queued) before the
    # second run's request is queued
    result = acquire(_run(store, "churn-manual-late"), store=racing, objects=None, executions=executions)  # type: ignore[arg-type]
    # Then the second run takes the lock itself: nothing waits in PENDING for a release that is over
    assert racing.raced == 1 and executions.started == []
    assert result["acquired"] is True
    assert store.lock_holder("churn") is not None and store.lock_holder("churn")[0] == "churn-manual-late"
    assert store.get_doc("churn", "PENDING") is None


class _ChangesHandsEveryTime(StateStore):
    def __init__(self, store: StateStore) -> None:
        super().__init__(store.table, store.client)
        self.turn = 0

    def coalesce(self, model: str, holder: str, request: dict[str, Any], *, now: float | None = None) -> bool:
        self.turn += 1
        self.release_lock(model, holder)
        self.acquire_lock(model, f"churn-other-{self.turn}", 600)
        return super().coalesce(model, holder, request, now=now)


def test_a_lock_that_keeps_changing_hands_fails_the_state_for_its_retry_and_queues_nothing(store):
    store.acquire_lock("churn", "churn-other-0", 600)
    churning = _ChangesHandsEveryTime(store)
    with pytest.raises(TransientError, match=f"changed hands {COALESCE_ATTEMPTS} times"):
        acquire(_run(store, "churn-manual-unlucky"), store=churning, objects=None, executions=_Executions())  # type: ignore[arg-type]
    assert churning.turn == COALESCE_ATTEMPTS and store.get_doc("churn", "PENDING") is None
