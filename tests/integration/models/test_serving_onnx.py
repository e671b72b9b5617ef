"""ONNX as a format of the model-artifact contract: a team's script (script mode, through `train`)
trains a scikit-learn Pipeline, converts it with skl2onnx and saves model.onnx; the harness judges
it like any model and `serve` answers as the original Pipeline does (within 1e-5: onnxruntime
computes in float32), labels by name."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest
from model_server.artifact import load_model
from model_server.contract import container_paths
from model_server.errors import ModelLoadError
from model_server.onnx_model import graph_class_labels, load_onnx
from model_server.train import main

from modelops_local.sample_data import CHURN_FEATURES, CHURN_LABEL, churn_rows, generate_churn_csv
from tests.integration.models.test_serving_script_mode import TIER, _code, _failure, _job
from tests.multiclass_data import TIER_NUMERIC, TIERS, tier_rows
from tests.regression_data import PRICE_FEATURES, PRICE_LABEL, generate_price_csv
from tests.unit.serving.test_serving_multiclass import _invoke

skl2onnx = pytest.importorskip("skl2onnx")

ROOT = Path(__file__).resolve().parents[3]
TOLERANCE = 1e-5  # the Pipeline computes in float64, onnxruntime in float32
# A team's script: an imputer, a scaler and a model in one Pipeline, converted by skl2onnx. The
# original Pipeline goes to SM_OUTPUT_DATA_DIR so the tests can compare the served answers with it.
SCRIPT = """
import argparse, csv, json, math, os
from pathlib import Path
import joblib, numpy as np
from skl2onnx import to_onnx
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

parser = argparse.ArgumentParser()
parser.add_argument("--estimator", default="logistic")
parser.add_argument("--zipmap", default="true")
parser.add_argument("--int_labels", default="false")
args = parser.parse_args()
text = json.loads(os.environ["MODELOPS_CATEGORICAL_COLUMNS"])  # left out: ONNX takes floats only
features = [c for c in json.loads(os.environ["MODELOPS_FEATURE_COLUMNS"]) if c not in text]
label = os.environ["MODELOPS_LABEL_COLUMN"]
rows = [r for f in sorted(Path(os.environ["SM_CHANNEL_TRAIN"]).rglob("*.csv")) for r in csv.DictReader(f.open())]
X = np.array([[float(r[c]) if r[c].strip() else math.nan for c in features] for r in rows])
models = {
    "logistic": LogisticRegression(max_iter=1000),
    "ridge": Ridge(alpha=1.0),
    "gradient_boosting": GradientBoostingRegressor(n_estimators=60, max_depth=3, random_state=0),
}
model = models[args.estimator]
y = [r[label] for r in rows]
if args.estimator != "logistic":
    y = [float(v) for v in y]
elif args.int_labels == "true":
    y = [int(v) for v in y]
