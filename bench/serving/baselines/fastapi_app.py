"""The FastAPI-naive baseline: the service a team would write first.

One uvicorn worker; the model loaded once at import; each request's JSON validated by a pydantic
model (numbers, null for a missing value), turned into an array with np.asarray (null -> NaN) and
scored with predict_proba; the answer is every row's class probabilities. No batching, no compiled
predictor, no custom JSON. Run by bench/serving/run.py as

    MODEL_PATH=<model.joblib> uvicorn baselines.fastapi_app:app --host 127.0.0.1 --port <port>
"""

from __future__ import annotations

import os

import joblib
import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel


def _load(path: str, fmt: str) -> object:
    """The model file with its own library (MODEL_FORMAT: sklearn, xgboost, lightgbm or onnx)."""
    if fmt == "xgboost":
        import xgboost

        model = xgboost.XGBClassifier(n_jobs=1)
        model.load_model(path)
        return model
    if fmt == "lightgbm":
        import lightgbm

        booster = lightgbm.Booster(model_file=path)

        class Booster:
            def predict_proba(self, rows: np.ndarray) -> np.ndarray:
                p = booster.predict(rows, num_threads=1)
                return p if p.ndim == 2 else np.column_stack([1.0 - p, p])

        return Booster()
    if fmt == "onnx":
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        feed = session.get_inputs()[0].name

        class Onnx:  # skl2onnx's graph: outputs label, probabilities (zipmap off)
            def predict_proba(self, rows: np.ndarray) -> np.ndarray:
                return session.run(None, {feed: rows.astype(np.float32)})[1]

        return Onnx()
    return joblib.load(path)


model = _load(os.environ["MODEL_PATH"], os.environ.get("MODEL_FORMAT", "sklearn"))
app = FastAPI()


class PredictRequest(BaseModel):
    instances: list[list[float | None]]


@app.get("/ping")
def ping() -> dict[str, str]:
    return {"status": "ready"}


@app.post("/invocations")
def invocations(request: PredictRequest) -> dict[str, object]:
    rows = np.asarray(request.instances, dtype=np.float64)
    probabilities = model.predict_proba(rows)  # type: ignore[attr-defined]
    return {"probabilities": probabilities.tolist(), "model_version": "fastapi-naive"}
