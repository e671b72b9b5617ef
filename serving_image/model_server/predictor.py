"""What `serve` predicts with, and the micro-batcher that feeds it.

`Predictor` answers a batch of rows with the native predictor (native.py: the forest as C, built
with the image) whatever its size, when the image has one. Without it, it uses the compiled Python
forest (forest.py) while the batch is small, where scikit-learn's fixed cost per call dominates,
and scikit-learn's `predict_proba` / `predict` once the batch is large enough for its vectorised
code to win. All give the same numbers (train.py checks the forest against the estimator before
shipping it, the image build checks the native predictor against both), so the choice is speed.
A model with categorical columns has neither (they split on numbers only): scikit-learn answers
every batch, fed an object matrix holding the categories' text.

`MicroBatcher` runs on the server's event loop. Requests that arrive together (in the same turn of
the loop) are predicted in one call: the first one schedules a flush with `call_soon`, which runs
after every request already read has been queued. An idle server therefore adds no wait at all; a
busy one pays the model's fixed cost once per turn instead of once per request. An optional
bounded wait (`max_wait_seconds`) trades latency for bigger batches; a batch never exceeds
`max_rows` (a request larger than that is predicted on its own).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from itertools import chain
from typing import Any, Protocol, cast

from model_server.artifact import ModelMetadata
from model_server.estimator import Estimator, scores
from model_server.forest import CompiledForest

log = logging.getLogger("model_server.predictor")
Row = Sequence[float | str]  # text only in a categorical column (inputs.parse_rows)
NumericRow = Sequence[float]
# The model's answer for one row: P(positive label) (binary), the predicted value (regression), or
# the k class probabilities (multiclass). `answer` turns it into the response's labels.
Answer = float | list[float]


class NativePredictor(Protocol):
    """A library built with the image (native.NativeForest, trees.NativeTrees): an Answer per row."""

    def predict_rows(self, rows: Sequence[NumericRow]) -> Sequence[Answer]: ...


# Batches of at least this many rows go to scikit-learn (when loaded): measured crossover on the
# reference model (20 features, 100 trees) is 60-120 rows; bench/serving/ measures it.
DEFAULT_COMPILED_MAX_ROWS = 64


class Predictor:
    def __init__(
        self,
        metadata: ModelMetadata,
        *,
        forest: CompiledForest | NativePredictor | None = None,
        estimator: Estimator | None = None,
        native: NativePredictor | None = None,
        compiled_max_rows: int = DEFAULT_COMPILED_MAX_ROWS,
    ) -> None:
        if forest is None and estimator is None and native is None:
            raise ValueError("a Predictor needs a native predictor, a compiled forest or an estimator")
        self.metadata = metadata
        self.native = native
        self.forest = forest
        self.estimator = estimator
        self.compiled_max_rows = compiled_max_rows

    @property
    def kind(self) -> str:
        """What answers a large batch: native, compiled (the Python forest), or the model's own
        library (scikit-learn, xgboost, lightgbm: the artifact's format)."""
        if self.native is not None:
            return "native"
        if self.estimator is None:
            return "compiled"
        return "scikit-learn" if self.metadata.format == "sklearn" else self.metadata.format

    def predict_rows(self, rows: Sequence[Row]) -> list[Answer]:
        """One Answer per row (P(positive label), the k class probabilities, or the value)."""
        # A model with a native predictor or a compiled forest has no categorical columns, so
        # inputs.parse_rows gave it numbers only.
        if self.native is not None:
            return list(self.native.predict_rows(cast(Sequence[NumericRow], rows)))
        forest, estimator = self.forest, self.estimator
        if forest is not None and (estimator is None or len(rows) < self.compiled_max_rows):
            return list(forest.predict_rows(cast(Sequence[NumericRow], rows)))
        assert estimator is not None  # the constructor refuses a Predictor with none of the three
        import numpy as np

        if self.metadata.categorical_columns:
            mixed = np.empty((len(rows), len(self.metadata.feature_columns)), dtype=object)
            mixed[:] = rows
            answers: list[Answer] = scores(estimator, self.metadata.task, mixed).tolist()
            return answers
        width = len(self.metadata.feature_columns)
        # One flat pass beats np.asarray's shape discovery on a list of lists (~20% on 1,600 rows).
        flat = np.fromiter(chain.from_iterable(rows), dtype=np.float64, count=len(rows) * width)
        matrix = flat.reshape(len(rows), width)
        predictions: list[Answer] = scores(estimator, self.metadata.task, matrix).tolist()
        return predictions


Pending = tuple[Sequence[Row], "asyncio.Future[list[Answer]]"]


class MicroBatcher:
    def __init__(
        self,
        predict: Callable[[Sequence[Row]], list[Answer]],
        *,
        max_rows: int = 4096,
        max_wait_seconds: float = 0.0,
    ) -> None:
        self._predict = predict
        self.max_rows = max_rows
        self.max_wait_seconds = max_wait_seconds
        self._pending: list[Pending] = []
        self._rows = 0
        self._handle: asyncio.Handle | asyncio.TimerHandle | None = None
        self.batches = 0  # flushed batches, for tests and logs

    def submit(self, rows: Sequence[Row]) -> asyncio.Future[list[Answer]]:
        """A future of the predictions for `rows`; call from the event loop."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Answer]] = loop.create_future()
        if self._pending and self._rows + len(rows) > self.max_rows:
            self._flush()  # the batch is full: predict it now and start a new one with these rows
        self._pending.append((rows, future))
        self._rows += len(rows)
        if self._rows >= self.max_rows:
            self._flush()
        elif self._handle is None:
            if self.max_wait_seconds > 0:
                self._handle = loop.call_later(self.max_wait_seconds, self._flush)
            else:
                self._handle = loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        batch, self._pending, self._rows = self._pending, [], 0
        live = [(rows, future) for rows, future in batch if not future.done()]  # skip cancelled
        if not live:
            return
        self.batches += 1
        rows = live[0][0] if len(live) == 1 else [row for part, _ in live for row in part]
        try:
            predictions = self._predict(rows)
        except Exception as exc:
            if len(live) == 1:
                live[0][1].set_exception(exc)
                return
            # One bad request must not fail the others: predict each on its own.
            log.warning(
                "batch of %d requests failed (%s: %s); retrying one by one",
                len(live),
                type(exc).__name__,
                exc,
            )
            for part, future in live:
                try:
                    future.set_result(self._predict(part))
                except Exception as single:
                    future.set_exception(single)
            return
        start = 0
        for part, future in live:
            future.set_result(predictions[start : start + len(part)])
            start += len(part)


def answer(metadata: ModelMetadata, predictions: list[Answer]) -> dict[str, Any]:
    """The /invocations document for the model's answers: a regression model's values as
    `predictions`; a classifier's labels by name (as they appear in the training data) as
    `predictions`, with each row's class `probabilities` in the order of `classes`."""
    classes = metadata.classes
    if classes is None:
        return {"predictions": predictions}
    if metadata.task == "binary_classification":
        negative, positive = classes
        positives = cast(list[float], predictions)
        return {
            # P = 0.5 exactly (a random forest's tied vote) is the negative class, as every
            # library's predict answers it: the first of equal probabilities (argmax), XGBoost's p > 0.5
            "predictions": [positive if p > 0.5 else negative for p in positives],
            "probabilities": [[1.0 - p, p] for p in positives],
            "classes": list(classes),
        }
    rows = cast(list[list[float]], predictions)
    return {
        "predictions": [classes[max(range(len(row)), key=row.__getitem__)] for row in rows],
        "probabilities": rows,
        "classes": list(classes),
    }
