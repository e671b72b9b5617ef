"""The built-in algorithms of the `train` program: what each accepts and how its estimator is built.

`HYPERPARAMETERS` is the one table of every algorithm's hyperparameters (type, range, default);
`parse_model_hyperparameters` checks SageMaker's strings against it and `build_estimator` makes the
scikit-learn-API estimator (fit(X, y) with labels 0..k-1, predict_proba / predict), so a classifier
works for any number of classes. Every estimator takes NaN for a missing value: the tree libraries
natively, `linear` through a SimpleImputer in front of its StandardScaler.

XGBoost and LightGBM are imported only when their estimator is built (the serve program's cold
start does not pay for them; artifact.py loads their saved models the same lazy way).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from model_server.errors import HyperparameterError
from model_server.estimator import Estimator
from model_server.hyperparameters import _float, _int, _optional_int

Algorithm = Literal["hist_gradient_boosting", "random_forest", "linear", "xgboost", "lightgbm"]
ALGORITHMS: tuple[str, ...] = get_args(Algorithm)
DEFAULT_ALGORITHM: Algorithm = "hist_gradient_boosting"
# Which tasks a hyperparameter applies to ("classification" covers binary and multiclass).
Applies = Literal["any", "classification", "regression"]
Value = int | float | str | None


@dataclass(frozen=True)
class Hyperparameter:
    """One accepted hyperparameter: a whole number or a number within [low, high] (or (low, high]
    with `low_open`); `none` also accepts 'none' (no limit), `words` accepts those strings."""

    kind: Literal["int", "float"]
    default: Value
    low: float
    high: float
    low_open: bool = False
    none: bool = False
    words: tuple[str, ...] = ()
    applies: Applies = "any"

    def accepted(self) -> str:
        what = "a whole number" if self.kind == "int" else "a number"
        text = f"{what} within {'(' if self.low_open else '['}{_bound(self.low)}, {_bound(self.high)}]"
        extras = [*(["'none' (no limit)"] if self.none else []), *(repr(w) for w in self.words)]
        return text + (f" or {' or '.join(extras)}" if extras else "")

    def applies_to(self, task: str) -> bool:
        if self.applies == "any":
            return True
        return (self.applies == "regression") == (task == "regression")


def _int_param(default: int | None, low: float, high: float, **kw: Any) -> Hyperparameter:
    return Hyperparameter("int", default, low, high, **kw)


def _float_param(default: float | None, low: float, high: float, **kw: Any) -> Hyperparameter:
    return Hyperparameter("float", default, low, high, **kw)


_N_JOBS = _int_param(1, 1, 64)  # the containers are sized small: one thread unless asked
_FRACTION = _float_param(1.0, 0, 1, low_open=True)

# The source of truth: every algorithm's hyperparameters. The defaults of hist_gradient_boosting are
# the image's defaults before `algorithm` existed (max_iter, learning_rate, max_depth) and
# scikit-learn's for the rest, so an old config trains exactly the model it trained before.
HYPERPARAMETERS: dict[str, dict[str, Hyperparameter]] = {
    "hist_gradient_boosting": {
        "max_iter": _int_param(100, 1, 10_000),
        "learning_rate": _float_param(0.1, 0, 1, low_open=True),
        "max_depth": _int_param(None, 1, 1000, none=True),
        "l2_regularization": _float_param(0.0, 0, 1e6),
        "max_leaf_nodes": _int_param(31, 2, 100_000, none=True),
        "min_samples_leaf": _int_param(20, 1, 1_000_000),
    },
    "random_forest": {
        "n_estimators": _int_param(100, 1, 5000),
        "max_depth": _int_param(None, 1, 1000, none=True),
        "min_samples_leaf": _int_param(1, 1, 1_000_000),
        # A fraction of the features per split, or sqrt/log2 of their number; unset: scikit-learn's
        # default (sqrt for classification, all of them for regression).
        "max_features": _float_param(None, 0, 1, low_open=True, words=("sqrt", "log2")),
        "n_jobs": _N_JOBS,
    },
    "linear": {
        "C": _float_param(1.0, 0, 1e6, low_open=True, applies="classification"),
        "alpha": _float_param(1.0, 0, 1e6, applies="regression"),
        "max_iter": _int_param(1000, 1, 100_000),
    },
    "xgboost": {
        "n_estimators": _int_param(100, 1, 10_000),
        "max_depth": _int_param(6, 1, 100),
        "learning_rate": _float_param(0.3, 0, 1, low_open=True),
        "subsample": _FRACTION,
        "colsample_bytree": _FRACTION,
        "min_child_weight": _float_param(1.0, 0, 1e6),
        "reg_lambda": _float_param(1.0, 0, 1e6),
        "n_jobs": _N_JOBS,
    },
    "lightgbm": {
        "n_estimators": _int_param(100, 1, 10_000),
        "num_leaves": _int_param(31, 2, 131_072),
        "max_depth": _int_param(None, 1, 100, none=True),
        "learning_rate": _float_param(0.1, 0, 1, low_open=True),
        "subsample": _FRACTION,
        "colsample_bytree": _FRACTION,
        "min_child_samples": _int_param(20, 1, 1_000_000),
        "reg_lambda": _float_param(0.0, 0, 1e6),
        "n_jobs": _N_JOBS,
    },
}
# Every name some algorithm accepts (hyperparameters.py ignores, with a warning, only the others).
MODEL_HYPERPARAMETERS: frozenset[str] = frozenset(n for table in HYPERPARAMETERS.values() for n in table)


def parse_algorithm(raw: Mapping[str, Any]) -> Algorithm:
    """The `algorithm` hyperparameter (hist_gradient_boosting when absent or empty)."""
    value = raw.get("algorithm")
    name = DEFAULT_ALGORITHM if value is None or not str(value).strip() else str(value).strip()
    if name not in ALGORITHMS:
        raise HyperparameterError(
            f"hyperparameter algorithm={name!r} is not supported; expected one of {list(ALGORITHMS)}"
        )
    return name  # type: ignore[return-value]  # checked against ALGORITHMS above


def parse_model_hyperparameters(algorithm: str, task: str, raw: Mapping[str, Any]) -> dict[str, Value]:
    """The algorithm's hyperparameters for `task`, defaults filled in; HyperparameterError names the
    hyperparameter, the algorithm and what it accepts, or the algorithm a misplaced name belongs to."""
    table = HYPERPARAMETERS[algorithm]
    own = {name: spec for name, spec in table.items() if spec.applies_to(task)}
    for name in sorted(MODEL_HYPERPARAMETERS & set(raw)):
        if name in own:
            continue
        if name in table:  # linear's C with regression, alpha with classification
            raise HyperparameterError(
                f"hyperparameter {name} of algorithm {algorithm} applies to {table[name].applies} only, "
                f"not to task {task}; for {task} {algorithm} accepts {sorted(own)}"
            )
        owners = [a for a, t in HYPERPARAMETERS.items() if name in t]
        raise HyperparameterError(
            f"hyperparameter {name} belongs to algorithm {' and '.join(owners)}, not to {algorithm} "
            f"(which accepts {sorted(own)})"
        )
    return {name: _parse(algorithm, name, spec, raw) for name, spec in own.items()}


def _parse(algorithm: str, name: str, spec: Hyperparameter, raw: Mapping[str, Any]) -> Value:
    value = raw.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return spec.default
    word = value.strip().lower() if isinstance(value, str) else None
    if word is not None and word in spec.words:
        return word
    if spec.none and word in {"none", "null"}:
        return None
    try:
        if spec.kind == "float":
            number: float | int | None = _float(raw, name, 0.0)
        elif spec.none:
            number = _optional_int(raw, name)
        else:
            number = _int(raw, name, 0)
    except HyperparameterError as exc:
        raise HyperparameterError(
            f"{exc}; algorithm {algorithm} accepts {name} as {spec.accepted()}"
        ) from None
    assert number is not None  # a value is present and is not 'none'
    low_ok = number > spec.low if spec.low_open else number >= spec.low
    if not (low_ok and number <= spec.high):
        raise HyperparameterError(
            f"hyperparameter {name}={value!r} is out of range; algorithm {algorithm} accepts "
            f"{name} as {spec.accepted()}"
        )
    return number


def build_estimator(
    algorithm: str,
    task: str,
    params: Mapping[str, Value],
    *,
    seed: int,
    categorical_features: int = 0,
) -> Estimator:
    """A fresh estimator: a classifier (labels 0..k-1) unless `task` is regression, seeded with the
    run's `seed`. With `categorical_features` > 0 it sits behind train.categorical_pipeline, whose
    encoder puts those columns first as codes 0..k-1 (NaN for missing or unseen):
    hist_gradient_boosting splits on them as categories, the others read the codes as numbers."""
    classification = task != "regression"
    builder = _BUILDERS[algorithm]
    return builder(classification, dict(params), seed, categorical_features)


def _hist_gradient_boosting(
    classification: bool, params: dict[str, Any], seed: int, categorical: int
) -> Estimator:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    cls = HistGradientBoostingClassifier if classification else HistGradientBoostingRegressor
    # early_stopping=False: "auto" would carve its own random validation split on large data.
    estimator: Estimator = cls(
        **params,
        random_state=seed,
        early_stopping=False,
        **({"categorical_features": list(range(categorical))} if categorical else {}),
    )
    return estimator


def _random_forest(classification: bool, params: dict[str, Any], seed: int, categorical: int) -> Estimator:
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    cls = RandomForestClassifier if classification else RandomForestRegressor
    if params.get("max_features") is None:
        params.pop("max_features", None)  # scikit-learn's default for the task
    estimator: Estimator = cls(**params, random_state=seed)
    return estimator


def _linear(classification: bool, params: dict[str, Any], seed: int, categorical: int) -> Estimator:
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    model = LogisticRegression(**params, random_state=seed) if classification else Ridge(**params)
    # Missing cells get the column's training mean (a column empty in training becomes 0 rather than
    # being dropped, so the model still takes every feature); then every column is standardised.
    pipeline: Estimator = Pipeline(
        [
            ("impute", SimpleImputer(keep_empty_features=True)),
            ("scale", StandardScaler()),
            ("model", model),
        ]
    )
    return pipeline


def _xgboost(classification: bool, params: dict[str, Any], seed: int, categorical: int) -> Estimator:
    import xgboost

    cls = xgboost.XGBClassifier if classification else xgboost.XGBRegressor
    estimator: Any = cls(**params, tree_method="hist", random_state=seed)
    return estimator  # type: ignore[no-any-return]


def _lightgbm(classification: bool, params: dict[str, Any], seed: int, categorical: int) -> Estimator:
    import lightgbm

    cls = lightgbm.LGBMClassifier if classification else lightgbm.LGBMRegressor
    if params.get("max_depth") is None:
        params["max_depth"] = -1  # LightGBM's "no limit"
    subsample = params.get("subsample")
    estimator: Any = cls(
        **params,
        # LightGBM samples rows only every subsample_freq iterations (0: never)
        subsample_freq=1 if isinstance(subsample, float) and subsample < 1 else 0,
        random_state=seed,
        deterministic=True,
        force_row_wise=True,  # with `deterministic`: the same model whatever the timing
        verbosity=-1,
    )
    return estimator  # type: ignore[no-any-return]


_BUILDERS = {
    "hist_gradient_boosting": _hist_gradient_boosting,
    "random_forest": _random_forest,
    "linear": _linear,
    "xgboost": _xgboost,
    "lightgbm": _lightgbm,
}


def _bound(value: float) -> str:
    return str(int(value)) if value == int(value) and abs(value) < 1e7 else f"{value:g}"
