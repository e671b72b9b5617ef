"""/invocations bodies and the model service behind the endpoints (in-process, no sockets)."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import pytest
from model_server.contract import serve_settings
from model_server.emf import RequestMetrics
from model_server.errors import BadRequestError
from model_server.inputs import parse_instances
from model_server.server import ModelService
from model_server.train import main as train_main

from modelops_local.sample_data import CHURN_FEATURES, CHURN_LABEL, generate_churn_csv

FEATURES = ("a", "b", "c")


def test_json_instances_as_lists_objects_or_a_bare_list():
    # Given the three JSON shapes the server accepts
    bodies = [
        {"instances": [[1, 2, 3], [4, 5, None]]},
        {"instances": [{"a": 1, "b": 2, "c": 3}, {"c": None, "b": 5, "a": 4}]},
        [[1, 2, 3], [4, 5, None]],
    ]
    for body in bodies:
        # When parsed
        rows = parse_instances(json.dumps(body).encode(), "application/json; charset=utf-8", FEATURES)

        # Then they give the same matrix, null as NaN, in the model's feature order
        assert rows.shape == (2, 3)
        assert rows[0].tolist() == [1.0, 2.0, 3.0]
        assert rows[1][:2].tolist() == [4.0, 5.0] and math.isnan(rows[1][2])


def test_csv_rows_without_header():
    # Given CSV rows with an empty cell and a blank line
    rows = parse_instances(b"1,2,3\n\n4,,6\n", "text/csv", FEATURES)

    # Then every row is parsed, the empty cell is NaN
    assert rows.shape == (2, 3)
    assert math.isnan(rows[1][1])


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (
            b'{"instances": [[1, 2]]}',
            "application/json",
            400,
            "instance 0 has 2 values; the model expects 3 features (a, b, c)",
        ),
        (b"1,2\n", "text/csv", 400, "CSV line 1 has 2 values; the model expects 3 features (a, b, c)"),
        (b'{"instances": [{"a": 1, "b": 2}]}', "application/json", 400, "instance 0 lacks features ['c']"),
        (
            b'{"instances": [{"a": 1, "b": 2, "c": 3, "d": 4}]}',
            "application/json",
            400,
            "unknown features ['d']",
        ),
        (
            b'{"instances": [[1, "x", 3]]}',
            "application/json",
            400,
            "instance 0 feature 'b' is not a number: 'x'",
        ),
        (b'{"rows": []}', "application/json", 400, 'JSON object has no "instances" field'),
        (b'{"instances": []}', "application/json", 400, "no instances"),
        (b"{not json", "application/json", 400, "body is not valid JSON"),
        (b"1,2,3", "text/plain", 415, "unsupported Content-Type 'text/plain'"),
        (b"1,2,3", None, 415, "unsupported Content-Type 'none'"),
    ],
)
def test_bad_requests_are_refused_with_a_clear_message(body, content_type, status, message):
    # When a bad body is parsed
    with pytest.raises(BadRequestError) as caught:
        parse_instances(body, content_type, FEATURES)

    # Then the status and the message say what is wrong
    assert caught.value.status == status
    assert message in caught.value.message


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A model trained once for this module."""
    base = tmp_path_factory.mktemp("ml")
    (base / "input" / "config").mkdir(parents=True)
    (base / "input" / "config" / "hyperparameters.json").write_text(
        json.dumps(
            {
                "label_column": CHURN_LABEL,
                "feature_columns": json.dumps(list(CHURN_FEATURES)),
                "max_iter": "10",
            }
        )
    )
    generate_churn_csv(base / "input" / "data" / "train" / "d.csv", 200, 3)
    assert train_main({"SAGEMAKER_BASE_DIR": str(base)}) == 0
    return base / "model"


def _invoke(service: ModelService, body: bytes, content_type: str) -> tuple[int, dict]:
    """One /invocations call on the service, on an event loop of its own (the server runs one)."""
    return asyncio.run(service.invoke(body, content_type))


def _service(model_dir: Path, **env: str) -> ModelService:
    settings = serve_settings({"MODELOPS_MODEL": "churn", "MODELOPS_VERSION": "7", **env})
    metrics = RequestMetrics(namespace="ModelOps", model="churn", variant="stable", version="7")
    return ModelService(model_dir, settings, metrics)


def test_ping_is_503_until_the_model_is_loaded_then_200(model_dir):
    # Given a service that has not loaded its model yet
    service = _service(model_dir)
    assert service.ping()[0] == 503

    # When it loads
    service.load()

    # Then it is ready and answers each row's label by name with its class probabilities and version
    assert service.ping() == (200, {"status": "ready", "model_version": "7", "predictor": "scikit-learn"})
    status, doc = _invoke(
        service, json.dumps({"instances": [[10, 80, 2, 30, 1, 0]] * 3}).encode(), "application/json"
    )
    assert status == 200
    assert doc["classes"] == ["0", "1"]
    assert len(doc["predictions"]) == 3 and set(doc["predictions"]) <= {"0", "1"}
    for label, (negative, positive) in zip(doc["predictions"], doc["probabilities"], strict=True):
        assert negative + positive == pytest.approx(1.0) and 0.0 <= positive <= 1.0
        assert label == ("1" if positive > 0.5 else "0")
    assert doc["model_version"] == "7"


