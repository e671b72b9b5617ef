"""Models of every format of issue 13, trained by the `train` program as a pipeline would (the
onnx one converted by skl2onnx as a team's script would), and the answers of each model file's own
library, read independently of model_server. Shared by the in-process format tests
(tests/integration/models/test_serving_formats.py) and the server-process ones
(tests/integration/serving/test_serve_formats.py); model_server is importable only where their
conftest put serving_image/ on sys.path, so it is imported inside the functions."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

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


def format_rows(classes: int, categorical: bool, rows: int, seed: int) -> tuple[list[list[Any]], list[str]]:
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


def train_format_model(base: Path, algorithm: str, classes: int, categorical: bool) -> Path:
    names = [f"f{i}" for i in range(N_FEATURES)] + (["plan"] if categorical else [])
    rows, labels = format_rows(classes, categorical, 1200, seed=11)
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
    from model_server.contract import container_paths
    from model_server.train import main as train_main

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
    from model_server.artifact import load_model
    from model_server.checkrows import write_check
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


def library_proba(folder: Path, rows: list[list[Any]]) -> np.ndarray:
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
