"""Tree ensembles of every format compiled with treelite + tl2cgen (model_server/trees.py), checked
against the model's own library and loaded by `serve` without it."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from model_server import native, tree_arrays, trees
from model_server.artifact import load_model, read_metadata
from model_server.checkrows import CHECK_FILE
from model_server.contract import serve_settings
from model_server.emf import RequestMetrics
from model_server.server import ModelService
from model_server.trees import TreesError

from tests.serving_models import BuiltOnFirstUse, has_c_compiler, tree_model_folder

pytestmark = pytest.mark.skipif(not has_c_compiler(), reason="no C compiler (cc, gcc or clang) on PATH")
SERVING_IMAGE = Path(__file__).resolve().parents[3] / "serving_image"
ALGORITHMS = ("hist_gradient_boosting", "random_forest", "xgboost", "lightgbm")
TASKS = ("binary_classification", "multiclass_classification", "regression")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Each tree format and task, built once, when a test first asks for it:
    {(algorithm, task): (folder, held-out rows, build result)}."""
    base = tmp_path_factory.mktemp("trees")

    def build(key: tuple[str, str]) -> tuple[Path, Any, dict[str, Any]]:
        algorithm, task = key
        folder, held = tree_model_folder(base / f"{algorithm}-{task}", algorithm, task)
        return folder, held, trees.build(folder, read_metadata(folder))

    return BuiltOnFirstUse(build)


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_the_compiled_trees_answer_what_the_models_library_answers_missing_values_included(
    built, algorithm, task
):
    # Given a model of the format, built into native/trees.so
    folder, held, result = built[algorithm, task]
    assert np.isnan(held).any(axis=1).sum() > 50  # many held-out rows have missing values
    meta = read_metadata(folder)

    # When serve's loader opens it and answers held-out rows (never trained on, NaN included)
    compiled = trees.load(folder, meta)
    got = compiled.predict_rows(held.tolist())

    # Then every answer equals the library's at the format's tolerance: P(positive) per row for a
    # binary model, the k probabilities in the order of the classes for multiclass, the value
    want = load_model(folder).predict(held)
    if task == "multiclass_classification":
        assert compiled.n_outputs == 3 and all(len(row) == 3 for row in got)
    else:
        assert compiled.n_outputs == 1 and all(isinstance(v, float) for v in got)
    diff = np.abs(np.asarray(got) - want)
    if algorithm == "xgboost":  # float32 inside XGBoost: relative to the size of the answer
        diff = diff / np.maximum(1.0, np.abs(want))
        assert result["tolerance"] == trees.FLOAT32_TOLERANCE and result["relative"]
    else:
        assert result["tolerance"] == trees.TOLERANCE and not result["relative"]
    assert diff.max() <= result["tolerance"]
    assert result["max_diff"] <= result["tolerance"] and result["check_rows"] == 200
    manifest = json.loads((folder / "native" / "manifest.json").read_text())
    assert manifest["kind"] == "tl2cgen" and manifest["model_file"] == meta.model_file


def test_one_model_always_builds_the_same_bytes(built, tmp_path):
    # Given a built LightGBM multiclass model
    folder, _, _ = built["lightgbm", "multiclass_classification"]
    first = (folder / "native" / "trees.so").read_bytes()
    # When it is built again in another folder
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("metadata.json", "model.txt", CHECK_FILE):
        (copy / name).write_bytes((folder / name).read_bytes())
    trees.build(copy, read_metadata(copy))
    # Then the library is the same, byte for byte (one model, one image digest)
    assert (copy / "native" / "trees.so").read_bytes() == first


def test_a_check_file_the_library_does_not_reproduce_builds_nothing(built, tmp_path):
    # Given an XGBoost model whose check.json expects other answers
    folder, _, _ = built["xgboost", "binary_classification"]
    copy = tmp_path / "m"
    copy.mkdir()
    for name in ("metadata.json", "model.json"):
        (copy / name).write_bytes((folder / name).read_bytes())
    check = json.loads((folder / CHECK_FILE).read_text())
    check["expected"][3] += 1e-3
    (copy / CHECK_FILE).write_text(json.dumps(check))

    # When the build step runs: exit 0, the reason, and nothing written
    done = _cli(copy)
    assert done.returncode == 0, done.stderr
    assert "native predictor: not built: the compiled trees differ from the model by 0.001" in done.stdout
    assert "serve uses the model's library" in done.stdout
    assert not (copy / "native").exists()