def test_an_unloadable_model_keeps_ping_at_503_with_the_reason(tmp_path):
    # Given an empty model folder
    service = _service_without_model(tmp_path)

    # When it tries to load
    service.load()

    # Then ping stays 503 and says why
    status, doc = service.ping()
    assert status == 503 and "metadata.json not found" in doc["error"]
    assert _invoke(service, b"[]", "application/json")[0] == 503


def _service_without_model(tmp_path: Path) -> ModelService:
    settings = serve_settings({})
    return ModelService(
        tmp_path, settings, RequestMetrics(namespace="N", model="m", variant="stable", version="v")
    )


def test_wrong_feature_count_names_the_expected_count(model_dir):
    # Given a loaded model with six features
    service = _service(model_dir)
    service.load()

    # When a row has five values
    status, doc = _invoke(service, b"1,2,3,4,5\n", "text/csv")

    # Then the answer is 400 naming the expected count
    assert status == 400
    assert "the model expects 6 features" in doc["error"]


def test_a_model_that_fails_on_some_rows_answers_500_for_those_requests_only(demo_team_model_dir):
    # Given the demo team's model, whose feature step takes log(tenure) (trained by its script)
    service = _service(demo_team_model_dir)
    service.load()
    customer = [10, 80, 2, 30, 1, 0]
    new_customer = [0, 80, 2, 30, 1, 0]

    # When an existing customer and a new one (0 months of tenure) are asked about
    ok = _invoke(service, json.dumps({"instances": [customer]}).encode(), "application/json")
    failed = _invoke(service, json.dumps({"instances": [new_customer]}).encode(), "application/json")

    # Then the first is answered and the second is a 500 naming the model's own error
    assert ok[0] == 200 and ok[1]["classes"] == ["0", "1"]
    assert failed == (500, {"error": "prediction failed: ValueError: math domain error"})
    # And the two together fail as one request would: the model's answer, not the server's choice
    both = _invoke(service, json.dumps({"instances": [customer, new_customer]}).encode(), "application/json")
    assert both[0] == 500


def test_a_tied_binary_vote_is_the_negative_class_as_the_libraries_predict_it():
    # A random forest's P(positive) of exactly 0.5 (half the trees each way): scikit-learn's
    # predict takes the first of equal probabilities (argmax), XGBoost's p > 0.5: the negative class
    import numpy as np
    from model_server.predictor import answer
    from sklearn.ensemble import RandomForestClassifier

    from tests.serving_models import classifier_metadata

    doc = answer(classifier_metadata(2, classes=("no", "yes")), [0.5, 0.5000001, 0.4999999])
    assert doc["predictions"] == ["no", "yes", "no"]
    X = np.array([[0.0, 0.0], [1.0, 1.0]])
    forest = RandomForestClassifier(n_estimators=2, bootstrap=False, max_features=None, random_state=0)
    forest.fit(X, [0, 1])
    forest.estimators_[1].tree_.value[:] = forest.estimators_[1].tree_.value[:, :, ::-1]  # a 1-1 vote
    assert forest.predict_proba(X[:1])[0, 1] == 0.5 and forest.predict(X[:1])[0] == 0


def test_served_rows_are_counted_against_the_baseline_and_flushed_as_emf(model_dir):
    # Given a loaded model whose folder holds the baseline.json its training wrote
    service = _service(model_dir)
    service.load()
    baseline = json.loads((model_dir / "baseline.json").read_text())
    tenure = baseline["features"][0]

    # When three rows are predicted: a tenure below every edge, one above, and a missing one
    low, high = tenure["edges"][0] - 1.0, tenure["edges"][-1] + 1.0
    rows = [[low, 80, 2, 30, 1, 0], [high, 80, 2, 30, 1, 0], [None, 80, 2, 30, 1, 0]]
    status, _ = _invoke(service, json.dumps({"instances": rows}).encode(), "application/json")
    assert status == 200
    documents = service.metrics.drain()

    # Then the first feature's histogram counts code 1 (lowest bin), k (highest) and k+1 (missing)
    by_feature = {d["Feature"]: d["FeatureBins"] for d in documents if "FeatureBins" in d}
    k = len(tenure["edges"]) + 1
    assert set(by_feature) == set(CHURN_FEATURES)
    assert by_feature[tenure["name"]]["Values"] == [1.0, float(k), float(k + 1)]
    assert by_feature[tenure["name"]]["Counts"] == [1, 1, 1]
    [prediction] = [d["PredictionBins"] for d in documents if "PredictionBins" in d]
    assert prediction["Count"] == 3


def test_drift_statistics_can_be_switched_off(model_dir):
    service = _service(model_dir, SERVE_DRIFT_STATS="off")
    service.load()
    status, _ = _invoke(
        service, json.dumps({"instances": [[10, 80, 2, 30, 1, 0]]}).encode(), "application/json"
    )
    assert status == 200
    assert service.metrics.stats is None
    assert not [d for d in service.metrics.drain() if "FeatureBins" in d]
