"""Every model format of issue 13 through the whole serving path, as a model reaches a pod: `train`
fits it, the image build step (`python -m model_server.native build`) compiles what it can, `serve`
loads the folder and answers JSON bodies with null cells. The answers must equal the model file's
own library (scikit-learn, XGBoost, LightGBM, onnxruntime), loaded here independently, on held-out
rows with missing values and, for categorical models, categories never seen in training."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from model_server import native
from model_server.artifact import load_model
from model_server.checkrows import write_check
from model_server.contract import container_paths, serve_settings
from model_server.emf import RequestMetrics
from model_server.server import ModelService
from model_server.train import main as train_main

from tests.serving_models import has_c_compiler

N_FEATURES = 6
MISSING = 0.08
PLANS = ("basic", "plus", "premium")
SMALL = {
    "hist_gradient_boosting": {"max_iter": "30"},
    "random_forest": {"n_estimators": "20", "max_depth": "8"},
    "xgboost": {"n_estimators": "30"},
    "lightgbm": {"n_estimators": "30"},
    "linear": {},
}
# (algorithm, classes, categorical `plan` column, what serves it once the image is built)
CASES = [
    ("hist_gradient_boosting", 2, False, "native"),  # native.py's forest
    ("hist_gradient_boosting", 3, False, "native"),  # tl2cgen
    ("random_forest", 2, False, "native"),
    ("xgboost", 2, False, "native"),
    ("xgboost", 3, False, "native"),
    ("lightgbm", 2, False, "native"),
    ("lightgbm", 3, False, "native"),
    ("linear", 2, False, "scikit-learn"),  # the Pipeline: imputer, scaler, logistic regression
    ("linear", 3, False, "scikit-learn"),
    ("onnx", 2, False, "onnx"),  # that Pipeline converted by skl2onnx, run by onnxruntime
    ("hist_gradient_boosting", 2, True, "scikit-learn"),
    ("random_forest", 3, True, "scikit-learn"),
    ("xgboost", 2, True, "scikit-learn"),
    ("lightgbm", 3, True, "scikit-learn"),
    ("linear", 2, True, "scikit-learn"),
]


def _data(classes: int, categorical: bool, rows: int, seed: int) -> tuple[list[list[Any]], list[str]]:
    """Rows (None for a missing cell; with `categorical`, a last `plan` column that moves the label)
    and their labels by name."""
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=rows, n_features=N_FEATURES, n_informative=4, n_classes=classes, random_state=seed
    )
    rng = np.random.default_rng(seed)
    X[rng.random(X.shape) < MISSING] = np.nan
    out: list[list[Any]] = [[None if math.isnan(v) else float(v) for v in row] for row in X.tolist()]
    if categorical:
        for row, label in zip(out, y, strict=True):
            plan = PLANS[int(label) % 3] if rng.random() < 0.7 else PLANS[int(rng.integers(3))]
            row.append(None if rng.random() < 0.05 else plan)
    return out, [f"class{int(v)}" for v in y]


def _train(base: Path, algorithm: str, classes: int, categorical: bool) -> Path:
    names = [f"f{i}" for i in range(N_FEATURES)] + (["plan"] if categorical else [])
    rows, labels = _data(classes, categorical, 1200, seed=11)
    data = base / "input" / "data" / "train" / "train.csv"
    data.parent.mkdir(parents=True)
    with data.open("w", encoding="utf-8") as out:
        out.write(",".join([*names, "label"]) + "\n")
        for row, label in zip(rows, labels, strict=True):
            out.write(",".join("" if v is None else str(v) for v in row) + f",{label}\n")
    hyper = {
        "label_column": "label",
        "feature_columns": json.dumps(names),
        "algorithm": "linear" if algorithm == "onnx" else algorithm,
        "seed": "0",
        **SMALL["linear" if algorithm == "onnx" else algorithm],
    }
    if classes > 2:
        hyper["task"] = "multiclass_classification"
    if categorical:
        hyper["categorical_columns"] = json.dumps(["plan"])
    (base / "input" / "config").mkdir(parents=True)
    (base / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hyper))
    env = {"SAGEMAKER_BASE_DIR": str(base), "TRAINING_JOB_NAME": "job"}
    assert train_main(env) == 0, container_paths(env).failure_file.read_text()
    folder = container_paths(env).model_dir
    if algorithm == "onnx":
        _to_onnx(folder)
    return folder


def _to_onnx(folder: Path) -> None:
    """The trained Pipeline as a team's script would save it: model.onnx (skl2onnx, tensor
    probabilities), check.json's answers from onnxruntime."""
    import joblib
    from skl2onnx import to_onnx

    meta = json.loads((folder / "metadata.json").read_text())
    pipeline = joblib.load(folder / meta["model_file"])
    sample = np.zeros((1, len(meta["feature_columns"])), dtype=np.float32)
    onx = to_onnx(pipeline, sample, options={"zipmap": False}, target_opset=17)
    (folder / "model.onnx").write_bytes(onx.SerializeToString())
    (folder / meta["model_file"]).unlink()
    meta.update(format="onnx", model_file="model.onnx")
    (folder / "metadata.json").write_text(json.dumps(meta))
    check = json.loads((folder / "check.json").read_text())
    rows = np.asarray([[np.nan if v is None else v for v in row] for row in check["rows"]], dtype=np.float64)
    write_check(folder, load_model(folder), rows)


