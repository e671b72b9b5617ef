"""Script mode: the built-in `train` as the harness of a team's own training script.

With the hyperparameter `entry_point` and the channel `code` (a .tar.gz of the team's folder),
`train` reads and splits the data exactly as for a built-in algorithm, then runs
`python <entry_point> --name value ...` in the extracted folder with SageMaker's script-mode
environment (SM_MODEL_DIR, SM_CHANNEL_TRAIN holding the training rows only, SM_HPS, ...), loads
the one model file it saved (README, "The model-artifact contract"), checks it on the holdout and
hands it back; train.py then scores it and the champion with the same evaluator as any model.
The code goes into model/code/ so a pickle that needs the team's own classes can be loaded
(artifact.load_estimator puts that folder on sys.path while unpickling).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, cast

import numpy as np

from model_server.artifact import (
    SCRIPT_MODEL_FILES,
    LoadedModel,
    ModelMetadata,
    extract_model_archive,
    load_estimator,
)
from model_server.code_requirements import RequirementsError
from model_server.code_requirements import ensure as ensure_requirements
from model_server.contract import CODE_CHANNEL, CODE_DIR, TRAIN_CHANNEL, ContainerPaths
from model_server.errors import ModelLoadError, TrainingError
from model_server.estimator import Classifier, Matrix
from model_server.hyperparameters import TrainingParams

log = logging.getLogger("model_server.script_mode")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
STOP_GRACE_SECONDS = 10.0  # after SIGTERM on a timeout, before SIGKILL


def train_script(
    params: TrainingParams,
    paths: ContainerPaths,
    *,
    files: Sequence[Path],
    root: Path,
    train_rows: Sequence[int],
    holdout: Matrix,
    metadata: ModelMetadata,
) -> LoadedModel:
    """Run the team's script on the training rows and return the model it saved, checked on the
    holdout, with the model's class order in its metadata. The model file and the code are copied
    into paths.model_dir; TrainingError names what went wrong in one line."""
    assert params.entry_point is not None
    entry_point = params.entry_point
    archive = code_archive(paths.channel_dir(CODE_CHANNEL), entry_point)
    with tempfile.TemporaryDirectory(prefix="script-") as tmp:
        work = Path(tmp)
        code = extract_model_archive(archive, work / "code", what="code", error=TrainingError)
        if not (code / entry_point).is_file():
            found = sorted(str(p.relative_to(code)) for p in code.rglob("*") if p.is_file())
            raise TrainingError(
                f"entry_point {entry_point!r} is not in the code archive {archive.name} "
                f"(it holds {found[:10]}{'...' if len(found) > 10 else ''})"
            )
        channel = work / "channels" / TRAIN_CHANNEL
        n_rows = write_training_rows(files, root, set(train_rows), channel)
        log.info("script mode: %s gets %d training rows in %s", entry_point, n_rows, channel)
        model_out = work / "model"
        model_out.mkdir()
        env = script_environment(
            params,
            code,
            classes=metadata.classes,
            channel=channel,
            model_dir=model_out,
            output_dir=paths.output_data_dir,
        )
        try:  # SageMaker's training toolkit installs the script folder's requirements.txt too
            packages = ensure_requirements(code, install_missing=True)
        except RequirementsError as exc:
            raise TrainingError(str(exc)) from None
        if packages is not None:
            env["PYTHONPATH"] = os.pathsep.join(
                [str(code), str(packages), *env["PYTHONPATH"].split(os.pathsep)[1:]]
            )
        run_script(params, code, env)
        model_file = saved_model_file(model_out, entry_point)
        if SCRIPT_MODEL_FILES[model_file] == "onnx" and metadata.categorical_columns:
            raise TrainingError(
                f"{entry_point} saved model.onnx, but the model config declares the categorical columns "
                f"{list(metadata.categorical_columns)}: an ONNX model takes float columns only (no text "
                "categories); save a joblib Pipeline (model.joblib) or declare no categorical columns"
            )
        paths.model_dir.mkdir(parents=True, exist_ok=True)
        shutil.copytree(code, paths.model_dir / CODE_DIR, dirs_exist_ok=True)
        shutil.copyfile(model_out / model_file, paths.model_dir / model_file)
    metadata = dataclasses.replace(metadata, model_file=model_file, format=SCRIPT_MODEL_FILES[model_file])
    wrote = f"the {model_file} written by {entry_point}"
    try:
        estimator = load_estimator(paths.model_dir, metadata, install_requirements=True)
    except ModelLoadError as exc:
        raise TrainingError(
            f"{wrote} cannot be used as a model of the {len(metadata.feature_columns)} feature columns "
            f"{list(metadata.feature_columns)}: {exc}"
        ) from None
    if metadata.classes is not None:
        metadata = dataclasses.replace(metadata, classes=model_classes(estimator, metadata, wrote))
    check_predictions(LoadedModel(estimator, metadata), holdout, wrote)
    return LoadedModel(estimator, metadata)


def code_archive(channel_dir: Path, entry_point: str) -> Path:
    """The one archive SageMaker downloaded into the `code` channel."""
    if not channel_dir.is_dir():
        raise TrainingError(
            f"hyperparameter entry_point={entry_point!r} needs the channel {CODE_CHANNEL!r} "
            f"(the script's .tar.gz); there is no folder {channel_dir}"
        )
    found = sorted(p for p in channel_dir.rglob("*") if p.is_file())
    archives = [p for p in found if p.name.endswith(ARCHIVE_SUFFIXES)]
    if len(archives) != 1:
        raise TrainingError(
            f"channel {CODE_CHANNEL!r} must hold exactly one .tar.gz of the script's folder, "
            f"found {[str(p.relative_to(channel_dir)) for p in found][:10]}"
        )
    return archives[0]


def write_training_rows(files: Sequence[Path], root: Path, keep: set[int], dest: Path) -> int:
    """Copy the rows whose index (in dataset.read_table's order: file then line, blank lines
    skipped) is in `keep` into `dest`, one CSV per input file with its header, cells as written."""
    index = written = 0
    for path in files:
        target = dest / (path.relative_to(root) if path.is_relative_to(root) else Path(path.name))
        target.parent.mkdir(parents=True, exist_ok=True)
        with (
            path.open("r", encoding="utf-8-sig", newline="") as source,
            target.open("w", encoding="utf-8", newline="") as out,
        ):
            reader, writer = csv.reader(source), csv.writer(out, lineterminator="\n")
            writer.writerow(next(reader))  # the header: read_table has checked it already
            for row in reader:
                if not row or all(not cell.strip() for cell in row):
                    continue
                if index in keep:
                    writer.writerow(row)
                    written += 1
                index += 1
    return written


def script_environment(
    params: TrainingParams,
    code: Path,
    *,
    classes: Sequence[str] | None,
    channel: Path,
    model_dir: Path,
    output_dir: Path,
) -> dict[str, str]:
    """SageMaker's script-mode environment (as the sagemaker-training toolkit sets it), plus the
    dataset's description under MODELOPS_*."""
    output_dir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SAGEMAKER_"))}
    hps = {k: str(v) for k, v in params.model_hyperparameters.items()}
    env.update({f"SM_HP_{k.upper()}": v for k, v in hps.items()})
    env.update(
        {
            "SM_MODEL_DIR": str(model_dir),
            "SM_CHANNEL_TRAIN": str(channel),
            "SM_CHANNELS": json.dumps([TRAIN_CHANNEL]),
            "SM_HPS": json.dumps(hps),
            "SM_OUTPUT_DATA_DIR": str(output_dir),
            "SM_NUM_CPUS": str(os.cpu_count() or 1),
            "SM_USER_ENTRY_POINT": str(params.entry_point),
            "PYTHONPATH": os.pathsep.join([str(code), *filter(None, [os.environ.get("PYTHONPATH")])]),
            "PYTHONUNBUFFERED": "1",
            "MODELOPS_LABEL_COLUMN": params.label_column,
            "MODELOPS_FEATURE_COLUMNS": json.dumps(list(params.feature_columns)),
            "MODELOPS_CATEGORICAL_COLUMNS": json.dumps(list(params.categorical_columns)),
            "MODELOPS_TASK": params.task,
            # Classification: the labels in modelops' order (a native XGBoost/LightGBM model's 0..k-1).
            "MODELOPS_CLASSES": json.dumps(list(classes or [])),
            "MODELOPS_SEED": str(params.seed),
        }
    )
    return env


