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
    # And where the walker takes the model (single-number leaves: all but a random forest's class
    # fractions), both were built and timed, and the faster kept
    if algorithm != "random_forest" or task == "regression":
        assert set(manifest["timings"]) == {"tl2cgen", "walker"}
        assert manifest["evaluator"] == trees.choose(manifest["timings"])
        assert manifest["choice"].startswith(manifest["evaluator"] + " (CPU per row on 200 check rows")
        # (tl2cgen's C compiled at -O1, the walker's arrays at -O3)
        assert manifest["cflags"][0] == {"tl2cgen": "-O1", "walker": "-O3"}[manifest["evaluator"]]
    else:
        assert manifest["timings"] == {} and manifest["evaluator"] == "tl2cgen"
        assert "the walker does not take it: leaves are vectors" in manifest["choice"]


def _walker(folder: Path, tmp: Path) -> trees.NativeTrees:
    """The walker's library for a model folder, built directly (whatever the build kept)."""
    meta = read_metadata(folder)
    model = trees._treelite_model(folder, meta)
    n_class = int(model.get_header_accessor().get_field("num_class")[0])
    first, width = trees.outputs(meta, n_class)
    sources = tree_arrays.walker_generate(
        model, first, width, tmp, float32_input=meta.algorithm == "random_forest"
    )
    native.compile_library(
        native.find_compiler() or "cc", tmp, sources, "walk.so", cflags=tree_arrays.WALKER_CFLAGS
    )
    return trees.open_library(tmp / "walk.so", len(meta.feature_columns), width)


def _probe_rows(held: np.ndarray) -> np.ndarray:
    """Held-out rows (NaN in ~8% of cells), some with exact zeros, some with every cell missing: a
    batch whose size is not a multiple of the walker's lanes."""
    zeros = held[:40].copy()
    zeros[:, ::2] = 0.0
    rows = np.vstack([held, zeros, np.full((3, held.shape[1]), np.nan)])
    assert len(rows) % tree_arrays.LANES != 0
    return rows


@pytest.mark.parametrize(
    ("algorithm", "task"),
    [(a, t) for a in ("xgboost", "lightgbm") for t in TASKS]
    + [("hist_gradient_boosting", "multiclass_classification"), ("random_forest", "regression")],
)
def test_the_walker_answers_what_the_models_library_answers_in_batches_and_one_row_at_a_time(
    built, tmp_path, algorithm, task
):
    # Given the walker built for a model (XGBoost, LightGBM, and the scikit-learn forests whose
    # leaves are single numbers: HistGradientBoosting multiclass, a random forest regressor)
    folder, held, _ = built[algorithm, task]
    walker = _walker(folder, tmp_path)
    rows = _probe_rows(held)
    want = load_model(folder).predict(rows)

    # When it answers the rows as one batch (tree-major, 8 rows walked together), one row a call
    # (8 trees walked together), and as a batch too large for the stack (read into the heap)
    batch = np.asarray(walker.predict_rows(rows.tolist()))
    single = np.asarray([walker.predict_rows([row])[0] for row in rows.tolist()])
    large = np.asarray(walker.predict_rows(np.vstack([rows] * 5).tolist()))
    assert large.size * rows.shape[1] > 2048 and np.array_equal(large, np.concatenate([batch] * 5))

    # Then both equal the library's answers at the format's tolerance, missing values and zeros too
    assert batch.shape == want.shape == single.shape
    for got in (batch, single):
        diff = np.abs(got - want)
        if algorithm == "xgboost":  # float32 inside XGBoost: relative to the size of the answer
            assert (diff / np.maximum(1.0, np.abs(want))).max() <= trees.FLOAT32_TOLERANCE
        else:
            assert diff.max() <= trees.TOLERANCE


def _walk_lightgbm(booster, folder: Path) -> trees.NativeTrees:
    """The walker built for a LightGBM booster (one output per row)."""
    import treelite

    booster.save_model(str(folder / "model.txt"))
    assert tree_arrays.lightgbm_refusal((folder / "model.txt").read_text()) is None
    model = treelite.frontend.load_lightgbm_model(folder / "model.txt")
    tree_arrays.walker_generate(model, 0, 1, folder)
    native.compile_library(
        native.find_compiler() or "cc",
        folder,
        [tree_arrays.WALKER_SOURCE_FILE],
        "w.so",
        cflags=tree_arrays.WALKER_CFLAGS,
    )
    return trees.open_library(folder / "w.so", booster.num_feature(), 1)