pipeline = Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler()), ("model", model)]).fit(X, y)
options = {type(model): {"zipmap": False}} if args.zipmap == "false" else None
onx = to_onnx(pipeline, X[:1].astype(np.float32), options=options)
Path(os.environ["SM_MODEL_DIR"], "model.onnx").write_bytes(onx.SerializeToString())
joblib.dump(pipeline, Path(os.environ["SM_OUTPUT_DATA_DIR"], "pipeline.joblib"))
"""
TIERS_ONNX = {**TIER, "feature_columns": json.dumps(list(TIER_NUMERIC)), "categorical_columns": "[]"}
CHURN = {"label_column": CHURN_LABEL, "feature_columns": json.dumps(list(CHURN_FEATURES))}
PRICE_NUMERIC = PRICE_FEATURES[:-1]  # not the categorical `district`
PRICE = {
    "label_column": PRICE_LABEL,
    "feature_columns": json.dumps(list(PRICE_NUMERIC)),
    "task": "regression",
    "objective_metric": "rmse",
}


def _onnx_job(base: Path, hyper: dict[str, str], data: str) -> tuple[Path, object]:
    """Train SCRIPT on `data` (tiers, churn or prices) through `train`; (model/, the original Pipeline)."""
    code = _code(base / "code", SCRIPT)
    env = _job(base / "job", {**hyper, "entry_point": "train.py"}, code)
    csv_path = base / "job" / "input" / "data" / "train" / "data.csv"
    if data == "churn":
        generate_churn_csv(csv_path, 500, seed=3)
    elif data == "prices":
        generate_price_csv(csv_path, 500, seed=4)
    assert main(env) == 0, container_paths(env).failure_file.read_text()
    paths = container_paths(env)
    return paths.model_dir, joblib.load(paths.output_data_dir / "pipeline.joblib")


def _rows_with_gaps(rows: list[list[float]]) -> list[list[float | None]]:
    """The rows as a client sends them, with a missing value (null) in every column somewhere."""
    out: list[list[float | None]] = [list(r) for r in rows]
    for i, row in enumerate(out):
        row[i % len(row)] = None if i % 3 == 0 else row[i % len(row)]
    return out


def _matrix(rows: list[list[float | None]]) -> np.ndarray:
    return np.asarray([[math.nan if v is None else v for v in row] for row in rows], dtype=np.float64)


@pytest.fixture(scope="module")
def tiers(tmp_path_factory):
    return _onnx_job(tmp_path_factory.mktemp("tiers"), TIERS_ONNX, "tiers")


def test_a_script_saving_model_onnx_is_judged_like_any_model(tiers):
    model_dir, _ = tiers

    meta = json.loads((model_dir / "metadata.json").read_text())
    evaluation = json.loads((model_dir / "evaluation.json").read_text())

    assert (meta["algorithm"], meta["format"], meta["model_file"]) == ("script", "onnx", "model.onnx")
    assert meta["classes"] == list(TIERS) and meta["feature_columns"] == list(TIER_NUMERIC)
    assert evaluation["metric"] == "macro_f1" and evaluation["metrics"]["accuracy"] > 0.5
    assert set(evaluation["metrics"]) == {"accuracy", "macro_f1", "logloss"}
    assert meta["forest_file"] is None and meta["compiled_skipped"]


def test_serve_answers_a_zipmap_classifier_as_the_original_pipeline_by_name(tiers):
    model_dir, pipeline = tiers
    rows = _rows_with_gaps(
        [[float(r[c]) if r[c] else math.nan for c in TIER_NUMERIC] for r in tier_rows(60, seed=99)]
    )
    rows = [[None if v is not None and math.isnan(v) else v for v in row] for row in rows]

    doc = _invoke(model_dir, rows)

    want = pipeline.predict_proba(_matrix(rows))
    assert list(pipeline.classes_) == list(TIERS) == doc["classes"]
    assert np.max(np.abs(np.asarray(doc["probabilities"]) - want)) <= TOLERANCE
    assert doc["predictions"] == [TIERS[i] for i in np.argmax(want, axis=1)]


def test_a_binary_tensor_output_with_integer_labels_is_served_as_the_pipeline(tmp_path):
    # Given a logistic regression on 0/1 labels read as ints, converted without ZipMap
    hyper = {**CHURN, "zipmap": "false", "int_labels": "true"}
    model_dir, pipeline = _onnx_job(tmp_path, hyper, "churn")
    assert json.loads((model_dir / "metadata.json").read_text())["classes"] == ["0", "1"]
    rows = _rows_with_gaps([[float(r[c]) for c in CHURN_FEATURES] for r in churn_rows(60, seed=11)])

    doc = _invoke(model_dir, rows)

    want = pipeline.predict_proba(_matrix(rows))
    assert doc["classes"] == ["0", "1"]
    assert np.max(np.abs(np.asarray(doc["probabilities"]) - want)) <= TOLERANCE
    assert doc["predictions"] == [str(v) for v in pipeline.predict(_matrix(rows))]


@pytest.mark.parametrize("estimator", ["ridge", "gradient_boosting"])
def test_a_regressor_is_served_as_the_pipeline_predicts(tmp_path, estimator):
    model_dir, pipeline = _onnx_job(tmp_path, {**PRICE, "estimator": estimator}, "prices")
    evaluation = json.loads((model_dir / "evaluation.json").read_text())
    assert evaluation["metric"] == "rmse" and evaluation["metrics"]["r2"] > 0.5
    rng = np.random.default_rng(7)
    rows = _rows_with_gaps(rng.uniform([25, 1, 0, 0.3, 0, 0], [160, 6, 90, 25, 12, 1], (60, 6)).tolist())

    doc = _invoke(model_dir, rows)

    want = pipeline.predict(_matrix(rows))
    # relative: prices are in the hundreds and float32 keeps ~7 digits
    assert np.max(np.abs(np.asarray(doc["predictions"]) - want) / np.maximum(1.0, np.abs(want))) <= TOLERANCE
    # and exactly onnxruntime's own answer with the same threads (a float32 sum over trees depends on them)
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(model_dir / "model.onnx"), sess_options=options)
    (own,) = session.run(None, {"X": _matrix(rows).astype(np.float32)})
    assert doc["predictions"] == own.ravel().astype(np.float64).tolist()


def test_categorical_columns_with_an_onnx_model_are_refused_naming_them(tmp_path):
    code = _code(tmp_path / "code", SCRIPT)

    reason = _failure(tmp_path / "job", {**TIER, "entry_point": "train.py"}, code)

    assert "train.py saved model.onnx, but the model config declares the categorical columns ['region']" in (
        reason
    )
    assert "an ONNX model takes float columns only" in reason
    assert not (tmp_path / "job" / "model" / "metadata.json").exists()


def _graph(tmp_path: Path, inputs: list[tuple[str, object]]) -> Path:
    """A scaler converted with the given input signature."""
    from sklearn.preprocessing import StandardScaler

    onx = skl2onnx.convert_sklearn(StandardScaler().fit(np.eye(3)), initial_types=inputs)
    path = tmp_path / "model.onnx"
    path.write_bytes(onx.SerializeToString())
    return path


def test_a_graph_without_one_float_matrix_input_is_refused_naming_what_it_found(tmp_path):
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType

    path = _graph(tmp_path, [("X", Int64TensorType([None, 3]))])

    with pytest.raises(ModelLoadError) as info:
        load_onnx(path, classification=False, n_features=3)

    message = str(info.value)
    assert "model.onnx takes inputs ['X: tensor(int64) [None, 3]']" in message
    assert "expected one float tensor input of shape [N, n_features]" in message

    # A float input split in two is refused the same way
    path = _graph(tmp_path, [("a", FloatTensorType([None, 1])), ("b", FloatTensorType([None, 2]))])
    with pytest.raises(ModelLoadError, match=r"takes inputs \['a: tensor\(float\) \[None, 1\]', 'b: "):
        load_onnx(path, classification=False, n_features=3)


def test_a_scripts_onnx_graph_with_a_bad_input_fails_the_job_in_one_line(tmp_path):
    script = (
        "import os, pathlib, numpy as np\nfrom skl2onnx import convert_sklearn\n"
        "from skl2onnx.common.data_types import Int64TensorType\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "m = LogisticRegression().fit(np.eye(4), ['bronze', 'gold', 'silver', 'gold'])\n"
        "onx = convert_sklearn(m, initial_types=[('ids', Int64TensorType([None, 4]))])\n"
        "pathlib.Path(os.environ['SM_MODEL_DIR'], 'model.onnx').write_bytes(onx.SerializeToString())\n"
    )
    code = _code(tmp_path / "code", script)

    reason = _failure(tmp_path / "job", {**TIERS_ONNX, "entry_point": "train.py"}, code)

    assert "the model.onnx written by train.py cannot be used" in reason
    assert "takes inputs ['ids: tensor(int64) [None, 4]']; expected one float tensor input" in reason


def test_the_graphs_class_labels_are_read_without_the_onnx_package(tmp_path):
    from sklearn.linear_model import LogisticRegression

    X = np.asarray([[0.0, 1.0], [1.0, 0.0], [2.0, 2.0]] * 4)
    for labels, options in ((["b", "c", "a"] * 4, {"zipmap": False}), ([7, -3, 7] * 4, None)):
        model = LogisticRegression().fit(X, labels)
        onx = skl2onnx.to_onnx(model, X[:1].astype(np.float32), options={type(model): options or {}})
        assert graph_class_labels(onx.SerializeToString()) == list(model.classes_)
        (tmp_path / "model.onnx").write_bytes(onx.SerializeToString())
        loaded = load_onnx(tmp_path / "model.onnx", classification=True, n_features=2)
        assert loaded.classes_ == list(model.classes_)
        assert np.max(np.abs(loaded.predict_proba(X) - model.predict_proba(X))) <= TOLERANCE


def test_onnxruntime_is_imported_only_for_onnx_models(tiers, tmp_path):
    from model_server.artifact import save_model
    from sklearn.linear_model import LogisticRegression

    from tests.serving_models import classifier_metadata

    # Given a joblib model folder and the ONNX one
    joblib_dir = tmp_path / "joblib"
    save_model(joblib_dir, LogisticRegression().fit(np.eye(2), [0, 1]), classifier_metadata(2))
    onnx_dir, _ = tiers
    code = (
        "import sys; sys.path.insert(0, 'serving_image'); from pathlib import Path;"
        "import model_server.server, model_server.train, model_server.script_mode, model_server.trees;"
        "from model_server.artifact import load_model;"
        f"load_model(Path({str(joblib_dir)!r})); print('onnxruntime' in sys.modules);"
        f"load_model(Path({str(onnx_dir)!r})); print('onnxruntime' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)

    # Then a fresh interpreter imports onnxruntime with the ONNX model only
    assert out.stdout.split() == ["False", "True"]


def test_load_model_reads_the_script_models_folder(tiers):
    model = load_model(tiers[0])
    assert type(model.estimator).__name__ == "OnnxModel" and model.metadata.format == "onnx"
