"""Training hyperparameters: SageMaker passes every value as a string; parse and check them here."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from model_server.errors import HyperparameterError

Task = Literal["binary_classification", "multiclass_classification", "regression"]
# Every metric the evaluator computes per task (the first is the default objective); the product
# layer's config.TASK_METRICS must agree (a unit test checks it).
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "binary_classification": ("auc", "accuracy", "f1", "precision", "recall", "logloss"),
    "multiclass_classification": ("accuracy", "macro_f1", "logloss"),
    "regression": ("rmse", "mae", "r2"),
}
DEFAULT_METRIC = {task: metrics[0] for task, metrics in TASK_METRICS.items()}
KNOWN = {
    "label_column",
    "feature_columns",
    "categorical_columns",
    "task",
    "objective_metric",
    "seed",
    "validation_fraction",
    "algorithm",
    "allow_class_change",
    "entry_point",
    "script_timeout_seconds",
    "modelops_judge",
}
#: Judge mode (train.py): `train` fits nothing and scores the `candidate` channel's model instead.
#: Prefixed so that no team hyperparameter (passed through to a script or an image) can mean it.
JUDGE_HYPERPARAMETER = "modelops_judge"
# Script mode (script_mode.py): how long the team's script may run, by default and at most.
DEFAULT_SCRIPT_TIMEOUT_SECONDS = 3600
MAX_SCRIPT_TIMEOUT_SECONDS = 5 * 24 * 3600


@dataclass(frozen=True)
class TrainingParams:
    label_column: str
    feature_columns: tuple[str, ...]
    task: Task
    objective_metric: str
    seed: int = 0
    validation_fraction: float = 0.2
    # Feature columns holding text categories (encoded and split on as categories, train.py).
    categorical_columns: tuple[str, ...] = ()
    # Classification: train even when the data's class labels differ from the champion's (the
    # champion then cannot be compared, and the candidate replaces it as a first version would).
    allow_class_change: bool = False
    # The built-in algorithm (model_server.algorithms) and its hyperparameters, checked and with
    # defaults filled in (hist_gradient_boosting's max_iter, learning_rate, max_depth, ...).
    algorithm: str = "hist_gradient_boosting"
    model_hyperparameters: Mapping[str, int | float | str | None] = field(default_factory=dict)
    # Script mode: the team's script (in channel `code`) trains the model instead of `algorithm`
    # (which is then "script"); model_hyperparameters are the hyperparameters handed to it.
    entry_point: str | None = None
    script_timeout_seconds: int = DEFAULT_SCRIPT_TIMEOUT_SECONDS
    # Judge mode: score the candidate channel's model (a team image's) on this image's holdout.
    judge: bool = False

    def model_params(self) -> dict[str, Any]:
        return dict(self.model_hyperparameters)


def parse_hyperparameters(raw: Mapping[str, Any]) -> tuple[TrainingParams, list[str]]:
    """Typed parameters plus the names of hyperparameters this image ignores (for a warning)."""
    # Imported here: algorithms.py reuses this module's parsers (_int, _float, _optional_int).
    from model_server.algorithms import MODEL_HYPERPARAMETERS, parse_algorithm, parse_model_hyperparameters

    label = _required_str(raw, "label_column")
    features = _columns(raw, "feature_columns")
    if label in features:
        raise HyperparameterError(f"hyperparameter label_column {label!r} is also listed in feature_columns")
    categorical = _columns(raw, "categorical_columns", required=False)
    unknown = [c for c in categorical if c not in features]
    if unknown:
        raise HyperparameterError(
            f"hyperparameter categorical_columns {unknown} are not among feature_columns {list(features)}"
        )
    task = str(raw.get("task") or "binary_classification")
    if task not in TASK_METRICS:
        raise HyperparameterError(
            f"hyperparameter task={task!r} is not supported; expected one of {sorted(TASK_METRICS)}"
        )
    metric = str(raw.get("objective_metric") or DEFAULT_METRIC[task])
    if metric not in TASK_METRICS[task]:
        raise HyperparameterError(
            f"hyperparameter objective_metric={metric!r} does not apply to task {task}; "
            f"expected one of {list(TASK_METRICS[task])}"
        )
    fraction = _float(raw, "validation_fraction", 0.2)
    if not 0.05 <= fraction <= 0.5:
        raise HyperparameterError(f"hyperparameter validation_fraction={fraction} must be within [0.05, 0.5]")
    entry_point = _entry_point(raw)
    algorithm: str = parse_algorithm(raw)
    model_hyperparameters: dict[str, int | float | str | None]
    if entry_point is None:
        model_hyperparameters = dict(parse_model_hyperparameters(algorithm, task, raw))
    else:
        if raw.get("algorithm") not in (None, "", "hist_gradient_boosting"):
            raise HyperparameterError(
                f"hyperparameter entry_point={entry_point!r} (script mode) and algorithm={algorithm!r} "
                "exclude each other: the script chooses the model"
            )
        algorithm = "script"
        # Everything that is not modelops' own goes to the script, as SageMaker passes it (strings).
        model_hyperparameters = {k: _text(v) for k, v in sorted(raw.items()) if k not in KNOWN}
    judge = _bool(raw, JUDGE_HYPERPARAMETER, False)
    if judge and entry_point is not None:
        raise HyperparameterError(
            f"hyperparameter {JUDGE_HYPERPARAMETER}=true (judge mode) and entry_point={entry_point!r} "
            "(script mode) exclude each other: a judge trains nothing"
        )
    timeout = _int(raw, "script_timeout_seconds", DEFAULT_SCRIPT_TIMEOUT_SECONDS)
    if not 1 <= timeout <= MAX_SCRIPT_TIMEOUT_SECONDS:
        raise HyperparameterError(
            f"hyperparameter script_timeout_seconds={timeout} must be within [1, {MAX_SCRIPT_TIMEOUT_SECONDS}]"
        )
    params = TrainingParams(
        label_column=label,
        feature_columns=features,
        task=task,  # type: ignore[arg-type]  # checked against TASK_METRICS above
        objective_metric=metric,
        seed=_int(raw, "seed", 0),
        validation_fraction=fraction,
        categorical_columns=categorical,
        allow_class_change=_bool(raw, "allow_class_change", False),
        algorithm=algorithm,
        model_hyperparameters=model_hyperparameters,
        entry_point=entry_point,
        script_timeout_seconds=timeout,
        judge=judge,
    )
    if entry_point is not None:
        return params, []  # the script takes every other hyperparameter
    return params, sorted(set(raw) - KNOWN - MODEL_HYPERPARAMETERS)


def _entry_point(raw: Mapping[str, Any]) -> str | None:
    """Script mode's `entry_point`: a relative path to a .py file inside the code archive."""
    value = raw.get("entry_point")
    if value is None or not str(value).strip():
        return None
    text = str(value).strip()
    problem = entry_point_problem(text)
    if problem:
        raise HyperparameterError(f"hyperparameter entry_point={text!r} {problem}")
    return text