def run_script(params: TrainingParams, code: Path, env: dict[str, str]) -> None:
    """`python <entry_point> --name value ...` in `code`, its output streamed to the job's log,
    bounded by script_timeout_seconds; TrainingError when it fails or times out."""
    entry_point = str(params.entry_point)
    args = [sys.executable, entry_point]
    for name, value in params.model_hyperparameters.items():
        args += [f"--{name}", str(value)]
    log.info("script mode: running %s", " ".join(args[1:]))
    process = subprocess.Popen(
        args,
        cwd=code,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: a timeout stops its children too
    )
    last_error: list[str] = []
    pumps = [
        threading.Thread(target=_pump, args=(process.stdout, sys.stdout, None), daemon=True),
        threading.Thread(target=_pump, args=(process.stderr, sys.stderr, last_error), daemon=True),
    ]
    for pump in pumps:
        pump.start()
    timeout = params.script_timeout_seconds
    try:
        code_ = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop(process)
        raise TrainingError(
            f"{entry_point} did not finish within script_timeout_seconds={timeout} and was stopped"
        ) from None
    finally:
        for pump in pumps:
            pump.join(timeout=STOP_GRACE_SECONDS)
    if code_ != 0:
        how = f"was killed by signal {-code_}" if code_ < 0 else f"exited with code {code_}"
        said = f": {last_error[0]}" if last_error else " (no output on stderr)"
        raise TrainingError(f"{entry_point} {how}{said}")


