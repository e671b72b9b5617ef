"""The image carries only its model's format libraries (model_server/formats.py, the Dockerfile's
model stage): chosen from the model folder, copied set by set."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest
from model_server import formats

from tests.serving_models import tree_model_folder

SERVING = Path(__file__).resolve().parents[3] / "serving_image"


def _joblib_folder(folder: Path, model: object, code: dict[str, str] | None = None) -> Path:
    folder.mkdir(parents=True)
    joblib.dump(model, folder / "model.joblib")
    (folder / "metadata.json").write_text(json.dumps({"format": "sklearn", "model_file": "model.joblib"}))
    for name, text in (code or {}).items():
        (folder / "code").mkdir(exist_ok=True)
        (folder / "code" / name).write_text(text)
    return folder


@pytest.mark.parametrize(
    ("algorithm", "sets"),
    [
        ("xgboost", ["xgboost"]),
        ("lightgbm", ["lightgbm"]),
        ("hist_gradient_boosting", []),
        ("random_forest", []),
    ],
)
def test_a_built_in_models_image_carries_its_own_library_only(tmp_path, algorithm, sets):
    folder, _ = tree_model_folder(tmp_path / algorithm, algorithm, "binary_classification")

    assert formats.needed(folder)[0] == sets


def test_the_built_in_algorithms_table_covers_every_algorithm():
    from model_server.algorithms import ALGORITHMS

    assert set(formats.BUILT_IN) == set(ALGORITHMS)


def test_an_onnx_model_carries_onnxruntime_only(tmp_path):
    (tmp_path / "metadata.json").write_text(json.dumps({"format": "onnx", "model_file": "model.onnx"}))

    assert formats.needed(tmp_path) == (["onnx"], "format onnx")


def test_a_joblib_pipeline_around_xgboost_carries_xgboost(tmp_path):
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from xgboost import XGBClassifier

    X = np.random.default_rng(0).random((60, 3))
    model = Pipeline([("impute", SimpleImputer()), ("xgb", XGBClassifier(n_estimators=3))]).fit(
        X, X[:, 0] > 0.5
    )

    sets, why = formats.needed(_joblib_folder(tmp_path / "m", model))

    assert sets == ["xgboost"] and "model.joblib names ['xgboost']" in why


def test_a_teams_module_that_cannot_be_imported_decides_nothing_and_its_imports_do(tmp_path):
    from sklearn.linear_model import LogisticRegression

    # Given a pickle of a team's class whose module imports a package not installed at this point
    # (code/requirements.txt is installed later, in the serving stage), and code that imports lightgbm
    code = {
        "steps.py": "import modelops_no_such_package\nclass Step:\n    pass\n",
        "boost.py": "from lightgbm import LGBMClassifier  # for the next version\n",
    }
    sys.path.insert(0, str(tmp_path))
    try:
        (tmp_path / "steps.py").write_text("class Step:\n    pass\n")  # importable while pickling only
        import steps  # type: ignore[import-not-found]

        folder = _joblib_folder(tmp_path / "m", [steps.Step(), LogisticRegression()], code)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("steps", None)

    sets, why = formats.needed(folder)

    assert sets == ["lightgbm"], why
    assert "model.joblib names none" in why and "code/ imports ['lightgbm']" in why


def test_an_unreadable_pickle_keeps_every_set_and_says_why(tmp_path):
    folder = _joblib_folder(tmp_path / "m", 1)
    (folder / "model.joblib").write_bytes(b"not a pickle")

    sets, why = formats.needed(folder)

    assert sets == ["lightgbm", "onnx", "xgboost"] and "could not be read" in why


def test_select_copies_only_the_chosen_sets(tmp_path):
    # Given the builder's /opt/formats with the three sets and an XGBoost model
    built = tmp_path / "opt-formats"
    for name in formats.SETS:
        (built / name / name).mkdir(parents=True)
        (built / name / name / "__init__.py").write_text(f"NAME = {name!r}\n")
    folder, _ = tree_model_folder(tmp_path / "model", "xgboost", "regression")

    # When the model stage's step runs
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "model_server.formats",
            "select",
            str(folder),
            str(built),
            str(tmp_path / "dest"),
        ],
        cwd=SERVING,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    # Then only the xgboost set is in the folder the serving stage copies, and it says why
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "dest").iterdir()) == ["xgboost"]
    assert "model formats: xgboost (format xgboost)" in done.stdout


def test_serve_imports_no_format_library_for_a_joblib_model(tmp_path):
    folder, _rows = tree_model_folder(tmp_path / "rf", "random_forest", "binary_classification")
    code = (
        "import sys; from pathlib import Path\n"
        "from model_server.artifact import load_model\n"
        f"model = load_model(Path({str(folder)!r}))\n"
        "print(sorted(m for m in ('xgboost', 'lightgbm', 'onnxruntime') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=SERVING, capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]"
