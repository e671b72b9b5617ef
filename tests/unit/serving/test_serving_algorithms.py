"""The built-in algorithms (model_server/algorithms.py) through `train`, the artifact and the champion path."""

from __future__ import annotations

import csv
import json
import logging
import tarfile
from pathlib import Path
from typing import get_args

import numpy as np
import pytest
from model_server import algorithms, artifact, train
from model_server.algorithms import ALGORITHMS, HYPERPARAMETERS, build_estimator
from model_server.artifact import ModelMetadata, load_estimator, load_model, save_model, storage_format
from model_server.contract import container_paths
from model_server.errors import HyperparameterError, ModelLoadError
from model_server.estimator import scores
from model_server.hyperparameters import parse_hyperparameters
from modelops.config import TrainingConfig

from tests.serving_models import classifier_metadata

FEATURES = ("a", "b", "c", "d")
TASKS = ("binary_classification", "regression")


def _data(rows: int, seed: int, missing: float = 0.08) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features with NaN in about `missing` of the cells, a learnable 0/1 label and a learnable value."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, len(FEATURES)))
    signal = 2.0 * X[:, 0] - 1.5 * X[:, 1] + X[:, 2]
    label = (signal + rng.normal(scale=0.5, size=rows) > 0).astype(np.int64)
    value = 10.0 + 3.0 * signal + rng.normal(scale=0.5, size=rows)
    X[rng.random(X.shape) < missing] = np.nan
    return X, label, value


def _write_csv(path: Path, X: np.ndarray, y: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow([*FEATURES, "y"])
        for row, target in zip(X, y, strict=True):
            writer.writerow(["" if np.isnan(v) else f"{v:.6f}" for v in row] + [str(target)])


def _job(base: Path, task: str, *, rows: int = 300, seed: int = 3, **hyper: str):
    """A SageMaker-style folder with a train channel of `rows` synthetic rows; returns its paths."""
    X, label, value = _data(rows, seed)
    _write_csv(base / "input" / "data" / "train" / "data.csv", X, label if task != "regression" else value)
    config = base / "input" / "config"
    config.mkdir(parents=True)
    doc = {"label_column": "y", "feature_columns": json.dumps(list(FEATURES)), "task": task, **hyper}
    (config / "hyperparameters.json").write_text(json.dumps(doc))
    return container_paths({"SAGEMAKER_BASE_DIR": str(base)})


def _fast(algorithm: str) -> dict[str, str]:
    """Few trees: the tests check behaviour, not accuracy."""
    return {
        "hist_gradient_boosting": {"max_iter": "30"},
        "random_forest": {"n_estimators": "30"},
        "linear": {},
        "xgboost": {"n_estimators": "30", "max_depth": "3"},
        "lightgbm": {"n_estimators": "30", "num_leaves": "8"},
    }[algorithm]


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p))


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_each_algorithm_trains_saves_and_loads_its_model(tmp_path, monkeypatch, algorithm, task):
    # Given a training channel with missing cells and the algorithm chosen by hyperparameter
    paths = _job(tmp_path / "ml", task, algorithm=algorithm, **_fast(algorithm))
    fitted = {}
    real_save = train.save_model

    def keep(model_dir, estimator, metadata, forest=None):  # the in-memory model, saved for real
        fitted["estimator"] = estimator
        real_save(model_dir, estimator, metadata, forest)

    monkeypatch.setattr(train, "save_model", keep)

    # When train runs
    evaluation = train.train(paths)

    # Then the model folder loads, with the algorithm and its library's format in the metadata
    model = load_model(paths.model_dir)
    meta = model.metadata
    assert meta.algorithm == algorithm
    expected_format = algorithm if algorithm in ("xgboost", "lightgbm") else "sklearn"
    assert meta.format == expected_format
    assert meta.model_file == artifact.MODEL_FILES[expected_format]
    assert (paths.model_dir / meta.model_file).is_file()
    assert meta.hyperparameters["seed"] == 0
    assert set(HYPERPARAMETERS[algorithm]) >= set(meta.hyperparameters) - {"seed", "validation_fraction"}
    # And only HistGradientBoosting is compiled; every other model says why and is served as it is
    if algorithm == "hist_gradient_boosting":
        assert meta.forest_file == "forest.json" and meta.compiled_skipped is None
    else:
        assert meta.forest_file is None
        assert f"algorithm {algorithm}" in meta.compiled_skipped
        assert "hist_gradient_boosting only" in meta.compiled_skipped
    # And the loaded model answers what the trained one answered, NaN rows included
    X, label, value = _data(200, seed=99)
    assert np.isnan(X).any(axis=1).sum() > 20
    in_memory = scores(fitted["estimator"], task, X)
    np.testing.assert_allclose(model.predict(X), in_memory, rtol=0, atol=1e-6)
    # And the model learned the signal (held-out rows from the same distribution)
    if task == "binary_classification":
        assert evaluation["metric"] == "auc" and evaluation["candidate"] > 0.8
        assert _auc(label, np.asarray(model.predict(X))) > 0.8
    else:
        assert evaluation["metrics"]["r2"] > 0.5
        assert np.corrcoef(value, model.predict(X))[0, 1] > 0.8


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_the_same_seed_trains_the_same_model(tmp_path, algorithm):
    # Given two identical jobs (subsampling on where the algorithm has it, so the seed matters)
    extra = {"subsample": "0.7", "colsample_bytree": "0.7"} if algorithm in ("xgboost", "lightgbm") else {}
    first = _job(tmp_path / "a", "binary_classification", algorithm=algorithm, **_fast(algorithm), **extra)
    second = _job(tmp_path / "b", "binary_classification", algorithm=algorithm, **_fast(algorithm), **extra)

    # When both train
    assert train.train(first) == train.train(second)

    # Then the models answer identically
    X = _data(50, seed=7)[0]
    assert (load_model(first.model_dir).predict(X) == load_model(second.model_dir).predict(X)).all()


