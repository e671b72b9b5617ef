"""Small model documents the serving tests share: a hand-made forest and model metadata."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # model_server is importable only where tests/unit/serving/conftest.py put it on sys.path
    from model_server.artifact import ModelMetadata


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
