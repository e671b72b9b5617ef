"""The native predictor (model_server/native.py): the forest as C, built and checked with the image."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from model_server import native
from model_server.artifact import write_json
from model_server.contract import METADATA_FILE
from model_server.forest import compile_forest, export_forest
from model_server.native import NativeError
from model_server.predictor import Predictor
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

from tests.serving_models import classifier_metadata

SERVING_IMAGE = Path(__file__).resolve().parents[3] / "serving_image"
pytestmark = pytest.mark.skipif(native.find_compiler() is None, reason="no C compiler")


def _with_check(doc: dict, predict, rows: np.ndarray) -> dict:
    """The document as train.py ships it: the forest plus holdout rows and the model's answers."""
    return {
        **doc,
        "check": {
            "rows": [[None if math.isnan(v) else float(v) for v in row] for row in rows.tolist()],
            "expected": [float(v) for v in predict(rows)],
        },
    }


def _folder(tmp_path: Path, doc: dict) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "forest.json").write_text(json.dumps(doc))
    return folder


@pytest.fixture(scope="module")
def classifier():
    X, y = make_classification(n_samples=3000, n_features=8, n_informative=5, random_state=3)
    rng = np.random.default_rng(3)
    X[rng.random(X.shape) < 0.08] = np.nan  # some nodes send NaN left, others right
    model = HistGradientBoostingClassifier(max_iter=40, random_state=0).fit(X[:2400], y[:2400])
    doc, why = export_forest(model)
    assert doc is not None, why
    return model, _with_check(doc, lambda r: model.predict_proba(r)[:, 1], X[2400:2600]), X[2400:]


@pytest.fixture(scope="module")
def built(classifier, tmp_path_factory):
    _, doc, _ = classifier
    folder = _folder(tmp_path_factory.mktemp("native"), doc)
    return folder, native.build(folder), doc


def test_the_native_classifier_equals_scikit_learn_and_the_python_forest_missing_values_included(
    classifier, built
):
    # Given a classifier trained with missing values, and its native predictor built and loaded
    model, _, holdout = classifier
    folder, manifest, doc = built
    forest = native.load(folder, "forest.json", doc)

    # Then on the holdout it gives predict_proba's numbers (rows with NaN included)
    assert np.isnan(holdout).any()
    got = forest.predict_rows(holdout.tolist())
    assert np.max(np.abs(np.asarray(got) - model.predict_proba(holdout)[:, 1])) <= 1e-12
    # And exactly the Python forest's on rows that take both sides of every split and NaN at each
    probes = native.probe_rows(doc, holdout.tolist())
    assert len(probes) > 1000
    assert forest.predict_rows(probes) == compile_forest(doc).predict_rows(probes)
    # And the manifest records what was checked and with what
    assert manifest["max_abs_diff_python"] == 0.0 and manifest["max_abs_diff_estimator"] <= 1e-12
    assert manifest["check_rows"] == 200 and manifest["forest_sha256"]
    assert {p.name for p in (folder / "native").iterdir()} == {"forest.c", "forest.so", "manifest.json"}


def test_one_forest_always_builds_the_same_bytes(built, tmp_path):
    # Given the built model folder and a copy of its forest in another folder
    folder, _, doc = built
    again = _folder(tmp_path, doc)
    # When it is built again
    native.build(again)
    # Then library, source and manifest are byte for byte the same (the image digest depends on them)
    for name in ("forest.so", "forest.c", "manifest.json"):
        assert (again / "native" / name).read_bytes() == (folder / "native" / name).read_bytes(), name


def test_the_native_regressor_equals_scikit_learn(tmp_path):
    X, y = make_regression(n_samples=1500, n_features=5, noise=3.0, random_state=1)
    model = HistGradientBoostingRegressor(max_iter=30, random_state=0).fit(X[:1200], y[:1200])
    doc, _ = export_forest(model)
    assert doc is not None
    doc = _with_check(doc, model.predict, X[1200:1300])
    folder = _folder(tmp_path, doc)
    native.build(folder)
    got = native.load(folder, "forest.json", doc).predict_rows(X[1200:].tolist())
    assert np.max(np.abs(np.asarray(got) - model.predict(X[1200:]))) <= 1e-9


