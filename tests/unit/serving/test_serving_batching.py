"""Micro-batching on the event loop and the choice between the compiled forest and scikit-learn."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
import pytest
from model_server.forest import compile_forest, export_forest
from model_server.predictor import MicroBatcher, Predictor
from sklearn.datasets import make_classification
from sklearn.ensemble import HistGradientBoostingClassifier

from tests.serving_models import classifier_metadata


class Recorder:
    """A predict function that returns each row's first value and records every call's size."""

    def __init__(self, poison: float | None = None) -> None:
        self.calls: list[int] = []
        self.poison = poison

    def __call__(self, rows: Sequence[Sequence[float]]) -> list[float]:
        self.calls.append(len(rows))
        if self.poison is not None and any(row[0] == self.poison for row in rows):
            raise ValueError("poisoned row")
        return [float(row[0]) for row in rows]


def _run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=10))


def test_requests_that_arrive_together_are_predicted_in_one_call_and_answered_in_order():
    recorder = Recorder()
    batcher = MicroBatcher(recorder)

    async def scenario():
        # Given 20 requests submitted in the same turn of the loop, of 1 to 3 rows each
        requests = [[[float(i * 10 + j)] for j in range(1 + i % 3)] for i in range(20)]
        futures = [batcher.submit(rows) for rows in requests]
        # Then one call predicts them all and each request gets exactly its own rows back
        results = await asyncio.gather(*futures)
        assert recorder.calls == [sum(len(r) for r in requests)]
        assert results == [[row[0] for row in rows] for rows in requests]

    _run(scenario())


def test_an_idle_server_adds_no_wait_and_requests_apart_are_separate_batches():
    recorder = Recorder()
    batcher = MicroBatcher(recorder)

    async def scenario():
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await batcher.submit([[1.0]]) == [1.0]
        assert loop.time() - started < 0.05
        assert await batcher.submit([[2.0]]) == [2.0]
        assert recorder.calls == [1, 1]

    _run(scenario())


def test_a_batch_never_exceeds_max_rows_unless_one_request_is_bigger():
    recorder = Recorder()
    batcher = MicroBatcher(recorder, max_rows=10)

    async def scenario():
        futures = [batcher.submit([[float(i)]] * 4) for i in range(5)]  # 20 rows, 4 per request
        futures.append(batcher.submit([[9.0]] * 25))  # one request larger than a batch
        results = await asyncio.gather(*futures)
        assert all(size <= 10 or size == 25 for size in recorder.calls)
        assert sum(recorder.calls) == 45
        assert results[:5] == [[float(i)] * 4 for i in range(5)] and results[5] == [9.0] * 25

    _run(scenario())


def test_a_bounded_wait_gathers_requests_that_arrive_within_it():
    recorder = Recorder()
    batcher = MicroBatcher(recorder, max_wait_seconds=0.05)

    async def scenario():
        first = batcher.submit([[1.0]])
        await asyncio.sleep(0.01)
        second = batcher.submit([[2.0]])
        assert await asyncio.gather(first, second) == [[1.0], [2.0]]
        assert recorder.calls == [2]

    _run(scenario())


def test_a_request_that_breaks_the_model_fails_alone():
    recorder = Recorder(poison=666.0)
    batcher = MicroBatcher(recorder)

    async def scenario():
        futures = [batcher.submit([[1.0]]), batcher.submit([[666.0]]), batcher.submit([[3.0]])]
        results = await asyncio.gather(*futures, return_exceptions=True)
        assert results[0] == [1.0] and results[2] == [3.0]
        assert isinstance(results[1], ValueError)

    _run(scenario())


def test_a_cancelled_request_is_left_out_of_the_batch():
    recorder = Recorder()
    batcher = MicroBatcher(recorder)

    async def scenario():
        gone = batcher.submit([[1.0], [1.0]])
        kept = batcher.submit([[2.0]])
        gone.cancel()  # the client disconnected before the flush
        assert await kept == [2.0]
        assert recorder.calls == [1]

    _run(scenario())


@pytest.fixture(scope="module")
def model():
    X, y = make_classification(n_samples=1200, n_features=6, random_state=0)
    estimator = HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(X[:1000], y[:1000])
    doc, _ = export_forest(estimator)
    metadata = classifier_metadata(6)
    return estimator, compile_forest(doc), metadata, X[1000:]


def test_small_batches_use_the_forest_large_ones_scikit_learn_with_the_same_answers(model):
    estimator, forest, metadata, holdout = model
    calls: list[str] = []

    class Spy:
        def predict_proba(self, matrix):
            calls.append("sklearn")
            return estimator.predict_proba(matrix)

    predictor = Predictor(metadata, forest=forest, estimator=Spy(), compiled_max_rows=64)
    want = estimator.predict_proba(holdout)[:, 1]
    small = predictor.predict_rows(holdout[:10].tolist())
    assert calls == []
    large = predictor.predict_rows(holdout.tolist())
    assert calls == ["sklearn"]
    assert np.max(np.abs(np.asarray(small) - want[:10])) <= 1e-12
    assert np.max(np.abs(np.asarray(large) - want)) <= 1e-12


def test_until_scikit_learn_is_loaded_the_forest_answers_every_batch(model):
    _, forest, metadata, holdout = model
    predictor = Predictor(metadata, forest=forest)
    assert len(predictor.predict_rows(holdout.tolist())) == len(holdout)
    with pytest.raises(ValueError, match="needs a native predictor, a compiled forest or an estimator"):
        Predictor(metadata)