def test_the_default_is_hist_gradient_boosting_with_the_old_flat_hyperparameters(tmp_path):
    # Given an old job: no algorithm, the flat max_iter/learning_rate/max_depth
    old = {"max_iter": "20", "learning_rate": "0.2", "max_depth": "3"}
    paths = _job(tmp_path / "old", "binary_classification", **old)

    # When it trains
    train.train(paths)

    # Then it is the HistGradientBoosting model it always was, joblib-stored, with those settings
    model = load_model(paths.model_dir)
    assert (model.metadata.algorithm, model.metadata.format) == ("hist_gradient_boosting", "sklearn")
    assert type(model.estimator).__name__ == "HistGradientBoostingClassifier"
    params = model.estimator.get_params()
    assert (params["max_iter"], params["learning_rate"], params["max_depth"]) == (20, 0.2, 3)
    assert (params["l2_regularization"], params["max_leaf_nodes"], params["min_samples_leaf"]) == (
        0.0,
        31,
        20,
    )
    assert params["early_stopping"] is False and params["random_state"] == 0


@pytest.mark.parametrize(
    ("hyper", "expected"),
    [
        (
            {"algorithm": "catboost"},
            "algorithm='catboost' is not supported; expected one of "
            "['hist_gradient_boosting', 'random_forest', 'linear', 'xgboost', 'lightgbm']",
        ),
        (
            {"algorithm": "random_forest", "n_estimators": "many"},
            "n_estimators='many' is not a number; algorithm random_forest accepts n_estimators as "
            "a whole number within [1, 5000]",
        ),
        (
            {"algorithm": "xgboost", "max_depth": "2.5"},
            "max_depth='2.5' is not a whole number; algorithm xgboost accepts max_depth as "
            "a whole number within [1, 100]",
        ),
        (
            {"algorithm": "xgboost", "subsample": "1.5"},
            "subsample='1.5' is out of range; algorithm xgboost accepts subsample as a number within (0, 1]",
        ),
        (
            {"algorithm": "lightgbm", "num_leaves": "1"},
            "num_leaves='1' is out of range; algorithm lightgbm accepts num_leaves as "
            "a whole number within [2, 131072]",
        ),
        (
            {"algorithm": "lightgbm", "n_jobs": "0"},
            "n_jobs='0' is out of range; algorithm lightgbm accepts n_jobs as a whole number within [1, 64]",
        ),
        (
            {"learning_rate": "0"},
            "learning_rate='0' is out of range; algorithm hist_gradient_boosting accepts learning_rate as "
            "a number within (0, 1]",
        ),
        (
            {"max_iter": "ten"},
            "max_iter='ten' is not a number; algorithm hist_gradient_boosting accepts max_iter",
        ),
        (
            {"algorithm": "linear", "C": "-1"},
            "C='-1' is out of range; algorithm linear accepts C as a number within (0, 1000000]",
        ),
        (
            {"algorithm": "random_forest", "max_features": "half"},
            "max_features='half' is not a number; algorithm random_forest accepts max_features as "
            "a number within (0, 1] or 'sqrt' or 'log2'",
        ),
        (
            {"algorithm": "random_forest", "num_leaves": "31"},
            "hyperparameter num_leaves belongs to algorithm lightgbm, not to random_forest (which accepts "
            "['max_depth', 'max_features', 'min_samples_leaf', 'n_estimators', 'n_jobs'])",
        ),
        (
            {"algorithm": "linear", "learning_rate": "0.1"},
            "hyperparameter learning_rate belongs to algorithm hist_gradient_boosting and xgboost and "
            "lightgbm, not to linear",
        ),
        (
            {"n_estimators": "50"},
            "hyperparameter n_estimators belongs to algorithm random_forest and xgboost and lightgbm, "
            "not to hist_gradient_boosting",
        ),
    ],
)
def test_bad_algorithm_hyperparameters_fail_with_a_clear_line(tmp_path, hyper, expected):
    # Given one bad hyperparameter for the chosen algorithm
    paths = _job(tmp_path / "ml", "binary_classification", rows=40, **hyper)

    # When train runs under the contract
    assert train.main({"SAGEMAKER_BASE_DIR": str(paths.base_dir)}) == 1

    # Then the one-line failure reason names it, the algorithm and what it accepts
    reason = paths.failure_file.read_text()
    assert reason.count("\n") == 1
    assert expected in reason
    assert not paths.model_dir.exists() or not any(paths.model_dir.iterdir())


