"""The `train` program of the SageMaker container contract.

Reads input/config/hyperparameters.json and the CSV files of channel `train`, fits the model of the
`algorithm` hyperparameter (algorithms.py: HistGradientBoosting by default, random forest, linear,
XGBoost or LightGBM; a binary or multiclass classifier with its class labels kept by name, or a
regressor; behind an encoder of its categorical columns, when it has some) on a
deterministic split, evaluates it (and the champion from the
optional `champion` channel) on the same holdout, and writes model/ (model.joblib, metadata.json,
evaluation.json) plus output/data/evaluation.json. Metric lines such as `validation:auc=0.91` go to
stdout for SageMaker's MetricDefinitions. On error: one line in output/failure, exit code 1.
With the `entry_point` hyperparameter and the `code` channel (script mode, script_mode.py), the
team's script fits the model on the same training rows instead of `algorithm`.
With the `modelops_judge` hyperparameter (judge mode) nothing is fitted: the model.tar.gz of the
`candidate` channel (written by a training image of the team's own) and the champion are scored by
the same evaluator on the same split, and model/ holds evaluation.json and baseline.json only.
Every job writes model/baseline.json (baseline.py): the drift baseline of the version.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NotRequired, TypedDict

import numpy as np
from numpy.typing import NDArray

from model_server.algorithms import build_estimator
from model_server.artifact import (
    MAX_CLASSES,
    MODEL_FILES,
    LoadedModel,
    ModelMetadata,
    extract_model_archive,
    load_model,
    save_model,
    storage_format,
    write_json,
)
from model_server.baseline import BASELINE_FILE, make_baseline
from model_server.checkrows import write_check
from model_server.contract import (
    CANDIDATE_CHANNEL,
    CHAMPION_CHANNEL,
    EVALUATION_FILE,
    FOREST_FILE,
    METADATA_FILE,
    TRAIN_CHANNEL,
    TRAINING_JOB_NAME_ENV,
    ContainerPaths,
    container_paths,
)
from model_server.dataset import Table, channel_csv_files, read_table
from model_server.errors import (
    CandidateError,
    ChampionError,
    HyperparameterError,
    ModelLoadError,
    TrainingDataError,
    TrainingError,
)
from model_server.estimator import Estimator, FloatMatrix, Labels, Matrix
from model_server.forest import TOLERANCE, export_forest, verify_forest
from model_server.hyperparameters import Task, TrainingParams, parse_hyperparameters
from model_server.metrics import classification_metrics, multiclass_metrics, regression_metrics
from model_server.script_mode import train_script

log = logging.getLogger("model_server.train")
Indices = NDArray[np.intp]
# Holdout rows stored with the forest for the image build's native-predictor check (native.py).
CHECK_ROWS = 256
FAILURE_REASON_MAX = 1000  # SageMaker's FailureReason holds at most 1024 characters
_POSITIVE_WORDS = {"true", "yes", "y", "t"}
_NEGATIVE_WORDS = {"false", "no", "n", "f"}


class Evaluation(TypedDict):
    """evaluation.json, which the workflow's Evaluate step reads (modelops.evaluation)."""

    metric: str  # the objective metric; `candidate` and `champion` are its values on the holdout
    candidate: float
    champion: float | None  # None: no champion, or one that cannot be compared (champion_skipped says why)
    n_train: int
    n_validation: int
    task: Task
    metrics: dict[str, float]  # every metric of the task, the candidate's
    champion_metrics: dict[str, float] | None
    champion_skipped: NotRequired[str]


@dataclass(frozen=True)
class Champion:
    model: LoadedModel
    source: str


def main(env: Mapping[str, str] | None = None) -> int:
    """Run training under the contract; 0 on success, 1 after writing output/failure."""
    env = os.environ if env is None else env
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    paths = container_paths(env)
    try:
        train(paths, training_job=env.get(TRAINING_JOB_NAME_ENV))
    except TrainingError as exc:
        write_failure(paths, str(exc))
        return 1
    except Exception as exc:  # anything else is still a failed job with a readable reason
        traceback.print_exc(file=sys.stderr)
        write_failure(paths, f"{type(exc).__name__}: {exc}")
        return 1
    return 0


