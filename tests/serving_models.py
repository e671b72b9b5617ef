"""Small model documents the serving tests share: a hand-made forest and model metadata."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # model_server is importable only where tests/unit/serving/conftest.py put it on sys.path
    from model_server.artifact import ModelMetadata


class BuiltOnFirstUse(dict[Any, Any]):
    """A module fixture's models, each made the first time a test asks for it (`build(key)`), then
    kept: under pytest-xdist every worker that runs one of the module's tests sets the fixture up,
    and makes only the models its own tests read instead of all of them."""

    def __init__(self, build: Callable[[Any], Any]) -> None:
        super().__init__()
        self._build = build

    def __missing__(self, key: Hashable) -> Any:
        value = self[key] = self._build(key)
        return value


def tiny_forest_doc() -> dict[str, Any]:
    """A one-tree forest over 2 features: x0 <= 0.5 -> leaf -1.0, else leaf +2.0 (NaN goes left)."""
    return {
        "format": "modelops.forest/1",
        "n_features": 2,
        "link": "identity",
        "baseline": 0.25,
        "trees": [
            {
                "feature": [0, 0, 0],
                "threshold": [0.5, 0.0, 0.0],
                "missing_left": [True, False, False],
                "left": [1, 0, 0],
                "right": [2, 0, 0],
                "is_leaf": [False, True, True],
                "value": [0.0, -1.0, 2.0],
            }
        ],
    }


def classifier_metadata(n_features: int, **fields: Any) -> ModelMetadata:
    """Metadata of a binary classifier over features f0..f<n-1>; `fields` override the rest."""
    from model_server.artifact import ModelMetadata

    values: dict[str, Any] = {
        "task": "binary_classification",
        "label_column": "y",
        "feature_columns": tuple(f"f{i}" for i in range(n_features)),
        "classes": ("0", "1"),
        "objective_metric": "auc",
        "n_train": 1000,
        "n_validation": 200,
        "sklearn_version": "",
        **fields,
    }
    return ModelMetadata(**values)


def has_c_compiler() -> bool:
    """Whether `python -m model_server.native build` finds a compiler here (native.find_compiler's
    names, without importing model_server, which only tests/unit/serving puts on sys.path)."""
    import shutil

    return any(shutil.which(name) for name in ("cc", "gcc", "clang"))


def tree_model_folder(
    folder: Any, algorithm: str, task: str, *, n_classes: int = 3, params: dict[str, Any] | None = None
) -> tuple[Any, Any]:
    """A model folder as train.py writes it (model file in the algorithm's format, metadata.json,
    check.json) for a small tree model over 8 features with ~8% missing cells; returns
    (the folder, held-out rows never trained on, with NaN)."""
    import numpy as np
    from model_server.algorithms import build_estimator
    from model_server.artifact import load_model, save_model, storage_format
    from model_server.checkrows import write_check
    from sklearn.datasets import make_classification, make_regression

    rng = np.random.default_rng(7)
    if task == "regression":
        X, y = make_regression(n_samples=1600, n_features=8, noise=5.0, random_state=7)
        classes = None
    else:
        k = 2 if task == "binary_classification" else n_classes
        X, y = make_classification(n_samples=1600, n_features=8, n_informative=5, n_classes=k, random_state=7)
        classes = tuple(f"c{i}" for i in range(k))
    X[rng.random(X.shape) < 0.08] = np.nan
    small = {
        "hist_gradient_boosting": {"max_iter": 30},
        "random_forest": {"n_estimators": 20, "max_depth": 8},
        "xgboost": {"n_estimators": 30},
        "lightgbm": {"n_estimators": 30},
        "linear": {},
    }[algorithm]
    estimator = build_estimator(algorithm, task, {**small, **(params or {})}, seed=0)
    estimator.fit(X[:1200], y[:1200])
    fmt = storage_format(estimator)
    from model_server.artifact import MODEL_FILES

    meta = classifier_metadata(
        8,
        task=task,
        classes=classes,
        objective_metric="rmse" if task == "regression" else "accuracy",
        algorithm=algorithm,
        format=fmt,
        model_file=MODEL_FILES[fmt],
    )
    folder.mkdir(parents=True, exist_ok=True)
    save_model(folder, estimator, meta)
    write_check(folder, load_model(folder), X[1200:1400])
    return folder, X[1400:]