def test_a_hyperparameter_of_the_other_task_is_refused():
    # Given linear regression with the classifier's C
    raw = {"label_column": "y", "feature_columns": '["a"]', "task": "regression", "algorithm": "linear"}

    # Then the error says C is for classification and what regression takes
    with pytest.raises(HyperparameterError, match=r"C of algorithm linear applies to classification only"):
        parse_hyperparameters({**raw, "C": "2"})
    params, _ = parse_hyperparameters({**raw, "alpha": "2"})
    assert params.model_params() == {"alpha": 2.0, "max_iter": 1000}


def test_names_no_algorithm_knows_are_ignored_with_a_warning(tmp_path, caplog):
    # Given a hyperparameter nobody uses next to a valid random forest
    paths = _job(tmp_path / "ml", "regression", algorithm="random_forest", n_estimators="10", colour="red")

    # When train runs
    with caplog.at_level(logging.WARNING, logger="model_server.train"):
        train.train(paths)

    # Then it trains, and the warning names what was ignored
    assert load_model(paths.model_dir).metadata.algorithm == "random_forest"
    assert "['colour']" in caplog.text


def test_every_hyperparameter_in_the_table_parses_at_its_bounds():
    # Given each algorithm's table, each entry at its low (or just above an open bound) and high end
    for algorithm, table in HYPERPARAMETERS.items():
        for task in TASKS:
            for name, spec in table.items():
                if not spec.applies_to(task):
                    continue
                low = spec.low + (0.5 if spec.low_open else 0) if spec.kind == "float" else spec.low
                low = int(low) + (1 if spec.low_open else 0) if spec.kind == "int" else low
                for value in (low, spec.high):
                    raw = {"label_column": "y", "feature_columns": '["a"]', "task": task}
                    params, ignored = parse_hyperparameters({**raw, "algorithm": algorithm, name: str(value)})
                    # Then the value is taken as given, and nothing is ignored
                    assert params.model_params()[name] == value, (algorithm, name, value)
                    assert ignored == []


@pytest.mark.parametrize(
    ("champion_algorithm", "candidate_algorithm"), [("xgboost", "lightgbm"), ("lightgbm", "linear")]
)
def test_a_champion_of_another_algorithm_is_scored_on_the_same_holdout(
    tmp_path, champion_algorithm, candidate_algorithm
):
    # Given a champion trained with one algorithm, packed as SageMaker packs model/
    old = _job(tmp_path / "old", "binary_classification", algorithm=champion_algorithm)
    train.train(old)
    new = _job(tmp_path / "new", "binary_classification", seed=4, algorithm=candidate_algorithm)
    archive = new.base_dir / "input" / "data" / "champion" / "model.tar.gz"
    archive.parent.mkdir(parents=True)
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(old.model_dir.iterdir()):
            tar.add(path, arcname=path.name)

    # When a candidate of another algorithm trains with it as the champion channel
    evaluation = train.train(new)

    # Then both are scored on the candidate's holdout
    assert "champion_skipped" not in evaluation
    assert evaluation["champion"] is not None and evaluation["champion"] > 0.8
    assert evaluation["champion_metrics"]["auc"] == evaluation["champion"]
    assert load_model(new.model_dir).metadata.algorithm == candidate_algorithm