def _pump(stream: IO[bytes] | None, sink: IO[str], last: list[str] | None) -> None:
    """Copy the script's lines to the job's log; keep the last non-empty one in `last`."""
    if stream is None:
        return
    with stream:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", errors="replace")
            sink.write(line)
            sink.flush()
            if last is not None and line.strip():
                last[:] = [line.strip()]


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the script's process group, SIGKILL it after the grace period."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=STOP_GRACE_SECONDS)
            return
        except subprocess.TimeoutExpired:
            continue


def saved_model_file(model_dir: Path, entry_point: str) -> str:
    """The one model file the script saved in SM_MODEL_DIR (its name says its format)."""
    found = sorted(str(p.relative_to(model_dir)) for p in model_dir.rglob("*") if p.is_file())
    models = [name for name in found if name in SCRIPT_MODEL_FILES]
    if len(models) == 1:
        others = [name for name in found if name not in models]
        if others:
            log.warning("script mode: ignoring other files in SM_MODEL_DIR: %s", others[:10])
        return models[0]
    accepted = list(SCRIPT_MODEL_FILES)
    if not found:
        raise TrainingError(f"{entry_point} saved no model file in SM_MODEL_DIR; expected one of {accepted}")
    if not models:
        raise TrainingError(
            f"{entry_point} saved {found[:10]} in SM_MODEL_DIR, no model file of a supported format; "
            f"expected one of {accepted}"
        )
    raise TrainingError(f"{entry_point} saved {models} in SM_MODEL_DIR; expected exactly one model file")


def model_classes(estimator: Any, metadata: ModelMetadata, wrote: str) -> tuple[str, ...]:
    """The model's class order, as the data's labels: a scikit-learn model's `classes_` or an ONNX
    classifier's labels (onnx_model.py: its ZipMap's keys or its graph's class list; a label read as
    a number matches the data's label of that value); otherwise modelops' order (metadata.classes),
    which a native XGBoost/LightGBM model (0..k-1) or an ONNX graph naming no labels must follow."""
    data = metadata.classes or ()
    own = getattr(estimator, "classes_", None) if metadata.format in ("sklearn", "onnx") else None
    if own is None:
        return tuple(data)
    labels = tuple(_label(value, data) for value in np.asarray(own).tolist())
    if sorted(labels) != sorted(data):
        raise TrainingError(
            f"{wrote} has classes {[str(v) for v in np.asarray(own).tolist()]}, the data's labels are "
            f"{list(data)}: train on the label column as it is"
        )
    return labels


def _label(value: Any, data: Sequence[str]) -> str:
    text = str(value)
    if text in data or isinstance(value, str):
        return text
    try:
        number = float(value)
    except (TypeError, ValueError):
        return text
    same = [label for label in data if _number(label) == number]
    return same[0] if len(same) == 1 else text


def _number(label: str) -> float | None:
    try:
        return float(label)
    except ValueError:
        return None


def check_predictions(model: LoadedModel, holdout: Matrix, wrote: str) -> None:
    """The model answers the holdout with one value (regression) or one probability per class."""
    meta = model.metadata
    try:
        if meta.classes is not None:
            answer = np.asarray(cast(Classifier, model.estimator).predict_proba(holdout))
            expected: tuple[int, ...] = (len(holdout), len(meta.classes))
        else:
            answer = np.asarray(model.predict(holdout))
            expected = (len(holdout),)
    except Exception as exc:  # whatever the team's model raises
        raise TrainingError(
            f"{wrote} cannot predict on the holdout ({len(meta.feature_columns)} features "
            f"{list(meta.feature_columns)}): {type(exc).__name__}: {' '.join(str(exc).split())}"
        ) from None
    if answer.shape != expected:
        what = "probabilities for" if meta.classes is not None else "values for"
        raise TrainingError(
            f"{wrote} answers the holdout with shape {answer.shape}, expected {what} {expected}"
            + (f" (classes {list(meta.classes)})" if meta.classes is not None else "")
        )
