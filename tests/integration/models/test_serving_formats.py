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
from pathlib import Path

import numpy as np
import pytest
from model_server import native
from model_server.contract import serve_settings
from model_server.emf import RequestMetrics
from model_server.server import ModelService

from tests.format_models import format_rows, library_proba, train_format_model
from tests.serving_models import BuiltOnFirstUse, has_c_compiler

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


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> dict[tuple[str, int, bool], tuple[Path, ModelService, str]]:
    """Each case trained, built by the image build step, loaded by serve, when a test first asks
    for it: {(algorithm, classes, categorical): (folder, service, build line)}."""

    def build(key: tuple[str, int, bool]) -> tuple[Path, ModelService, str]:
        algorithm, classes, categorical = key
        base = tmp_path_factory.mktemp(f"{algorithm}-{classes}-{'cat' if categorical else 'num'}")
        folder = train_format_model(base, algorithm, classes, categorical)
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            assert native.main(["build", str(folder)]) == 0
        settings = serve_settings({"MODELOPS_MODEL": "m", "MODELOPS_VERSION": "1"})
        metrics = RequestMetrics(namespace="N", model="m", variant="stable", version="1")
        service = ModelService(folder, settings, metrics)
        service.load()
        return folder, service, printed.getvalue()

    return BuiltOnFirstUse(build)


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
    rows, _ = format_rows(classes, categorical, 400, seed=12)
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
    want = library_proba(folder, rows)
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