@pytest.mark.parametrize("algorithm", ["xgboost", "lightgbm"])
@pytest.mark.parametrize("task", [*TASKS, "multiclass_classification"])
def test_the_library_format_round_trips_exactly(tmp_path, algorithm, task):
    # Given a bare XGBoost or LightGBM model fitted in memory (NaN in the features)
    X, label, value = _data(400, seed=5)
    y = {"regression": value, "binary_classification": label}.get(task)
    if y is None:  # three classes 0..2, fitted through the same scikit-learn API
        y = np.digitize(value, np.quantile(value, [1 / 3, 2 / 3])).astype(np.int64)
    estimator = build_estimator(algorithm, task, {"n_estimators": 25, "n_jobs": 1}, seed=0)
    estimator.fit(X[:300], y[:300])
    fmt = storage_format(estimator)
    meta = classifier_metadata(4, task=task, format=fmt, model_file=artifact.MODEL_FILES[fmt])

    # When it is saved in its library's format and loaded back
    save_model(tmp_path, estimator, meta)
    loaded = load_estimator(tmp_path, meta)

    # Then the file is the library's, and the answers on held-out rows (NaN rows too) are the same
    assert fmt == algorithm and (tmp_path / {"xgboost": "model.json", "lightgbm": "model.txt"}[fmt]).is_file()
    held_out = X[300:]
    assert np.isnan(held_out).any(axis=1).sum() > 10
    assert loaded.n_features_in_ == 4
    if task == "regression":
        np.testing.assert_allclose(loaded.predict(held_out), estimator.predict(held_out), rtol=0, atol=1e-6)
    else:
        expected = estimator.predict_proba(held_out)
        assert expected.shape == (100, 3 if task == "multiclass_classification" else 2)
        np.testing.assert_allclose(loaded.predict_proba(held_out), expected, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(loaded.predict(held_out), estimator.predict(held_out))


@pytest.mark.parametrize("algorithm", ["xgboost", "lightgbm", "linear"])
def test_categorical_columns_keep_the_encoder_and_joblib(tmp_path, algorithm):
    # Given a text column next to the numbers
    paths = _job(tmp_path / "ml", "binary_classification", algorithm=algorithm, categorical_columns='["d"]')
    data = paths.channel_dir("train") / "data.csv"
    lines = data.read_text().splitlines()
    rows = [line.split(",") for line in lines[1:]]
    for i, row in enumerate(rows):
        row[3] = "" if i % 17 == 0 else ("low", "mid", "high")[i % 3]
    data.write_text("\n".join([lines[0], *(",".join(r) for r in rows)]) + "\n")

    # When it trains
    train.train(paths)

    # Then the model is the encoder's Pipeline in front of the algorithm's estimator, stored by joblib
    model = load_model(paths.model_dir)
    assert model.metadata.format == "sklearn" and model.metadata.model_file == "model.joblib"
    assert type(model.estimator).__name__ == "Pipeline"
    assert "hist_gradient_boosting only" in model.metadata.compiled_skipped
    rows_in = np.array([[0.5, -0.2, 1.0, "mid"], [np.nan, 0.1, np.nan, "unseen"]], dtype=object)
    assert all(0.0 <= p <= 1.0 for p in model.predict(rows_in))


def test_an_unknown_format_is_refused_with_the_supported_ones(tmp_path):
    # Given a metadata.json naming a format this image cannot read
    doc = {**classifier_metadata(2).to_dict(), "format": "pmml", "model_file": "model.pmml"}
    (tmp_path / "metadata.json").write_text(json.dumps(doc))

    # Then loading says which format and which are supported
    with pytest.raises(
        ModelLoadError,
        match=r"format 'pmml' is not supported; expected one of \['sklearn', 'xgboost', 'lightgbm', 'onnx'\]",
    ):
        load_model(tmp_path)


def test_an_artifact_from_before_formats_reads_as_a_joblib_hist_gradient_boosting_model():
    # Given an old metadata document: no format, no algorithm
    doc = classifier_metadata(2).to_dict()
    del doc["format"], doc["algorithm"]

    # Then it parses as what every artifact of that time was
    meta = ModelMetadata.from_dict(doc, source="metadata.json")
    assert (meta.format, meta.algorithm, meta.model_file) == (
        "sklearn",
        "hist_gradient_boosting",
        "model.joblib",
    )


def test_the_product_layer_offers_exactly_the_images_algorithms():
    # The config's Literal (the layer must not import model_server) and the image's table agree
    offered = set(get_args(TrainingConfig.model_fields["algorithm"].annotation))
    assert offered == set(ALGORITHMS) == set(HYPERPARAMETERS) == set(algorithms._BUILDERS)
    assert TrainingConfig().algorithm == algorithms.DEFAULT_ALGORITHM


def test_xgboost_and_lightgbm_are_imported_only_when_needed():
    # Given a fresh interpreter that loads a scikit-learn model folder's code paths
    import subprocess
    import sys

    code = (
        "import sys; sys.path.insert(0, 'serving_image');"
        "import model_server.server, model_server.train, model_server.algorithms;"
        "print(sorted(m for m in ('xgboost', 'lightgbm') if m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[3]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("algorithm", ["random_forest", "xgboost", "lightgbm"])
def test_the_server_answers_with_the_estimator_of_a_model_it_cannot_compile(tmp_path, algorithm):
    import asyncio

    from model_server.contract import serve_settings
    from model_server.emf import RequestMetrics
    from model_server.server import ModelService

    # Given a model folder of an algorithm without a compiled predictor
    paths = _job(tmp_path / "ml", "binary_classification", algorithm=algorithm, **_fast(algorithm))
    train.train(paths)
    settings = serve_settings({"MODELOPS_MODEL": "m", "MODELOPS_VERSION": "1"})
    metrics = RequestMetrics(namespace="ModelOps", model="m", variant="stable", version="1")
    service = ModelService(paths.model_dir, settings, metrics)

    # When the server loads it and is asked about rows with a missing value
    service.load()
    rows = [[0.5, -0.2, 1.0, 0.0], [None, 0.1, None, 2.0]]
    status, doc = asyncio.run(service.invoke(json.dumps({"instances": rows}).encode(), "application/json"))

    # Then it is ready, and answers what the loaded model answers
    ping = service.ping()
    assert ping[0] == 200 and status == 200
    # /ping names the library that answers
    assert ping[1]["predictor"] == {"random_forest": "scikit-learn"}.get(algorithm, algorithm)
    expected = load_model(paths.model_dir).predict(np.array(rows, dtype=np.float64))
    assert [p for _, p in doc["probabilities"]] == pytest.approx(expected.tolist(), abs=1e-9)
    assert doc["predictions"] == [doc["classes"][int(p > 0.5)] for p in expected]


def test_the_image_build_step_says_why_it_builds_no_native_predictor(tmp_path):
    import subprocess
    import sys

    # Given a linear model folder (no trees to compile)
    paths = _job(tmp_path / "ml", "regression", algorithm="linear", **_fast("linear"))
    train.train(paths)

    # When the image's model stage runs the native build step on it
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run(
        [sys.executable, "-m", "model_server.native", "build", str(paths.model_dir)],
        cwd=root / "serving_image",
        capture_output=True,
        text=True,
        check=False,
    )

    # Then it does not fail the build and gives the metadata's reason
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "native predictor: not built: algorithm linear (sklearn) is not a tree ensemble "
        "(serve uses the model's library)"
    )


def test_max_features_takes_a_fraction_or_a_rule_and_defaults_to_scikit_learns():
    raw = {"label_column": "y", "feature_columns": '["a", "b"]', "algorithm": "random_forest"}
    # Given a rule (any case), a fraction, or nothing
    rule, _ = parse_hyperparameters({**raw, "max_features": "SQRT"})
    fraction, _ = parse_hyperparameters({**raw, "max_features": "0.5"})
    unset, _ = parse_hyperparameters({**raw, "task": "regression"})

    # Then the forest gets the rule, the fraction, or scikit-learn's default for the task
    def built(params):
        return build_estimator(params.algorithm, params.task, params.model_params(), seed=1).get_params()

    assert built(rule)["max_features"] == "sqrt"
    assert built(fraction)["max_features"] == 0.5
    assert built(unset)["max_features"] == 1.0 and built(unset)["n_jobs"] == 1
    assert built(unset)["random_state"] == 1