def entry_point_problem(path: str) -> str | None:
    """Why `path` is not a plain relative .py path (None when it is). The product layer's
    config.py applies the same rule to training.script.entry_point."""
    parts = path.split("/")
    if path.startswith("/") or "\\" in path or any(p in ("", ".", "..") for p in parts):
        return "must be a plain relative path inside the code folder (no leading '/', '.', '..' or '\\')"
    if not path.endswith(".py") or not all(_PLAIN.fullmatch(p) for p in parts):
        return (
            "must name a .py file with letters, digits, '_', '-' and '.' only (e.g. train.py or src/train.py)"
        )
    return None


_PLAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return value if isinstance(value, str) else json.dumps(value)


def _required_str(raw: Mapping[str, Any], name: str) -> str:
    value = raw.get(name)
    if value is None or not str(value).strip():
        raise HyperparameterError(f"hyperparameter {name} is required")
    return str(value).strip()


def _columns(raw: Mapping[str, Any], name: str, *, required: bool = True) -> tuple[str, ...]:
    """A JSON list of column names (`feature_columns` is required and non-empty; others may be absent)."""
    value = raw.get(name)
    if value is None:
        if not required:
            return ()
        raise HyperparameterError(f'hyperparameter {name} is required (a JSON list, e.g. ["a", "b"])')
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise HyperparameterError(
                f'hyperparameter {name}={value!r} is not a JSON list (e.g. ["a", "b"])'
            ) from None
    if (
        not isinstance(value, list)
        or (required and not value)
        or not all(isinstance(c, str) and c for c in value)
    ):
        kind = "a non-empty JSON list" if required else "a JSON list"
        raise HyperparameterError(f"hyperparameter {name} must be {kind} of column names")
    if len(set(value)) != len(value):
        dupes = sorted({c for c in value if value.count(c) > 1})
        raise HyperparameterError(f"hyperparameter {name} lists {dupes} more than once")
    return tuple(value)


def _number(raw: Mapping[str, Any], name: str) -> float | None:
    value = raw.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise HyperparameterError(f"hyperparameter {name}={value!r} is not a number") from None
    if not math.isfinite(number):
        raise HyperparameterError(f"hyperparameter {name}={value!r} is not a finite number")
    return number


def _float(raw: Mapping[str, Any], name: str, default: float) -> float:
    number = _number(raw, name)
    return default if number is None else number


def _int(raw: Mapping[str, Any], name: str, default: int) -> int:
    number = _number(raw, name)
    if number is None:
        return default
    if number != int(number):
        raise HyperparameterError(f"hyperparameter {name}={raw.get(name)!r} is not a whole number")
    return int(number)


def _bool(raw: Mapping[str, Any], name: str, default: bool) -> bool:
    value = raw.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"true", "1", "yes"}:
        return True
    if text in {"false", "0", "no"}:
        return False
    raise HyperparameterError(f"hyperparameter {name}={value!r} is not a boolean (true or false)")


def _optional_int(raw: Mapping[str, Any], name: str) -> int | None:
    value = raw.get(name)
    if isinstance(value, str) and value.strip().lower() in {"none", "null"}:
        return None
    number = _number(raw, name)
    if number is None:
        return None
    if number != int(number):
        raise HyperparameterError(f"hyperparameter {name}={value!r} is not a whole number")
    return int(number)