def test_serve_refuses_a_library_that_no_longer_matches_and_says_why(built, tmp_path, caplog):
    # Given a LightGBM model built with its library, then a corrupted check.json (or model file)
    folder, held, _ = built["lightgbm", "binary_classification"]
    copy = tmp_path / "m"
    (copy / "native").mkdir(parents=True)
    for name in ("metadata.json", "model.txt", CHECK_FILE, "native/trees.so", "native/manifest.json"):
        (copy / name).write_bytes((folder / name).read_bytes())
    check = json.loads((copy / CHECK_FILE).read_text())
    check["expected"] = [1.0 - p for p in check["expected"]]
    (copy / CHECK_FILE).write_text(json.dumps(check))
    meta = read_metadata(copy)
    with pytest.raises(TreesError, match="differ from the model"):
        trees.load(copy, meta)

    # When serve loads it
    caplog.set_level(logging.INFO)
    service = _service(copy)

    # Then it serves with the library, says so on /ping, and logged why
    assert service.ping()[1]["predictor"] == "lightgbm"
    assert "native predictor not used" in caplog.text and "differ from the model" in caplog.text
    body = json.dumps({"instances": [[None if np.isnan(v) else v for v in row] for row in held[:5].tolist()]})
    status, doc = asyncio.run(service.invoke(body.encode(), "application/json"))
    assert status == 200
    want = load_model(copy).predict(held[:5])
    assert [p for _, p in doc["probabilities"]] == pytest.approx(want.tolist(), abs=1e-12)

    # And a library built for another model file is refused too
    (copy / "model.txt").write_text((copy / "model.txt").read_text() + "\n")
    with pytest.raises(TreesError, match="built for another model.txt"):
        trees.load(copy, meta)


