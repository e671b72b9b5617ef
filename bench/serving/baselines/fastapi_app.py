"""The FastAPI-naive baseline: the service a team would write first.

One uvicorn worker; the model loaded once at import; each request's JSON validated by a pydantic
model, turned into an array with np.asarray and scored with predict_proba. No batching, no
compiled predictor, no custom JSON. Run by bench/serving/run.py as

    MODEL_PATH=<model.joblib> uvicorn baselines.fastapi_app:app --host 127.0.0.1 --port <port>
"""

from __future__ import annotations

import os

import joblib
import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel


def _load(path: str, fmt: str) -> object:
    """The model file with its own library (MODEL_FORMAT: sklearn, xgboost or lightgbm)."""
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
                return np.column_stack([1.0 - p, p])

        return Booster()
    return joblib.load(path)


model = _load(os.environ["MODEL_PATH"], os.environ.get("MODEL_FORMAT", "sklearn"))
app = FastAPI()


class PredictRequest(BaseModel):
    instances: list[list[float]]


@app.get("/ping")
def ping() -> dict[str, str]:
    return {"status": "ready"}


@app.post("/invocations")
def invocations(request: PredictRequest) -> dict[str, object]:
    rows = np.asarray(request.instances, dtype=np.float64)
    probabilities = model.predict_proba(rows)[:, 1]  # type: ignore[attr-defined]
    return {"predictions": probabilities.tolist(), "model_version": "fastapi-naive"}