def write_failure(paths: ContainerPaths, reason: str) -> None:
    """The contract's failure file: one line, which SageMaker reports as FailureReason."""
    line = " ".join(reason.split())[:FAILURE_REASON_MAX]
    log.error("training failed: %s", line)
    paths.failure_file.parent.mkdir(parents=True, exist_ok=True)
    paths.failure_file.write_text(line + "\n", encoding="utf-8")


def train(paths: ContainerPaths, *, training_job: str | None = None) -> Evaluation:
    """Train, evaluate and write the model folder; returns evaluation.json's document. In judge
    mode (hyperparameter modelops_judge), judge the candidate channel's model instead (judge())."""
    started = time.monotonic()
    params, ignored = parse_hyperparameters(_read_hyperparameters(paths.hyperparameters_file))
    if ignored:
        log.warning("ignoring hyperparameters this image does not use: %s", ignored)
    if params.judge:
        return judge(paths, params)
    champion = load_champion(paths.channel_dir(CHAMPION_CHANNEL))
    data = read_split(paths, params, champion)
    features, train_idx, val_idx = data.features, data.train_idx, data.val_idx

    metadata = _metadata(params, data.classes, len(train_idx), len(val_idx), training_job)
    if params.entry_point is None:
        estimator = _estimator(params)
        estimator.fit(features[train_idx], data.y[train_idx])
        loaded = LoadedModel(estimator, metadata)
    else:  # script mode: the team's script fits the model on the training rows (script_mode.py)
        loaded = train_script(
            params,
            paths,
            files=data.files,
            root=data.channel_dir,
            train_rows=train_idx.tolist(),
            holdout=features[val_idx],
            metadata=metadata,
        )
        estimator = loaded.estimator
    evaluation = evaluate_on_holdout(loaded, data, champion, params, score_train=True)
    metric = params.objective_metric

    metadata = loaded.metadata
    if params.algorithm != "hist_gradient_boosting":
        skipped = (
            f"algorithm {params.algorithm}: the compiled Python forest supports hist_gradient_boosting "
            f"only; the image build compiles tree ensembles (trees.py), else the estimator answers"
        )
        log.info("%s", skipped)
        forest = None
        metadata = dataclasses.replace(metadata, compiled_skipped=skipped)
    elif params.categorical_columns:
        # forest.py and native.py split on numbers only: scikit-learn serves this model.
        skipped = (
            f"categorical columns {list(params.categorical_columns)}: no compiled or native predictor, "
            "scikit-learn answers every batch"
        )
        log.info("%s", skipped)
        forest = None
        metadata = dataclasses.replace(metadata, compiled_skipped=skipped)
    else:
        holdout = np.asarray(features[val_idx], dtype=np.float64)  # numeric only: already float64
        forest, forest_diff, why = _compiled_forest(loaded, holdout)
        if forest is not None:
            metadata = dataclasses.replace(metadata, forest_file=FOREST_FILE, forest_max_abs_diff=forest_diff)
        else:
            metadata = dataclasses.replace(metadata, compiled_skipped=why)
    # A bare XGBoost or LightGBM model is saved in its library's own format, anything else by joblib.
    if params.entry_point is not None:  # the script's file and code are in model/ already, as saved
        write_json(paths.model_dir / METADATA_FILE, metadata.to_dict())
    else:
        fmt = storage_format(estimator)
        metadata = dataclasses.replace(metadata, format=fmt, model_file=MODEL_FILES[fmt])
        save_model(paths.model_dir, estimator, metadata, forest)
    # Holdout rows with the saved model's answers, for the image build's compiled predictors (trees.py).
    saved = load_model(paths.model_dir, install_requirements=True)
    write_check(paths.model_dir, saved, features[val_idx])
    write_baseline(paths, saved, data)
    write_evaluation(paths, evaluation)
    log.info(
        "trained on %d rows, validated on %d: %s=%.4f (champion %s) in %.2fs",
        len(train_idx),
        len(val_idx),
        metric,
        evaluation["candidate"],
        "none" if evaluation["champion"] is None else f"{evaluation['champion']:.4f}",
        time.monotonic() - started,
    )
    return evaluation


