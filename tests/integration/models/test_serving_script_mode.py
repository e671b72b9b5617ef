"""Script mode: the built-in `train` as the harness of a team's own script (examples/script_mode),
in-process: same split, same evaluator, model/ as a built-in model's, served by `serve`, and one
line in output/failure for each way a script can go wrong."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
from model_server.artifact import load_model
from model_server.contract import container_paths
from model_server.train import main
from modelops.script_code import pack_folder

from tests.multiclass_data import TIER_FEATURES, TIER_LABEL, TIERS, generate_tier_csv
from tests.unit.serving.test_serving_multiclass import _invoke, _matrix, _unseen_rows

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "script_mode"
TIER = {
    "label_column": TIER_LABEL,
    "feature_columns": json.dumps(list(TIER_FEATURES)),
    "categorical_columns": json.dumps(["region"]),
    "task": "multiclass_classification",
    "objective_metric": "macro_f1",
    "algorithm": "hist_gradient_boosting",  # what the workflow always sends; the script replaces it
}
SCRIPT = {**TIER, "entry_point": "train.py", "C": "0.5"}
ROWS = 600


def _job(
    base: Path, hyper: dict[str, str], code: Path | None, champion: Path | None = None
) -> dict[str, str]:
    (base / "input" / "config").mkdir(parents=True)
    (base / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hyper))
    generate_tier_csv(base / "input" / "data" / "train" / "data.csv", ROWS, seed=5)
    if code is not None:
        channel = base / "input" / "data" / "code"
        channel.mkdir(parents=True)
        entry = hyper.get("entry_point", "train.py")
        (channel / "sourcedir.tar.gz").write_bytes(pack_folder(code, entry_point=entry).data)
    if champion is not None:
        channel = base / "input" / "data" / "champion"
        channel.mkdir(parents=True)
        for path in champion.rglob("*"):
            if path.is_file():
                target = channel / path.relative_to(champion)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(path.read_bytes())
    return {"SAGEMAKER_BASE_DIR": str(base), "TRAINING_JOB_NAME": "job"}


def _train(base: Path, hyper: dict[str, str], code: Path | None, champion: Path | None = None) -> Path:
    env = _job(base, hyper, code, champion)
    assert main(env) == 0, container_paths(env).failure_file.read_text()
    return container_paths(env).model_dir


def _failure(base: Path, hyper: dict[str, str], code: Path | None) -> str:
    env = _job(base, hyper, code)
    assert main(env) == 1
    text = container_paths(env).failure_file.read_text()
    assert text.count("\n") == 1, text
    return text.strip()


def _code(folder: Path, script: str, **modules: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.py").write_text(textwrap.dedent(script))
    for name, body in modules.items():
        (folder / f"{name}.py").write_text(textwrap.dedent(body))
    return folder


@pytest.fixture(scope="module")
def script_model(tmp_path_factory) -> Path:
    return _train(tmp_path_factory.mktemp("script"), SCRIPT, EXAMPLE)


@pytest.fixture(scope="module")
def builtin_model(tmp_path_factory) -> Path:
    return _train(tmp_path_factory.mktemp("builtin"), {**TIER, "max_iter": "30"}, None)


def test_the_example_script_trains_a_model_served_like_a_built_in_one(script_model, builtin_model):
    meta = json.loads((script_model / "metadata.json").read_text())
    evaluation = json.loads((script_model / "evaluation.json").read_text())
    builtin = json.loads((builtin_model / "evaluation.json").read_text())

    assert (meta["algorithm"], meta["format"], meta["model_file"]) == ("script", "sklearn", "model.joblib")
    assert meta["classes"] == list(TIERS) and meta["feature_columns"] == list(TIER_FEATURES)
    assert meta["hyperparameters"]["entry_point"] == "train.py" and meta["hyperparameters"]["C"] == "0.5"
    assert meta["compiled_skipped"]
    # The same holdout and the same evaluator as the built-in model
    assert set(evaluation) == set(builtin)
    assert (evaluation["n_train"], evaluation["n_validation"]) == (
        builtin["n_train"],
        builtin["n_validation"],
    )
    assert set(evaluation["metrics"]) == set(builtin["metrics"]) and evaluation["metric"] == "macro_f1"
    assert evaluation["metrics"]["accuracy"] > 0.6
    # The team's code ships with the model
    assert (script_model / "code" / "train.py").read_bytes() == (EXAMPLE / "train.py").read_bytes()
    # And the harness wrote its drift baseline: the same training rows' profiles as the built-in
    # model's (same split), its own predictions' class shares on the holdout
    baseline = json.loads((script_model / "baseline.json").read_text())
    builtin_baseline = json.loads((builtin_model / "baseline.json").read_text())
    assert baseline["features"] == builtin_baseline["features"]
    assert baseline["prediction"]["classes"] == list(TIERS)
    assert sum(baseline["prediction"]["shares"]) == pytest.approx(1.0)


def test_serve_answers_the_script_models_predict_proba_by_name(script_model):
    rows = _unseen_rows(40)

    doc = _invoke(script_model, rows)

    pipeline = load_model(script_model).estimator
    want = pipeline.predict_proba(_matrix(rows))
    assert doc["classes"] == list(TIERS)
    assert np.max(np.abs(np.asarray(doc["probabilities"]) - want)) <= 1e-6
    assert doc["predictions"] == [TIERS[i] for i in np.argmax(want, axis=1)]


def test_the_script_sees_only_the_training_rows_and_its_environment(tmp_path):
    code = _code(
        tmp_path / "code",
        """
        import csv, json, os, sys
        from pathlib import Path
        import joblib
        from sklearn.dummy import DummyClassifier
        rows = []
        for path in Path(os.environ["SM_CHANNEL_TRAIN"]).rglob("*.csv"):
            rows += list(csv.DictReader(path.open()))
        seen = {
            "rows": len(rows),
            "argv": sys.argv[1:],
            "hps": json.loads(os.environ["SM_HPS"]),
            "channels": json.loads(os.environ["SM_CHANNELS"]),
            "classes": json.loads(os.environ["MODELOPS_CLASSES"]),
            "header": list(rows[0]),
        }
        Path(os.environ["SM_OUTPUT_DATA_DIR"], "seen.json").write_text(json.dumps(seen))
        X = [[0.0] * 5 for _ in rows]
        joblib.dump(DummyClassifier().fit(X, [r["tier"] for r in rows]), Path(os.environ["SM_MODEL_DIR"], "model.joblib"))
        """,
    )
    model_dir = _train(tmp_path / "job", {**TIER, "entry_point": "train.py", "depth": "3"}, code)

    seen = json.loads((tmp_path / "job" / "output" / "data" / "seen.json").read_text())
    evaluation = json.loads((model_dir / "evaluation.json").read_text())
    assert (
        seen["rows"] == evaluation["n_train"] and evaluation["n_train"] + evaluation["n_validation"] == ROWS
    )
    assert seen["argv"] == ["--depth", "3"] and seen["hps"] == {"depth": "3"}
    assert seen["channels"] == ["train"] and seen["classes"] == list(TIERS)
    assert seen["header"] == [*TIER_FEATURES, TIER_LABEL]


def test_a_built_in_champion_and_a_script_candidate_are_judged_on_the_same_holdout(
    tmp_path, builtin_model, script_model
):
    model_dir = _train(tmp_path, SCRIPT, EXAMPLE, champion=builtin_model)

    evaluation = json.loads((model_dir / "evaluation.json").read_text())
    builtin = json.loads((builtin_model / "evaluation.json").read_text())
    alone = json.loads((script_model / "evaluation.json").read_text())
    # The champion's score on this holdout is its own evaluation's (the same rows), the candidate's unchanged
    assert evaluation["champion_metrics"] == builtin["metrics"]
    assert evaluation["metrics"] == alone["metrics"]
    assert "champion_skipped" not in evaluation


def test_a_script_champion_with_its_own_transformer_class_loads_from_model_code(tmp_path):
    code = _code(
        tmp_path / "code",
        """
        import json, os
        from pathlib import Path
        import joblib
        from sklearn.pipeline import Pipeline
        from sklearn.linear_model import LogisticRegression
        from features import Numeric
        import csv
        rows = []
        for path in Path(os.environ["SM_CHANNEL_TRAIN"]).rglob("*.csv"):
            rows += list(csv.DictReader(path.open()))
        features = json.loads(os.environ["MODELOPS_FEATURE_COLUMNS"])
        X = [[r[c] for c in features] for r in rows]
        model = Pipeline([("numeric", Numeric()), ("model", LogisticRegression(max_iter=500))])
        joblib.dump(model.fit(X, [r["tier"] for r in rows]), Path(os.environ["SM_MODEL_DIR"], "model.joblib"))
        """,
        features="""
        import math
        import numpy as np
        from sklearn.base import BaseEstimator, TransformerMixin

        class Numeric(BaseEstimator, TransformerMixin):
            '''Numbers only (text and missing cells as 0), as a team's own transformer might.'''

            def fit(self, X, y=None):
                self.n_features_in_ = len(X[0])
                return self

            def transform(self, X):
                def number(v):
                    try:
                        f = float(v)
                    except (TypeError, ValueError):
                        return 0.0
                    return 0.0 if math.isnan(f) else f
                return np.asarray([[number(v) for v in row] for row in X])
        """,
    )
    first = _train(tmp_path / "first", {**TIER, "entry_point": "train.py"}, code)
    assert (first / "code" / "features.py").is_file()

    # The team's module is importable only while the model is unpickled
    model = load_model(first)
    import sys

    assert "features" not in sys.modules and str(first / "code") not in sys.path
    assert model.predict(_matrix(_unseen_rows(5))).shape == (5, 3)
    # As the next run's champion, it is loaded from its archive's code/ and judged
    second = _train(tmp_path / "second", {**TIER, "entry_point": "train.py"}, code, champion=first)
    evaluation = json.loads((second / "evaluation.json").read_text())
    assert evaluation["champion"] is not None and evaluation["champion"] == evaluation["candidate"]


@pytest.mark.parametrize(
    ("script", "extra", "expected"),
    [
        (
            "import sys\nprint('loading'); print('bad column', file=sys.stderr); raise SystemExit(3)\n",
            {},
            "train.py exited with code 3: bad column",
        ),
        (
            "raise ValueError('no rows for region')\n",
            {},
            "train.py exited with code 1: ValueError: no rows for region",
        ),
        ("print('forgot to save')\n", {}, "train.py saved no model file in SM_MODEL_DIR; expected one of"),
        (
            "import os, pathlib\npathlib.Path(os.environ['SM_MODEL_DIR'], 'model.pkl').write_text('x')\n",
            {},
            "train.py saved ['model.pkl'] in SM_MODEL_DIR, no model file of a supported format",
        ),
        (
            "import time\ntime.sleep(60)\n",
            {"script_timeout_seconds": "1"},
            "train.py did not finish within script_timeout_seconds=1",
        ),
        (
            "import os, pathlib, joblib\nfrom sklearn.linear_model import LogisticRegression\n"
            "m = LogisticRegression().fit([[0.0, 1.0], [1.0, 0.0]] * 4, ['bronze', 'gold'] * 4)\n"
            "joblib.dump(m, pathlib.Path(os.environ['SM_MODEL_DIR'], 'model.joblib'))\n",
            {},
            "the model.joblib written by train.py cannot be used",
        ),
        (
            "import os, pathlib, joblib\nfrom sklearn.dummy import DummyClassifier\n"
            "m = DummyClassifier().fit([[0.0] * 5] * 4, ['a', 'b', 'a', 'b'])\n"
            "joblib.dump(m, pathlib.Path(os.environ['SM_MODEL_DIR'], 'model.joblib'))\n",
            {},
            "the model.joblib written by train.py has classes ['a', 'b'], the data's labels are",
        ),
    ],
    ids=[
        "exits-non-zero",
        "raises",
        "no-model",
        "unsupported-format",
        "timeout",
        "wrong-features",
        "wrong-classes",
    ],
)
def test_each_way_a_script_fails_is_one_line_naming_the_cause(tmp_path, script, extra, expected):
    code = _code(tmp_path / "code", script)

    reason = _failure(tmp_path / "job", {**TIER, "entry_point": "train.py", **extra}, code)

    assert expected in reason, reason
    assert not (tmp_path / "job" / "model" / "metadata.json").exists()


def test_an_entry_point_without_its_code_channel_or_file_is_named(tmp_path):
    reason = _failure(tmp_path / "a", {**TIER, "entry_point": "train.py"}, None)
    assert "entry_point='train.py' needs the channel 'code'" in reason
    code = _code(tmp_path / "code", "print(1)\n")
    (code / "other.py").write_text("")
    env = _job(tmp_path / "b", {**TIER, "entry_point": "other.py"}, code)
    (tmp_path / "b" / "input" / "config" / "hyperparameters.json").write_text(
        json.dumps({**TIER, "entry_point": "src/missing.py"})
    )
    assert main(env) == 1
    assert "entry_point 'src/missing.py' is not in the code archive sourcedir.tar.gz" in (
        container_paths(env).failure_file.read_text()
    )


@pytest.mark.parametrize("entry", ["../train.py", "/abs/train.py", "train.sh", "a//b.py"])
def test_an_entry_point_that_is_not_a_plain_relative_py_path_is_refused(tmp_path, entry):
    reason = _failure(tmp_path, {**TIER, "entry_point": entry}, None)
    assert f"hyperparameter entry_point={entry!r}" in reason


def test_the_readmes_minimal_script_trains_a_numeric_binary_model(tmp_path):
    from modelops_local.sample_data import CHURN_FEATURES, CHURN_LABEL, generate_churn_csv

    readme = (ROOT / "README.md").read_text()
    block = readme.split("The minimal script:\n\n```python\n", 1)[1].split("```", 1)[0]
    code = _code(tmp_path / "code", block)
    hyper = {
        "label_column": CHURN_LABEL,
        "feature_columns": json.dumps(list(CHURN_FEATURES)),
        "entry_point": "train.py",
    }
    env = _job(tmp_path / "job", hyper, code)
    generate_churn_csv(tmp_path / "job" / "input" / "data" / "train" / "data.csv", 400, seed=3)

    assert main(env) == 0, container_paths(env).failure_file.read_text()
    meta = json.loads((tmp_path / "job" / "model" / "metadata.json").read_text())
    evaluation = json.loads((tmp_path / "job" / "model" / "evaluation.json").read_text())
    assert meta["classes"] == ["0", "1"] and evaluation["metric"] == "auc" and evaluation["candidate"] > 0.55