def test_rows_of_the_wrong_width_or_type_raise_and_tuples_ints_and_no_rows_work(classifier, built):
    folder, _, doc = built
    forest = native.load(folder, "forest.json", doc)
    row = [0.5] * 8
    assert forest.predict_rows([]) == []
    assert (
        forest.predict_rows([tuple(row)])
        == forest.predict_rows([row])
        == forest.predict_rows([[0.5] * 7 + [0.5]])
    )
    assert forest.predict_rows([[1] * 8]) == forest.predict_rows([[1.0] * 8])
    with pytest.raises(ValueError, match="row 1 must be a list of 8 numbers"):
        forest.predict_rows([row, row[:7]])
    with pytest.raises(TypeError):
        forest.predict_rows([[*row[:7], "x"]])


def test_a_predictor_with_the_native_forest_uses_it_for_every_batch_size(classifier, built):
    model, _, holdout = classifier
    folder, _, doc = built
    calls = []

    class Spy:
        def predict_proba(self, matrix):
            calls.append(len(matrix))
            return model.predict_proba(matrix)

    metadata = classifier_metadata(8, n_train=2400, n_validation=600)
    predictor = Predictor(
        metadata, forest=compile_forest(doc), estimator=Spy(), native=native.load(folder, "forest.json", doc)
    )
    assert predictor.kind == "native"
    for size in (1, 63, 64, 600):
        got = predictor.predict_rows(holdout[:size].tolist())
        assert np.max(np.abs(np.asarray(got) - model.predict_proba(holdout[:size])[:, 1])) <= 1e-12
    assert calls == []


def test_a_gap_to_the_estimator_builds_nothing(classifier, tmp_path):
    # Given check rows whose expected answers are off by 1e-6 (as if the forest were wrong)
    _, doc, _ = classifier
    wrong = json.loads(json.dumps(doc))
    wrong["check"]["expected"][7] += 1e-6
    folder = _folder(tmp_path, wrong)

    # Then the build refuses, naming the gap, and writes nothing into the model folder
    with pytest.raises(NativeError, match="differs from the estimator by 1e-06 on the check rows"):
        native.build(folder)
    assert not (folder / "native").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("check"), "no usable `check` rows"),
        (lambda d: d["check"]["expected"].pop(), "as many expected values as rows"),
        (lambda d: d.update(format="x"), "not a modelops.forest/1 document"),
    ],
)
def test_a_forest_without_usable_check_rows_builds_nothing(classifier, tmp_path, change, message):
    _, doc, _ = classifier
    bad = json.loads(json.dumps(doc))
    change(bad)
    folder = _folder(tmp_path, bad)
    with pytest.raises(NativeError, match=message):
        native.build(folder)
    assert not (folder / "native").exists()


def test_a_compiler_error_is_reported_with_its_output(classifier, tmp_path):
    _, doc, _ = classifier
    folder = _folder(tmp_path, doc)
    with pytest.raises(NativeError, match="failed"):
        native.build(folder, compiler="false")
    assert not (folder / "native").exists()


def test_load_refuses_a_library_built_for_another_forest_or_python(classifier, built, tmp_path):
    folder, _, doc = built
    copy = tmp_path / "model"
    copy.mkdir()
    (copy / "native").mkdir()
    for name in ("forest.so", "manifest.json"):
        (copy / "native" / name).write_bytes((folder / "native" / name).read_bytes())
    # A forest.json that is not the one the library was built from
    changed = {**doc, "baseline": doc["baseline"] + 1.0}
    (copy / "forest.json").write_text(json.dumps(changed))
    with pytest.raises(NativeError, match="was built for another forest.json"):
        native.load(copy, "forest.json", changed)
    # Another Python's ABI
    (copy / "forest.json").write_bytes((folder / "forest.json").read_bytes())
    manifest = json.loads((copy / "native" / "manifest.json").read_text())
    (copy / "native" / "manifest.json").write_text(json.dumps({**manifest, "python_abi": "cpython-39"}))
    with pytest.raises(NativeError, match="built for Python cpython-39"):
        native.load(copy, "forest.json", doc)
    # No native folder at all
    with pytest.raises(NativeError, match="built without the native predictor"):
        native.load(tmp_path, "forest.json", doc)