def judge(paths: ContainerPaths, params: TrainingParams) -> Evaluation:
    """Judge mode: fit nothing; score the candidate channel's model (a team image's model.tar.gz)
    and the champion on the same split and with the same scoring as a model trained here, and
    write model/evaluation.json and model/baseline.json (the judge job's model.tar.gz holds
    nothing else) and the evaluation's copy in output/data/."""
    started = time.monotonic()
    candidate = load_candidate(paths.channel_dir(CANDIDATE_CHANNEL), params)
    champion = load_champion(paths.channel_dir(CHAMPION_CHANNEL))
    data = read_split(paths, params, champion)
    evaluation = evaluate_on_holdout(candidate, data, champion, params, score_train=False)
    write_baseline(paths, candidate, data)
    write_evaluation(paths, evaluation)
    log.info(
        "judged the candidate on %d holdout rows: %s=%.4f (champion %s) in %.2fs",
        len(data.val_idx),
        params.objective_metric,
        evaluation["candidate"],
        "none" if evaluation["champion"] is None else f"{evaluation['champion']:.4f}",
        time.monotonic() - started,
    )
    return evaluation


@dataclass(frozen=True)
class Split:
    """The train channel read and split as every job of this image does (training or judging)."""

    table: Table
    features: Matrix  # the model config's feature columns, every row
    y: Labels  # class indices in `classes` order (classification), else the float labels
    classes: tuple[str, ...] | None
    train_idx: Indices
    val_idx: Indices
    files: list[Path]
    channel_dir: Path
    class_note: str | None  # why the champion is not compared (a class change that is allowed)


def read_split(paths: ContainerPaths, params: TrainingParams, champion: Champion | None) -> Split:
    """Read channel `train` (with the champion's extra columns) and make the seeded split."""
    columns = list(params.feature_columns)
    # Read as text: the candidate's categorical columns, and the champion's that the candidate
    # does not use (a column both use is read as the candidate declares it; see _score_champion).
    text_columns = set(params.categorical_columns)
    if champion:
        meta = champion.model.metadata
        columns += [c for c in meta.feature_columns if c not in columns]
        text_columns |= {c for c in meta.categorical_columns if c not in params.feature_columns}

    channel_dir = paths.channel_dir(TRAIN_CHANNEL)
    files = channel_csv_files(channel_dir, TRAIN_CHANNEL)
    try:
        table = read_table(
            files,
            root=channel_dir,
            label_column=params.label_column,
            columns=columns,
            categorical=text_columns,
        )
    except TrainingDataError as exc:
        if champion and "feature columns" in str(exc):
            # The champion's columns may be gone (a schema change): retry without them.
            log.warning("champion's feature columns unavailable, retrying without them: %s", exc)
            columns = list(params.feature_columns)
            table = read_table(
                files,
                root=channel_dir,
                label_column=params.label_column,
                columns=columns,
                categorical=params.categorical_columns,
            )
        else:
            raise
    source = ", ".join(table.files)
    y, classes = encode_labels(table.labels, params, source=source)
    features: Matrix = table.values[:, : len(params.feature_columns)]
    if not params.categorical_columns and features.dtype != np.float64:
        features = features.astype(np.float64)  # only the champion's columns were text
    train_idx, val_idx = split_indices(y, params, source=source, classes=classes or ())
    class_note = check_class_change(champion, classes, params) if champion else None
    return Split(table, features, y, classes, train_idx, val_idx, files, channel_dir, class_note)