@pytest.mark.parametrize(
    ("algorithm", "task"),
    [
        ("xgboost", "multiclass_classification"),
        ("lightgbm", "binary_classification"),
        ("random_forest", "regression"),
    ],
)
def test_serve_answers_with_the_compiled_trees_and_never_imports_their_libraries(built, algorithm, task):
    # Given a built model folder of the format
    folder, held, _ = built[algorithm, task]
    rows = held[:20].tolist()
    # When a fresh `serve` process loads it and answers rows (missing values included)
    script = f"""
import asyncio, json, logging, sys
logging.basicConfig(level=logging.INFO)
from pathlib import Path
from typing import Any
from model_server.contract import serve_settings
from model_server.emf import RequestMetrics
from model_server.server import ModelService
service = ModelService(Path({str(folder)!r}), serve_settings({{"MODELOPS_MODEL": "m", "MODELOPS_VERSION": "1"}}),
                       RequestMetrics(namespace="N", model="m", variant="stable", version="1"))
service.load()
body = json.dumps({{"instances": {json.dumps(rows).replace("NaN", "None")}}}).encode()
status, doc = asyncio.run(service.invoke(body, "application/json"))
loaded = sorted(m for m in ("treelite", "tl2cgen", "xgboost", "lightgbm", "sklearn") if m in sys.modules)
print(json.dumps({{"ping": service.ping()[1], "status": status, "doc": doc, "loaded": loaded}}))
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=SERVING_IMAGE,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])

    # Then the native library answered, the model's library, treelite and tl2cgen are not loaded
    assert out["ping"]["predictor"] == "native" and out["status"] == 200
    assert out["loaded"] == []
    assert "is not loaded" in done.stderr
    # and the answers are the library's
    want = load_model(folder).predict(held[:20])
    doc = out["doc"]
    if task == "multiclass_classification":
        got = doc["probabilities"]
    elif task == "binary_classification":
        got = [p for _, p in doc["probabilities"]]
    else:
        got = doc["predictions"]
    tolerance = trees.FLOAT32_TOLERANCE if algorithm == "xgboost" else trees.TOLERANCE
    assert np.abs(np.asarray(got) - want).max() <= tolerance


def test_models_without_trees_to_compile_are_left_to_their_library(tmp_path):
    # A linear model: not a tree ensemble; a categorical pipeline: not in this slice
    folder, _ = tree_model_folder(tmp_path / "rf", "random_forest", "binary_classification")
    meta = read_metadata(folder)
    import dataclasses

    assert trees.unsupported(dataclasses.replace(meta, algorithm="linear")) == (
        "algorithm linear (sklearn) is not a tree ensemble"
    )
    categorical = dataclasses.replace(meta, categorical_columns=("f0",))
    assert "categorical columns ['f0']" in (trees.unsupported(categorical) or "")
    # No compiler: the build step says so and writes nothing
    done = _cli(folder, "--compiler", "/nonexistent/cc")
    assert done.returncode == 0 and "native predictor: not built:" in done.stdout
    assert not (folder / "native").exists()


def _cli(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "model_server.native", "build", str(folder), *args],
        cwd=SERVING_IMAGE,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _service(folder: Path) -> ModelService:
    settings = serve_settings({"MODELOPS_MODEL": "m", "MODELOPS_VERSION": "1"})
    service = ModelService(
        folder, settings, RequestMetrics(namespace="N", model="m", variant="stable", version="1")
    )
    service.load()
    return service


def test_the_native_build_step_builds_tree_models_through_tl2cgen(built, tmp_path):
    # Given an XGBoost regression model folder (copied, unbuilt)
    folder, _, _ = built["xgboost", "regression"]
    copy = tmp_path / "m"
    copy.mkdir()
    for name in ("metadata.json", "model.json", CHECK_FILE):
        (copy / name).write_bytes((folder / name).read_bytes())
    # When the image's build step runs on it
    done = _cli(copy)
    # Then it says what it built and checked
    assert done.returncode == 0, done.stderr
    assert (
        "native predictor: built native/trees.so from model.json (treelite 4.8.1, tl2cgen 1.0.0)"
        in done.stdout
    )
    assert "max relative |difference|" in done.stdout and "on 200 holdout rows (limit 1e-05)" in done.stdout
    assert native.find_compiler() is not None


def test_a_model_over_the_compile_budget_is_served_by_its_library_which_serve_says(built, tmp_path, caplog):
    # Given a LightGBM model whose generated C is larger than the build's budget (here 0.01 MB)
    folder, held, _ = built["lightgbm", "binary_classification"]
    copy = tmp_path / "m"
    copy.mkdir()
    for name in ("metadata.json", "model.txt", CHECK_FILE):
        (copy / name).write_bytes((folder / name).read_bytes())
    with pytest.raises(trees.OverBudgetError, match=r"MB of C for model.txt, above the 0.01 MB"):
        trees.build(copy, read_metadata(copy), max_source_bytes=10_000)
    assert not (copy / "native").exists()  # trees.build itself leaves the folder as it was

    # When the image's build step runs with that budget
    done = _cli(copy, "--max-source-mb", "0.01")

    # Then it compiles nothing, says why and that the library serves, and records the reason
    assert done.returncode == 0, done.stderr
    assert "native predictor: not compiled: tl2cgen wrote" in done.stdout
    assert "serve uses the model's library" in done.stdout
    assert not (copy / "native" / "trees.so").exists()
    skipped = json.loads((copy / "native" / trees.SKIPPED_FILE).read_text())
    assert skipped["kind"] == "tl2cgen" and "above the 0.01 MB" in skipped["reason"]

    # And serve answers with LightGBM, saying in its startup log why
    caplog.set_level(logging.INFO)
    service = _service(copy)
    assert service.ping()[1]["predictor"] == "lightgbm"
    assert "not compiled at image build: tl2cgen wrote" in caplog.text
    body = json.dumps(
        {"instances": [[None if np.isnan(v) else v for v in row] for row in held[:20].tolist()]}
    )
    status, doc = asyncio.run(service.invoke(body.encode(), "application/json"))
    assert status == 200
    want = load_model(copy).predict(held[:20])
    assert [p for _, p in doc["probabilities"]] == pytest.approx(want.tolist(), abs=1e-12)

    # And within the default budget the same model compiles, at -O1, and the record goes
    done = _cli(copy)
    assert "native predictor: built native/trees.so" in done.stdout, done.stdout
    manifest = json.loads((copy / "native" / "manifest.json").read_text())
    assert manifest["cflags"][0] == "-O1"
    assert not (copy / "native" / trees.SKIPPED_FILE).exists()


@pytest.mark.parametrize("task", TASKS)
def test_a_random_forest_over_the_budget_is_compiled_as_arrays_with_the_forests_answers(
    built, tmp_path, task
):
    # Given a random forest whose tl2cgen C is over the budget (here 0.01 MB)
    folder, held, _ = built["random_forest", task]
    copy = tmp_path / "m"
    copy.mkdir()
    for name in ("metadata.json", "model.joblib", CHECK_FILE):
        (copy / name).write_bytes((folder / name).read_bytes())

    # When the image's build step runs
    done = _cli(copy, "--max-source-mb", "0.01")

    # Then it builds the forest's nodes as data (tree_arrays.py) and says so
    assert done.returncode == 0, done.stderr
    assert "native predictor: built native/trees.so from model.joblib (modelops tree_arrays" in done.stdout
    assert "as tl2cgen wrote" in done.stdout
    # And serve's loader answers held-out rows (NaN included) as scikit-learn does, to the last bit
    compiled = trees.load(copy, read_metadata(copy))
    got = np.asarray(compiled.predict_rows(held.tolist()))
    want = load_model(copy).predict(held)
    assert got.shape == want.shape and np.abs(got - want).max() <= 1e-12
    manifest = json.loads((copy / "native" / "manifest.json").read_text())
    assert manifest["generator"].startswith("modelops tree_arrays") and manifest["sources"] == [
        "forest_arrays.c"
    ]


def test_a_forest_too_big_even_for_arrays_is_left_to_scikit_learn(built, tmp_path, monkeypatch):
    # Given a random forest over the compile budget and over the arrays' node limit (here 10 nodes)
    folder, _, _ = built["random_forest", "binary_classification"]
    copy = tmp_path / "m"
    copy.mkdir()
    for name in ("metadata.json", "model.joblib", CHECK_FILE):
        (copy / name).write_bytes((folder / name).read_bytes())
    monkeypatch.setattr(tree_arrays, "MAX_NODES", 10)
    # When it is built: nothing is compiled, and the reason names both limits
    with pytest.raises(
        trees.OverBudgetError, match=r"above the 0.01 MB .*nodes, more than the 10 written as arrays"
    ):
        trees.build(copy, read_metadata(copy), max_source_bytes=10_000)
    assert not (copy / "native").exists()
