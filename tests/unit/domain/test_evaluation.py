from __future__ import annotations

import io
import json
import tarfile

import pytest
from modelops.config import Objective
from modelops.errors import EvaluationError
from modelops.evaluation import Evaluation, judge, read_evaluation_from_tarball


def _tarball(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_reads_evaluation_from_model_tarball():
    doc = {"metric": "auc", "candidate": 0.91, "champion": 0.88, "n_validation": 200}
    evaluation = read_evaluation_from_tarball(
        _tarball({"model.joblib": b"x", "evaluation.json": json.dumps(doc).encode()}), source="s3://b/m"
    )
    assert evaluation == Evaluation("auc", 0.91, 0.88, 200)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"model.joblib": b"x"}, "no evaluation.json"),
        ({"evaluation.json": b"{not json"}, "not valid JSON"),
        (
            {"evaluation.json": b'{"metric": "auc", "candidate": "high"}'},
            "'candidate' must be a finite number",
        ),
        ({"evaluation.json": b'{"candidate": 0.9}'}, "'metric' missing"),
    ],
)
def test_missing_or_malformed_evaluation(files, message):
    with pytest.raises(EvaluationError, match=message):
        read_evaluation_from_tarball(_tarball(files), source="s3://b/m")


def test_not_a_tarball():
    with pytest.raises(EvaluationError, match="not a readable model.tar.gz"):
        read_evaluation_from_tarball(b"plain bytes", source="s3://b/m")


def test_first_version_is_better_by_definition():
    assert judge(Evaluation("auc", 0.7, None, 10), Objective(metric="auc")).decision == "better"


def test_maximize_and_minimize_directions():
    assert judge(Evaluation("auc", 0.90, 0.88, 10), Objective(metric="auc")).decision == "better"
    assert judge(Evaluation("auc", 0.88, 0.90, 10), Objective(metric="auc")).decision == "not_better"
    assert judge(Evaluation("rmse", 1.0, 1.2, 10), Objective(metric="rmse")).decision == "better"
    assert judge(Evaluation("rmse", 1.3, 1.2, 10), Objective(metric="rmse")).decision == "not_better"


def test_tie_and_below_margin_are_rejected_with_reason():
    tie = judge(Evaluation("auc", 0.9, 0.9, 10), Objective(metric="auc"))
    assert tie.decision == "not_better"
    small = judge(Evaluation("auc", 0.905, 0.9, 10), Objective(metric="auc", min_improvement=0.01))
    assert small.decision == "not_better" and "below the required 0.01" in small.reason


def test_metric_mismatch_is_an_error():
    with pytest.raises(EvaluationError, match="objective is 'auc'"):
        judge(Evaluation("rmse", 1.0, None, 10), Objective(metric="auc"))