def evaluate_on_holdout(
    model: LoadedModel,
    data: Split,
    champion: Champion | None,
    params: TrainingParams,
    *,
    score_train: bool,
) -> Evaluation:
    """The one evaluator: `model` and the champion scored on the split's holdout rows (metric
    lines to stdout for MetricDefinitions); evaluation.json's document. `score_train` adds the
    model's score on the training rows (a line only: a model trained here)."""
    y = _model_labels(model, data, params)
    val_idx = data.val_idx
    candidate = _score(model, data.features[val_idx], y[val_idx])
    champion_score, champion_note = None, data.class_note
    if champion and not data.class_note:
        champion_score, champion_note = _score_champion(
            champion,
            data.table.columns,
            data.table.categorical,
            data.table.values[val_idx],
            [data.table.labels[i] for i in val_idx],
            y[val_idx],
            params,
        )

    metric = params.objective_metric
    for name, value in candidate.items():
        print(f"validation:{name}={value:.6f}", flush=True)
    if score_train:
        train_scores = _score(model, data.features[data.train_idx], y[data.train_idx])
        print(f"train:{metric}={train_scores[metric]:.6f}", flush=True)
    if champion_score is not None:
        print(f"champion:{metric}={champion_score[metric]:.6f}", flush=True)

    evaluation: Evaluation = {
        "metric": metric,
        "candidate": candidate[metric],
        "champion": champion_score[metric] if champion_score else None,
        "n_train": len(data.train_idx),
        "n_validation": len(val_idx),
        "task": params.task,
        "metrics": candidate,
        "champion_metrics": champion_score,
    }
    if champion_note:
        evaluation["champion_skipped"] = champion_note
    return evaluation


def _model_labels(model: LoadedModel, data: Split, params: TrainingParams) -> Labels:
    """The labels as `model` numbers its classes: its own order, which a script's (or a team
    image's) model may have chosen; the split's own labels for a model trained here."""
    classes = model.metadata.classes
    if classes is None or classes == data.classes:
        return data.y
    unknown = sorted(set(data.table.labels) - set(classes))
    if unknown:
        raise TrainingDataError(
            f"label column {params.label_column!r} holds {unknown}, which the model does not answer "
            f"(its classes are {list(classes)})"
        )
    index = {label: i for i, label in enumerate(classes)}
    return np.asarray([index[v] for v in data.table.labels], dtype=np.int64)


def write_baseline(paths: ContainerPaths, model: LoadedModel, data: Split) -> None:
    """model/baseline.json (baseline.py): the training rows' feature profiles and the model's
    prediction distribution on the holdout, which the server's live statistics and the drift
    monitor compare live traffic with."""
    meta = model.metadata
    holdout = data.features[data.val_idx]
    doc = make_baseline(
        features=data.features[data.train_idx],
        feature_columns=meta.feature_columns,
        categorical_columns=meta.categorical_columns,
        task=meta.task,
        predictions=model.predict(holdout),
        classes=meta.classes,
        n_holdout=len(data.val_idx),
    )
    write_json(paths.model_dir / BASELINE_FILE, doc)
    log.info("baseline: %d features from %d training rows", len(doc["features"]), doc["n_rows"])


def write_evaluation(paths: ContainerPaths, evaluation: Evaluation) -> None:
    """model/evaluation.json (what the workflow's Evaluate step reads) and its copy in output/data/."""
    write_json(paths.model_dir / EVALUATION_FILE, evaluation)
    paths.output_data_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(paths.model_dir / EVALUATION_FILE, paths.output_data_dir / EVALUATION_FILE)


