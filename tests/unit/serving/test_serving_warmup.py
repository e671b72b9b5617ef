"""The readiness warm-up (model_server/warmup.py): /ping stays 503 until the model's check rows have
gone through a request's path; bounded by SERVE_WARMUP_SECONDS; never keeps a servable model out."""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
from pathlib import Path

import pytest
from model_server import server as server_module
from model_server.checkrows import CHECK_FILE
from model_server.contract import ContractError, serve_settings
from model_server.emf import RequestMetrics
from model_server.predictor import Predictor
from model_server.server import ModelService
from model_server.warmup import SINGLE_ROWS, WarmUp, warm_up

CUSTOMER = [10, 80, 2, 30, 1, 0]
NEW_CUSTOMER = [0, 80, 2, 30, 1, 0]  # 0 months of tenure: the demo team's model fails on it


@pytest.fixture
def trained(demo_team_model_dir) -> Path:
    """The demo team's model (script mode, trained by the real `train`): check.json, baseline.json."""
    return Path(demo_team_model_dir)


@pytest.fixture
def model_dir(trained, tmp_path) -> Path:
    """A copy of the trained model folder, for a test to change."""
    return Path(shutil.copytree(trained, tmp_path / "model"))


def _service(model_dir: Path, **env: str) -> ModelService:
    settings = serve_settings({"MODELOPS_MODEL": "churn", "MODELOPS_VERSION": "7", **env})
    metrics = RequestMetrics(namespace="ModelOps", model="churn", variant="canary", version="7")
    return ModelService(model_dir, settings, metrics)


def _loaded(service: ModelService) -> Predictor:
    service.load()
    assert service.predictor is not None
    return service.predictor


def _check_rows(model_dir: Path) -> list[list[object]]:
    rows: list[list[object]] = json.loads((model_dir / CHECK_FILE).read_text())["rows"]
    return rows


def test_ping_says_warming_up_until_the_check_rows_went_through_the_predictor_uncounted(trained, monkeypatch):
    # Given a service loading a model with check rows and a drift baseline (a budget no loaded
    # machine spends)
    service = _service(trained, SERVE_WARMUP_SECONDS="120")
    during: list[tuple[tuple[int, dict], WarmUp]] = []
    predicted: list[int] = []

    def observed(predictor: Predictor, folder: Path, budget: float) -> WarmUp:
        real = predictor.predict_rows
        predictor.predict_rows = lambda rows: (predicted.append(len(rows)), real(rows))[1]  # type: ignore[method-assign]
        try:
            done = warm_up(predictor, folder, budget)
        finally:
            del predictor.predict_rows
        during.append((service.ping(), done))
        return done

    monkeypatch.setattr(server_module, "warm_up", observed)

    # When it loads
    service.load()

    # Then during the warm-up /ping said 503 "warming up" while the predictor answered the check
    # rows one at a time (up to SINGLE_ROWS) and then all of them as one batch, with no failure
    rows = len(_check_rows(trained))
    singles = min(rows, SINGLE_ROWS)
    [(ping, done)] = during
    assert ping == (503, {"status": "warming up"})
    assert predicted == [1] * singles + [rows]
    assert (done.requests, done.rows, done.failed, done.stopped) == (singles + 1, singles + rows, 0, None)
    # And only then is /ping 200, with nothing of the warm-up counted: no requests, no drift rows
    assert service.ping()[0] == 200
    assert service.metrics.stats is not None and service.metrics.drain() == []


def test_a_model_failing_on_check_rows_is_warmed_on_the_others_and_still_served(model_dir):
    # Given check rows holding a new customer, on whom the demo team's model fails
    doc = json.loads((model_dir / CHECK_FILE).read_text())
    doc["rows"][1:1] = [NEW_CUSTOMER]
    (model_dir / CHECK_FILE).write_text(json.dumps(doc))
    service = _service(model_dir, SERVE_WARMUP_SECONDS="0")
    predictor = _loaded(service)

    # When the warm-up runs
    done = warm_up(predictor, model_dir, 120.0)

    # Then it went on past that row, naming the model's error: only that row and the batch holding
    # it failed
    assert done.requests == min(len(doc["rows"]), SINGLE_ROWS) + 1 and done.failed == 2
    assert done.first_error == "ValueError: math domain error" and done.stopped is None
    # And the service is ready and answers the customers the model can answer
    assert service.ping()[0] == 200
    status, answer = asyncio.run(
        service.invoke(json.dumps({"instances": [CUSTOMER]}).encode(), "application/json")
    )
    assert status == 200 and len(answer["predictions"]) == 1


def test_the_warm_up_stops_when_its_budget_is_spent(trained):
    # Given a loaded predictor and a clock that advances one second per reading
    predictor = _loaded(_service(trained, SERVE_WARMUP_SECONDS="0"))
    ticks = itertools.count()

    # When the warm-up has 3 seconds (started at 0; checked before each request at 1, 2, 3)
    done = warm_up(predictor, trained, 3.0, clock=lambda: float(next(ticks)))

    # Then it sent the two requests the budget allowed, and says it stopped for the budget
    assert (done.requests, done.failed, done.stopped) == (2, 0, "budget of 3s spent")


def test_switched_off_or_without_check_rows_the_service_is_ready_once_loaded(model_dir):
    # Given SERVE_WARMUP_SECONDS=0, the warm-up does nothing and the loaded service is ready
    service = _service(model_dir, SERVE_WARMUP_SECONDS="0")
    predictor = _loaded(service)
    assert service.ping()[0] == 200
    assert warm_up(predictor, model_dir, 0).stopped == "switched off (SERVE_WARMUP_SECONDS=0)"

    # Given a model folder without check.json (a model from before check rows were stored)
    (model_dir / CHECK_FILE).unlink()
    service = _service(model_dir)
    # When it loads, then it is ready, and the warm-up says why it did nothing
    predictor = _loaded(service)
    assert service.ping()[0] == 200
    done = warm_up(predictor, model_dir, 2.0)
    assert done.requests == 0 and done.stopped is not None and done.stopped.startswith("no check rows")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-1", "SERVE_WARMUP_SECONDS=-1.0 must be >= 0"),
        ("soon", "SERVE_WARMUP_SECONDS='soon' is not a number"),
    ],
)
def test_a_bad_warm_up_budget_is_refused_naming_the_variable(value, message):
    with pytest.raises(ContractError) as caught:
        serve_settings({"SERVE_WARMUP_SECONDS": value})
    assert str(caught.value) == message