def test_the_walker_sends_a_missing_value_where_lightgbm_does_for_features_trained_without_any(tmp_path):
    # Given a LightGBM model trained on rows with no missing value (missing type None: LightGBM
    # reads NaN as 0.0 there) and with exact zeros in its features
    import lightgbm

    rng = np.random.default_rng(3)
    X = rng.normal(size=(800, 5))
    X[rng.random(X.shape) < 0.2] = 0.0
    y = X[:, 0] * 3 + np.where(X[:, 1] == 0.0, 5.0, X[:, 1]) + rng.normal(size=800) * 0.1
    params = {"verbosity": -1, "num_leaves": 15, "deterministic": True}
    booster = lightgbm.train(params, lightgbm.Dataset(X, y), 20)
    walker = _walk_lightgbm(booster, tmp_path)

    # When it answers rows with NaN, zeros and values either side of the thresholds
    rows = X[:200].copy()
    rows[rng.random(rows.shape) < 0.3] = np.nan

    # Then every answer is LightGBM's
    got = np.asarray(walker.predict_rows(rows.tolist()))
    assert np.abs(got - booster.predict(rows)).max() <= trees.TOLERANCE


def test_the_walker_follows_lightgbm_splits_on_an_infinite_threshold(tmp_path):
    # Given a LightGBM model whose splits send every number left and a missing value by the
    # default (threshold=inf in model.txt: the answer depends on whether feature 0 is missing)
    import lightgbm

    rng = np.random.default_rng(5)
    X = rng.normal(size=(3000, 4))
    missing = rng.random(3000) < 0.3
    y = np.where(missing, 4.0, 0.0) + X[:, 1] + rng.normal(size=3000) * 0.1
    X[missing, 0] = np.nan
    params = {"verbosity": -1, "num_leaves": 7, "deterministic": True, "min_data_in_leaf": 5}
    booster = lightgbm.train(params, lightgbm.Dataset(X, y), 10)
    assert any(" inf" in line or "=inf" in line for line in booster.model_to_string().splitlines())
    walker = _walk_lightgbm(booster, tmp_path)

    # When it answers rows with feature 0 missing, a number, or an infinity (a number too)
    rows = X[:300].copy()
    rows[:100:3, 0] = np.inf
    rows[1:100:3, 0] = -np.inf
    rows[2:100:3, 0] = np.nan

    # Then every answer is LightGBM's, one row a call and in batches
    want = booster.predict(rows)
    got = np.asarray(walker.predict_rows(rows.tolist()))
    single = np.asarray([walker.predict_rows([row])[0] for row in rows.tolist()])
    assert np.abs(got - want).max() <= trees.TOLERANCE and np.abs(single - want).max() <= trees.TOLERANCE


def test_lightgbm_zero_as_missing_is_left_to_lightgbm_and_the_build_says_why(tmp_path):
    # Given a LightGBM model trained with zero_as_missing (a split rule treelite's nodes do not carry)
    folder, _ = tree_model_folder(tmp_path / "m", "lightgbm", "regression", params={"zero_as_missing": True})
    # When the image's build step runs
    done = _cli(folder)
    # Then the walker is not built; tl2cgen is, but its C (treelite's nodes send only NaN the
    # default way) differs from LightGBM on the check rows, so nothing is kept and the line says why
    assert done.returncode == 0, done.stderr
    assert "native predictor: not built: the compiled trees differ from the model by" in done.stdout
    assert "the walker does not take it: LightGBM zero-as-missing splits (missing type Zero)" in done.stdout
    assert "serve uses the model's library" in done.stdout
    assert not (folder / "native").exists()