def _read_hyperparameters(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HyperparameterError(f"{path.name} not found at {path}") from None
    except (OSError, ValueError) as exc:
        raise HyperparameterError(f"{path.name} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise HyperparameterError(f"{path.name} must hold a JSON object")
    return doc


def encode_labels(
    labels: Sequence[str], params: TrainingParams, *, source: str
) -> tuple[Labels, tuple[str, ...] | None]:
    """Class indices and the class labels (binary: negative, positive) for classification; float
    labels and None for regression."""
    if params.task == "regression":
        try:
            return np.asarray([float(v) for v in labels], dtype=np.float64), None
        except ValueError:
            bad = next(v for v in labels if not _is_number(v))
            raise TrainingDataError(
                f"label column {params.label_column!r} in {source} has a non-numeric value {bad!r}; "
                "task regression needs numbers"
            ) from None
    distinct = sorted(set(labels))
    shown = f"{distinct[:5]}{'...' if len(distinct) > 5 else ''}"
    if params.task == "binary_classification" and len(distinct) != 2:
        raise TrainingDataError(
            f"label column {params.label_column!r} in {source} has {len(distinct)} distinct values "
            f"{shown}; binary_classification needs exactly 2"
        )
    if not 2 <= len(distinct) <= MAX_CLASSES:
        raise TrainingDataError(
            f"label column {params.label_column!r} in {source} has {len(distinct)} distinct values "
            f"{shown}; multiclass_classification needs 2 to {MAX_CLASSES}"
        )
    classes = order_classes(distinct)
    index = {label: i for i, label in enumerate(classes)}
    return np.asarray([index[v] for v in labels], dtype=np.int64), classes


def order_classes(labels: Sequence[str]) -> tuple[str, ...]:
    """The classes in the model's output order: numbers by value (0 < 1 < 2), else alphabetical;
    for two labels, a true/yes-like label is the positive (second) one."""
    if all(_is_number(v) for v in labels):
        return tuple(sorted(labels, key=float))
    if len(labels) == 2:
        a, b = sorted(labels)
        if a.lower() in _POSITIVE_WORDS and b.lower() in _NEGATIVE_WORDS:
            return (b, a)
    return tuple(sorted(labels))


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def check_class_change(
    champion: Champion, classes: tuple[str, ...] | None, params: TrainingParams
) -> str | None:
    """None when the candidate's classes are the champion's; else a note (allow_class_change) or
    a TrainingDataError: a champion of other classes cannot be judged on this holdout, and
    replacing it silently would change what the model answers."""
    theirs = champion.model.metadata.classes
    if classes is None or theirs is None or champion.model.metadata.task != params.task:
        return None
    if set(classes) == set(theirs):
        return None
    added, removed = sorted(set(classes) - set(theirs)), sorted(set(theirs) - set(classes))
    change = f"class labels changed: the champion answers {list(theirs)}, the data has {list(classes)}"
    change += f" (new {added}, gone {removed})"
    if params.allow_class_change:
        return f"{change}; allow_class_change is set, so the champion is not compared"
    raise TrainingDataError(
        f"label column {params.label_column!r}: {change}. If the change is intended, set "
        "training.hyperparameters.allow_class_change: true in the model config; otherwise fix the data"
    )


def split_indices(
    y: Labels, params: TrainingParams, *, source: str, classes: Sequence[str] = ()
) -> tuple[Indices, Indices]:
    """Deterministic (seeded) train/validation split; stratified by label for classification."""
    rng = np.random.default_rng(params.seed)
    if params.task == "regression":
        if len(y) < 10:
            raise TrainingDataError(f"{source}: {len(y)} data rows; training needs at least 10")
        order = rng.permutation(len(y))
        n_val = max(2, round(len(y) * params.validation_fraction))
        return np.sort(order[n_val:]), np.sort(order[:n_val])
    train_parts, val_parts = [], []
    for cls in range(int(y.max()) + 1):
        members = np.flatnonzero(y == cls)
        if len(members) < 4:
            raise TrainingDataError(
                f"{source}: label column {params.label_column!r} has {len(members)} rows of class "
                f"{classes[cls] if classes else cls!r}; training needs at least 4 of each"
            )
        members = rng.permutation(members)
        n_val = max(1, round(len(members) * params.validation_fraction))
        val_parts.append(members[:n_val])
        train_parts.append(members[n_val:])
    return np.sort(np.concatenate(train_parts)), np.sort(np.concatenate(val_parts))


def load_champion(channel_dir: Path) -> Champion | None:
    """The model in production, from the optional champion channel (a model.tar.gz); None if absent."""
    if not channel_dir.is_dir() or not any(p.is_file() for p in channel_dir.rglob("*")):
        return None
    model, source = _load_channel_model(channel_dir, CHAMPION_CHANNEL, ChampionError)
    return Champion(model, source=source)


def load_candidate(channel_dir: Path, params: TrainingParams) -> LoadedModel:
    """Judge mode: the candidate channel's model.tar.gz, loaded and checked against the model
    config (task, feature columns in order, categorical columns); CandidateError says what is wrong."""
    model, source = _load_channel_model(channel_dir, CANDIDATE_CHANNEL, CandidateError)
    meta = model.metadata
    problems = []
    if meta.task != params.task:
        problems.append(f"task {meta.task}, the model config's is {params.task}")
    if tuple(meta.feature_columns) != tuple(params.feature_columns):
        problems.append(
            f"feature_columns {list(meta.feature_columns)}, the model config's are {list(params.feature_columns)}"
        )
    if set(meta.categorical_columns) != set(params.categorical_columns):
        problems.append(
            f"categorical_columns {list(meta.categorical_columns)}, the model config's are "
            f"{list(params.categorical_columns)}"
        )
    if problems:
        raise CandidateError(f"candidate model {source} has " + "; ".join(problems))
    return model


def _load_channel_model(
    channel_dir: Path, channel: str, error: type[TrainingError]
) -> tuple[LoadedModel, str]:
    """The model of a channel (a model.tar.gz, or an extracted model folder) and where it came
    from; `error` names the channel and the problem."""
    archives = sorted(p for p in channel_dir.rglob("*.tar.gz") if p.is_file()) if channel_dir.is_dir() else []
    try:
        if (channel_dir / METADATA_FILE).is_file():
            return load_model(channel_dir, install_requirements=True), str(channel_dir)
        if not archives:
            raise error(f"channel {channel!r} holds no model.tar.gz in {channel_dir}")
        with tempfile.TemporaryDirectory(prefix=f"{channel}-") as tmp:
            # load_model reads everything into memory, so the folder can go afterwards
            try:
                folder = extract_model_archive(archives[0], Path(tmp), error=error)
            except TrainingError as exc:
                raise error(f"channel {channel!r}: {exc}") from None
            return load_model(folder, install_requirements=True), archives[0].name
    except ModelLoadError as exc:
        raise error(f"{channel} model is unusable: {exc}") from None


def _score_champion(
    champion: Champion,
    columns: Sequence[str],
    text_columns: frozenset[str],
    values: Matrix,
    raw_labels: Sequence[str],
    y: Labels,
    params: TrainingParams,
) -> tuple[dict[str, float] | None, str | None]:
    """The champion's metrics on the candidate's holdout, or (None, why it cannot be compared)."""
    meta = champion.model.metadata
    if meta.task != params.task:
        return None, f"champion task {meta.task} differs from {params.task}"
    missing = [c for c in meta.feature_columns if c not in columns]
    if missing:
        return None, f"champion feature columns {missing} are not in the training data"
    numeric_read_for_text = [c for c in meta.categorical_columns if c not in text_columns]
    if numeric_read_for_text:
        return None, f"champion categorical columns {numeric_read_for_text} are numeric for the candidate"
    rows: Matrix = values[:, [list(columns).index(c) for c in meta.feature_columns]]
    if not meta.categorical_columns and rows.dtype != np.float64:
        try:  # a numeric-only champion whose column the candidate reads as text
            rows = rows.astype(np.float64)
        except ValueError as exc:
            return None, f"champion's numeric features hold text on the holdout: {exc}"
    if meta.classes is not None:
        unknown = sorted(set(raw_labels) - set(meta.classes))
        if unknown:
            return (
                None,
                f"holdout labels {unknown} are unknown to the champion (classes {list(meta.classes)})",
            )
        # The champion's own class order: the same labels may sit at other indices in the candidate.
        index = {label: i for i, label in enumerate(meta.classes)}
        y = np.asarray([index[v] for v in raw_labels], dtype=np.int64)
    try:
        return _score(champion.model, rows, y), None
    except ValueError as exc:
        return None, f"champion cannot predict on the holdout: {exc}"


def _compiled_forest(
    model: LoadedModel, holdout: FloatMatrix
) -> tuple[dict[str, Any] | None, float | None, str]:
    """The compiled predictor's document, shipped only when it reproduces the model on the holdout;
    without one, why not."""
    doc, why = export_forest(model.estimator)
    if doc is None:
        log.warning("no compiled predictor (serve will use scikit-learn for every batch): %s", why)
        return None, None, why
    diff = verify_forest(doc, lambda rows: model.predict(np.asarray(rows)).tolist(), holdout)
    if diff > TOLERANCE:
        log.warning("compiled predictor differs from the model by %.3g on the holdout; not shipped", diff)
        return None, None, f"the compiled predictor differs from the model by {diff:.3g} on the holdout"
    # The rows a build step checks a native predictor against (native.py), with the model's answers.
    sample = holdout[:CHECK_ROWS]
    doc["check"] = {
        "rows": [[None if math.isnan(v) else float(v) for v in row] for row in sample.tolist()],
        "expected": [float(v) for v in model.predict(sample)],
    }
    log.info(
        "compiled predictor: %d trees, max |difference| %.3g on %d holdout rows",
        len(doc["trees"]),
        diff,
        len(holdout),
    )
    return doc, diff, ""


def _score(model: LoadedModel, rows: Matrix, y: Labels) -> dict[str, float]:
    predicted = model.predict(rows)
    if model.metadata.task == "binary_classification":
        return classification_metrics(y, predicted)
    if model.metadata.task == "multiclass_classification":
        return multiclass_metrics(y, predicted)
    return regression_metrics(y, predicted)


def _estimator(params: TrainingParams) -> Estimator:
    """The algorithm's estimator (algorithms.py), behind the categorical encoder when there are any."""
    categorical = [params.feature_columns.index(c) for c in params.categorical_columns]
    # The encoder's columns come first in its output (then the rest, in order): categories 0..k-1.
    estimator = build_estimator(
        params.algorithm,
        params.task,
        params.model_params(),
        seed=params.seed,
        categorical_features=len(categorical),
    )
    return categorical_pipeline(estimator, categorical) if categorical else estimator


# HistGradientBoosting's limit on a categorical feature's codes (max_bins); rarer categories than
# the 254 most frequent are grouped into one "infrequent" code by the encoder.
MAX_CATEGORY_CODES = 255


def categorical_pipeline(estimator: Estimator, categorical: Sequence[int]) -> Estimator:
    """`estimator` behind an OrdinalEncoder of the `categorical` positions (text in, codes out).

    Missing text (NaN) stays missing and an unseen category is encoded as missing too, so the
    model answers it the way it answers a missing value; the other columns pass through as numbers.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    encoder = OrdinalEncoder(
        handle_unknown="use_encoded_value",
        unknown_value=np.nan,
        encoded_missing_value=np.nan,
        max_categories=MAX_CATEGORY_CODES,
        dtype=np.float64,
    )
    columns = ColumnTransformer(
        [("categorical", encoder, list(categorical))], remainder="passthrough", sparse_threshold=0
    )
    pipeline: Estimator = Pipeline([("encode", columns), ("model", estimator)])
    return pipeline


def _metadata(
    params: TrainingParams,
    classes: tuple[str, ...] | None,
    n_train: int,
    n_val: int,
    training_job: str | None,
) -> ModelMetadata:
    import sklearn

    return ModelMetadata(
        task=params.task,
        label_column=params.label_column,
        feature_columns=params.feature_columns,
        categorical_columns=params.categorical_columns,
        classes=classes,
        objective_metric=params.objective_metric,
        n_train=n_train,
        n_validation=n_val,
        sklearn_version=sklearn.__version__,
        training_job=training_job,
        hyperparameters={
            "seed": params.seed,
            "validation_fraction": params.validation_fraction,
            **params.model_params(),
            **({"entry_point": params.entry_point} if params.entry_point else {}),
        },
        algorithm=params.algorithm,
    )