def test_the_c_source_spells_infinite_and_missing_thresholds_and_routes_like_the_python_forest(tmp_path):
    doc = {
        "format": "modelops.forest/1",
        "n_features": 2,
        "link": "logistic",
        "baseline": 0.25,
        "trees": [
            {
                "feature": [0, 1, 0, 0, 0],
                "threshold": [0.5, math.inf, 0.0, 0.0, 0.0],
                "missing_left": [True, False, False, False, False],
                "left": [1, 3, 0, 0, 0],
                "right": [2, 4, 0, 0, 0],
                "is_leaf": [False, False, True, True, True],
                "value": [0.0, 0.0, 900.0, -1.0, 3.0],
            }
        ],
    }
    source = native.c_source(doc)
    assert "x[1] <= INFINITY" in source and "x[0] <= 0.5 || x[0] != x[0]" in source
    rows = [[0.5, 1.0], [0.6, 0.0], [math.nan, math.nan], [-1.0, math.inf], [0.0, -math.inf]]
    doc["check"] = {
        "rows": [[None if math.isnan(v) else v for v in r] for r in rows],
        "expected": compile_forest(doc).predict_rows(rows),
    }
    folder = _folder(tmp_path, doc)
    native.build(folder)
    assert native.load(folder, "forest.json", doc).predict_rows(rows) == compile_forest(doc).predict_rows(
        rows
    )


def _model_folder(tmp_path: Path, doc: dict | None) -> Path:
    folder = tmp_path / "model"
    folder.mkdir(parents=True)
    meta = classifier_metadata(8, forest_file="forest.json" if doc is not None else None)
    write_json(folder / METADATA_FILE, meta.to_dict())
    if doc is not None:
        (folder / "forest.json").write_text(json.dumps(doc))
    return folder


def _cli(folder: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "model_server.native", "build", str(folder), *extra],
        env={"PYTHONPATH": str(SERVING_IMAGE), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_build_step_never_fails_the_image_build_for_want_of_a_native_predictor(classifier, tmp_path):
    _, doc, _ = classifier
    # A model with a forest: built, and the step says what it checked
    done = _cli(_model_folder(tmp_path / "a", doc))
    assert done.returncode == 0 and "native predictor: built native/forest.so" in done.stdout, done.stderr
    assert "exact on" in done.stdout
    # No forest (a model the compiled forest cannot reproduce) and no check rows for treelite +
    # tl2cgen: nothing built, exit 0, the reason
    done = _cli(_model_folder(tmp_path / "b", None))
    assert (done.returncode, done.stdout.strip()) == (
        0,
        "native predictor: not built: check.json not found (a model trained before check rows were "
        "stored?); serve uses the model's library",
    )
    # No compiler: exit 0, the reason and the fallback
    folder = _model_folder(tmp_path / "c", doc)
    done = _cli(folder, "--compiler", "/nonexistent/cc")
    assert done.returncode == 0 and "native predictor: not built:" in done.stdout
    assert "serve uses the Python forest and scikit-learn" in done.stdout
    assert not (folder / "native").exists()
    # A folder that is not a model: exit 0 too (serve's /ping reports the broken metadata.json)
    empty = tmp_path / "d"
    empty.mkdir()
    done = _cli(empty)
    assert done.returncode == 0 and "native predictor: not built:" in done.stdout
    assert "metadata.json not found" in done.stdout