def _library_proba(folder: Path, rows: list[list[Any]]) -> np.ndarray:
    """predict_proba of the model file, read by its own library (not by model_server)."""
    meta = json.loads((folder / "metadata.json").read_text())
    path = folder / meta["model_file"]
    matrix = np.empty((len(rows), len(rows[0])), dtype=object)
    matrix[:] = [[math.nan if v is None else v for v in row] for row in rows]
    if meta["format"] == "xgboost":
        import xgboost

        model = xgboost.XGBClassifier(n_jobs=1)
        model.load_model(str(path))
        return np.asarray(model.predict_proba(matrix.astype(np.float64)))
    if meta["format"] == "lightgbm":
        import lightgbm

        p = lightgbm.Booster(model_file=str(path)).predict(matrix.astype(np.float64), num_threads=1)
        return p if p.ndim == 2 else np.column_stack([1.0 - p, p])
    if meta["format"] == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feed = session.get_inputs()[0].name
        return np.asarray(session.run(None, {feed: matrix.astype(np.float32)})[1], dtype=np.float64)
    import joblib

    estimator = joblib.load(path)
    return np.asarray(
        estimator.predict_proba(matrix if meta["categorical_columns"] else matrix.astype(float))
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> dict[tuple[str, int, bool], tuple[Path, ModelService, str]]:
    """Each case trained, built by the image build step, loaded by serve: (folder, service, build line)."""
    out = {}
    for algorithm, classes, categorical, _ in CASES:
        base = tmp_path_factory.mktemp(f"{algorithm}-{classes}-{'cat' if categorical else 'num'}")
        folder = _train(base, algorithm, classes, categorical)
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            assert native.main(["build", str(folder)]) == 0
        settings = serve_settings({"MODELOPS_MODEL": "m", "MODELOPS_VERSION": "1"})
        metrics = RequestMetrics(namespace="N", model="m", variant="stable", version="1")
        service = ModelService(folder, settings, metrics)
        service.load()
        out[algorithm, classes, categorical] = folder, service, printed.getvalue()
    return out


@pytest.mark.skipif(not has_c_compiler(), reason="no C compiler (cc, gcc or clang) on PATH")
@pytest.mark.parametrize(
    ("algorithm", "classes", "categorical", "predictor"),
    CASES,
    ids=[f"{a}-{k}class{'-categorical' if c else ''}" for a, k, c, _ in CASES],
)
def test_served_answers_equal_the_model_files_own_library_missing_and_unseen_values_included(
    served, algorithm, classes, categorical, predictor
):
    # Given the model as serve loaded it after the image build step
    folder, service, build = served[algorithm, classes, categorical]
    assert service.ping()[1]["predictor"] == predictor, build
    if algorithm == "linear" and not categorical:  # the Pipeline's arithmetic answers small batches
        assert type(service.predictor.forest).__name__ == "LinearPipeline"
    # And held-out rows (never trained on) with missing cells and, categorical, unseen plans
    rows, _ = _data(classes, categorical, 400, seed=12)
    if categorical:
        for i in range(0, len(rows), 9):
            rows[i][-1] = "enterprise"  # a category training never saw
    assert sum(any(v is None for v in row) for row in rows) > 100

    # When they are sent as JSON, 50 rows a request
    got: list[list[float]] = []
    for start in range(0, len(rows), 50):
        body = json.dumps({"instances": rows[start : start + 50]}).encode()
        status, doc = asyncio.run(service.invoke(body, "application/json"))
        assert status == 200, doc
        assert doc["classes"] == [f"class{i}" for i in range(classes)]
        got += doc["probabilities"]

    # Then every class probability equals the library's predict_proba on the same rows, within
    # 1e-6 (1e-5 where the library computes in float32: XGBoost, onnxruntime)
    want = _library_proba(folder, rows)
    tolerance = 1e-5 if algorithm in ("xgboost", "onnx") else 1e-6
    assert np.asarray(got).shape == want.shape == (len(rows), classes)
    assert np.abs(np.asarray(got) - want).max() <= tolerance
    # And the predicted label is the library's most probable class, by name
    assert doc["predictions"] == [
        f"class{int(i)}" for i in np.argmax(want[-len(doc["predictions"]) :], axis=1)
    ]
    if categorical:  # an unseen category is answered as a missing one is
        unseen = rows[0]
        pair = json.dumps({"instances": [unseen, [*unseen[:-1], None]]}).encode()
        status, doc = asyncio.run(service.invoke(pair, "application/json"))
        assert status == 200 and doc["probabilities"][0] == pytest.approx(doc["probabilities"][1], abs=1e-12)