def test_the_build_keeps_the_walker_only_when_it_is_faster_by_the_margin():
    def timing(batch: float, one: float) -> trees.Timing:
        return {"batch_us_per_row": batch, "one_row_us": one}

    def pick(tl2cgen: trees.Timing, walker: trees.Timing) -> str:
        return trees.choose({"tl2cgen": tl2cgen, "walker": walker})

    assert pick(timing(17.5, 21.3), timing(4.9, 6.7)) == "walker"  # 3.6x and 3.2x
    assert pick(timing(3.0, 5.0), timing(2.4, 5.0)) == "walker"  # 1.25x on batches, even one-row
    assert pick(timing(3.0, 5.0), timing(2.6, 4.5)) == "tl2cgen"  # faster on both, by less than 1.2x
    assert pick(timing(3.0, 5.0), timing(1.0, 5.5)) == "tl2cgen"  # 3x on batches, slower one-row


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
    manifest = json.loads((copy / "native" / "manifest.json").read_text())
    generator = {
        "tl2cgen": "treelite 4.8.1, tl2cgen 1.0.0",
        "walker": "modelops tree_arrays walker (treelite's nodes), treelite 4.8.1",
    }[manifest["evaluator"]]
    assert f"native predictor: built native/trees.so from model.json ({generator})" in done.stdout
    assert "max relative |difference|" in done.stdout and "on 200 holdout rows (limit 1e-05)" in done.stdout
    # and which of the two libraries it kept, with both timings (tl2cgen / walker)
    tl2cgen, walker = manifest["timings"]["tl2cgen"], manifest["timings"]["walker"]
    ratio = tl2cgen["batch_us_per_row"] / walker["batch_us_per_row"]
    assert (
        f"; kept {manifest['evaluator']} (CPU per row on 200 check rows, tl2cgen / walker: 100-row batches "
        f"{tl2cgen['batch_us_per_row']:.2f} / {walker['batch_us_per_row']:.2f} us = {ratio:.2f}x"
    ) in done.stdout
    assert native.find_compiler() is not None


def test_a_model_over_the_compile_budget_is_walked_as_arrays_with_the_models_answers(built, tmp_path):
    # Given a LightGBM model whose tl2cgen C is larger than the build's budget (here 0.01 MB)
    folder, held, _ = built["lightgbm", "multiclass_classification"]
    copy = tmp_path / "m"
    copy.mkdir()
    for name in ("metadata.json", "model.txt", CHECK_FILE):
        (copy / name).write_bytes((folder / name).read_bytes())

    # When the image's build step runs with that budget
    done = _cli(copy, "--max-source-mb", "0.01")

    # Then it builds the walker alone (its nodes are data: no budget), says so, and answers as LightGBM
    assert done.returncode == 0, done.stdout
    assert "built native/trees.so from model.txt (modelops tree_arrays walker" in done.stdout
    assert "as tl2cgen wrote" in done.stdout and "above the 0.01 MB" in done.stdout
    manifest = json.loads((copy / "native" / "manifest.json").read_text())
    assert manifest["evaluator"] == "walker" and manifest["timings"] == {}
    assert manifest["sources"] == [tree_arrays.WALKER_SOURCE_FILE] and manifest["cflags"][0] == "-O3"
    got = np.asarray(trees.load(copy, read_metadata(copy)).predict_rows(held.tolist()))
    assert np.abs(got - load_model(copy).predict(held)).max() <= trees.TOLERANCE


def test_a_model_over_the_compile_budget_is_served_by_its_library_which_serve_says(tmp_path, caplog):
    # Given a LightGBM model the walker does not take (zero-as-missing splits) whose generated C is
    # larger than the build's budget (here 0.01 MB)
    copy, held = tree_model_folder(
        tmp_path / "m", "lightgbm", "binary_classification", params={"zero_as_missing": True}
    )
    with pytest.raises(trees.OverBudgetError, match=r"MB of C for model.txt, above the 0.01 MB"):
        trees.build(copy, read_metadata(copy), max_source_bytes=10_000)
    assert not (copy / "native").exists()  # trees.build itself leaves the folder as it was

    # When the image's build step runs with that budget
    done = _cli(copy, "--max-source-mb", "0.01")

    # Then it compiles nothing, says why and that the library serves, and records the reason
    assert done.returncode == 0, done.stderr
    assert "native predictor: not compiled: tl2cgen wrote" in done.stdout
    assert "the walker does not take it: LightGBM zero-as-missing splits" in done.stdout
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
