"""The model artifact: the model file + metadata.json (+ evaluation.json, + forest.json when the model
compiles, see forest.py) in the model folder, shipped by SageMaker as model.tar.gz. One module
writes and reads it, so train and serve agree.

The model file's `format` (metadata.json): `sklearn` (model.joblib, any scikit-learn estimator or
Pipeline; every artifact from before formats existed), `xgboost` (model.json, XGBoost's own
format), `lightgbm` (model.txt, LightGBM's) or `onnx` (model.onnx, a graph of float inputs only,
read by onnxruntime: onnx_model.py). A bare XGBoost/LightGBM model is saved in its library's
format; one inside a Pipeline (categorical encoder in front) stays joblib. XGBoost, LightGBM and
onnxruntime are imported only to read or write their format."""

from __future__ import annotations

import json
import sys
import tarfile
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

from model_server.code_requirements import RequirementsError
from model_server.code_requirements import ensure as ensure_requirements
from model_server.contract import CODE_DIR, METADATA_FILE, MODEL_FILE
from model_server.errors import ChampionError, ModelLoadError
from model_server.estimator import ClassProbabilities, Estimator, Labels, Matrix, Scores, scores

FORMAT_VERSION = 1
TASKS = ("binary_classification", "multiclass_classification", "regression")
# A classifier's labels are answered back by name; more classes than this is not a classifier we
# can check on a holdout (nor a reasonable `probabilities` answer per row).
MAX_CLASSES = 100
# The model file's format and its file name in the model folder.
MODEL_FILES = {"sklearn": MODEL_FILE, "xgboost": "model.json", "lightgbm": "model.txt", "onnx": "model.onnx"}
# The files a training script may save (script_mode.py), by format: XGBoost also reads its binary
# UBJSON, by the file's extension.
SCRIPT_MODEL_FILES = {
    MODEL_FILE: "sklearn",
    "model.json": "xgboost",
    "model.ubj": "xgboost",
    "model.txt": "lightgbm",
    "model.onnx": "onnx",
}


@dataclass(frozen=True)
class ModelMetadata:
    task: str
    label_column: str
    feature_columns: tuple[str, ...]
    # Classification: the class labels as they appear in the CSV, in the order of the model's
    # outputs (binary: negative, positive); None for regression.
    classes: tuple[str, ...] | None
    objective_metric: str
    n_train: int
    n_validation: int
    sklearn_version: str
    training_job: str | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    model_file: str = MODEL_FILE
    format_version: int = FORMAT_VERSION
    # The compiled predictor's document (forest.py) and its largest gap to the estimator on the holdout.
    forest_file: str | None = None
    forest_max_abs_diff: float | None = None
    # Feature columns holding text categories: the model is a Pipeline that encodes them, fed text
    # for them (serve takes strings there). Such a model has no compiled predictor (forest.py and
    # native.py split on numbers only); `compiled_skipped` says why, and scikit-learn serves it.
    categorical_columns: tuple[str, ...] = ()
    compiled_skipped: str | None = None
    # How model_file is stored (MODEL_FILES) and the algorithm that trained it (algorithms.py);
    # artifacts from before both fields existed are joblib-stored HistGradientBoosting models.
    format: str = "sklearn"
    algorithm: str = "hist_gradient_boosting"

    @property
    def training_rows(self) -> int:
        return self.n_train + self.n_validation

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["feature_columns"] = list(self.feature_columns)
        doc["categorical_columns"] = list(self.categorical_columns)
        doc["classes"] = list(self.classes) if self.classes else None
        doc["training_rows"] = self.training_rows
        return doc

    @classmethod
    def from_dict(cls, doc: Any, *, source: str) -> ModelMetadata:
        """Parse metadata.json; ModelLoadError names the bad field."""
        if not isinstance(doc, dict):
            raise ModelLoadError(f"{source}: expected a JSON object")
        try:
            features = tuple(str(c) for c in doc["feature_columns"])
            classes = doc.get("classes")
            meta = cls(
                task=str(doc["task"]),
                label_column=str(doc["label_column"]),
                feature_columns=features,
                classes=tuple(str(c) for c in classes) if classes else None,
                objective_metric=str(doc["objective_metric"]),
                n_train=int(doc.get("n_train", 0)),
                n_validation=int(doc.get("n_validation", 0)),
                sklearn_version=str(doc.get("sklearn_version", "")),
                training_job=doc.get("training_job"),
                hyperparameters=dict(doc.get("hyperparameters") or {}),
                model_file=str(doc.get("model_file", MODEL_FILE)),
                format_version=int(doc.get("format_version", FORMAT_VERSION)),
                forest_file=doc.get("forest_file"),
                forest_max_abs_diff=doc.get("forest_max_abs_diff"),
                categorical_columns=tuple(str(c) for c in doc.get("categorical_columns") or ()),
                compiled_skipped=doc.get("compiled_skipped"),
                format=str(doc.get("format") or "sklearn"),
                algorithm=str(doc.get("algorithm") or "hist_gradient_boosting"),
            )
        except KeyError as exc:
            raise ModelLoadError(f"{source}: field {exc.args[0]!r} is missing") from None
        except (TypeError, ValueError, IndexError) as exc:
            raise ModelLoadError(f"{source}: malformed field: {exc}") from None
        if meta.format not in MODEL_FILES:
            raise ModelLoadError(
                f"{source}: format {meta.format!r} is not supported; expected one of {list(MODEL_FILES)}"
            )
        if meta.task not in TASKS:
            raise ModelLoadError(f"{source}: task {meta.task!r} is not one of {list(TASKS)}")
        if not features:
            raise ModelLoadError(f"{source}: feature_columns is empty")
        _check_classes(meta, source)
        unknown = [c for c in meta.categorical_columns if c not in features]
        if unknown:
            raise ModelLoadError(f"{source}: categorical_columns {unknown} are not among feature_columns")
        for name in (meta.model_file, meta.forest_file):
            if name is not None and PurePosixPath(name).name != name:
                raise ModelLoadError(f"{source}: {name!r} must be a plain file name")
        return meta


def _check_classes(meta: ModelMetadata, source: str) -> None:
    if meta.task == "regression":
        if meta.classes:
            raise ModelLoadError(f"{source}: a regression model has no classes, got {list(meta.classes)}")
        return
    classes = meta.classes or ()
    wanted = "exactly 2" if meta.task == "binary_classification" else f"2 to {MAX_CLASSES}"
    count_ok = len(classes) == 2 if meta.task == "binary_classification" else 2 <= len(classes) <= MAX_CLASSES
    if not count_ok:
        raise ModelLoadError(f"{source}: task {meta.task} needs {wanted} classes, got {list(classes)}")
    if len(set(classes)) != len(classes):
        raise ModelLoadError(f"{source}: classes {list(classes)} repeat a label")


@dataclass(frozen=True)
class LoadedModel:
    estimator: Estimator
    metadata: ModelMetadata

    @property
    def n_features(self) -> int:
        return len(self.metadata.feature_columns)

    def predict(self, rows: Matrix) -> Scores | ClassProbabilities:
        """P(positive label) for binary classification, the k class probabilities for multiclass
        (one row each), the predicted value for regression (estimator.scores)."""
        return scores(self.estimator, self.metadata.task, rows)


def save_model(
    model_dir: Path, estimator: Estimator, metadata: ModelMetadata, forest: dict[str, Any] | None = None
) -> None:
    """Write the estimator (in metadata.format), its metadata and (when given) its compiled-forest
    document into `model_dir`."""
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / metadata.model_file
    if metadata.format == "xgboost":
        cast(Any, estimator).save_model(str(path))
    elif metadata.format == "lightgbm":
        cast(Any, estimator).booster_.save_model(str(path))
    else:
        import joblib

        joblib.dump(estimator, path)
    if forest is not None and metadata.forest_file:
        (model_dir / metadata.forest_file).write_text(
            json.dumps(forest, separators=(",", ":")), encoding="utf-8"
        )
    write_json(model_dir / METADATA_FILE, metadata.to_dict())


def read_metadata(model_dir: Path) -> ModelMetadata:
    """metadata.json of a model folder; ModelLoadError says what is wrong with it."""
    meta_path = model_dir / METADATA_FILE
    try:
        doc = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelLoadError(f"{meta_path} not found: is the model folder populated?") from None
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{meta_path} is unreadable: {exc}") from None
    return ModelMetadata.from_dict(doc, source=str(meta_path))


def read_forest(model_dir: Path, metadata: ModelMetadata) -> Any:
    """The compiled-forest document named by the metadata (None when the model has none)."""
    if not metadata.forest_file:
        return None
    path = model_dir / metadata.forest_file
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{path} (named by {METADATA_FILE}) is unreadable: {exc}") from None


def load_model(model_dir: Path, *, install_requirements: bool = False) -> LoadedModel:
    """Load a model folder written by `save_model`; ModelLoadError says which file is wrong.
    `install_requirements`: see load_estimator."""
    metadata = read_metadata(model_dir)
    estimator = load_estimator(model_dir, metadata, install_requirements=install_requirements)
    return LoadedModel(estimator=estimator, metadata=metadata)


def storage_format(estimator: Estimator) -> str:
    """The format `estimator` is saved in: its library's own for a bare XGBoost or LightGBM model,
    joblib (`sklearn`) for anything else, a Pipeline around one of them included."""
    library = type(estimator).__module__.split(".")[0]
    return library if library in ("xgboost", "lightgbm") else "sklearn"


def load_estimator(
    model_dir: Path, metadata: ModelMetadata, *, install_requirements: bool = False
) -> Estimator:
    """Load the estimator named by the metadata (by its format) and check it against the feature list.

    A model whose code/ lists requirements.txt needs those packages: `install_requirements` (train
    and the judge job) installs what is missing into a folder of its own; otherwise (serve, whose
    image installed them at build) a missing one is a ModelLoadError naming it
    (code_requirements.ensure)."""
    model_path = model_dir / metadata.model_file
    if metadata.format not in MODEL_FILES:
        raise ModelLoadError(
            f"{METADATA_FILE}: format {metadata.format!r} is not supported; expected one of {list(MODEL_FILES)}"
        )
    if metadata.format == "onnx" and metadata.categorical_columns:
        raise ModelLoadError(
            f"{model_path.name}: an ONNX model takes float columns only; categorical text columns "
            f"{list(metadata.categorical_columns)} are not supported for ONNX (save a joblib Pipeline instead)"
        )
    try:
        estimator = _read_estimator(model_path, metadata, install_requirements)
    except ModelLoadError:
        raise
    except FileNotFoundError:
        raise ModelLoadError(f"{model_path} not found (named by {METADATA_FILE})") from None
    except Exception as exc:  # unpickling raises anything
        raise ModelLoadError(f"{model_path} cannot be loaded: {type(exc).__name__}: {exc}") from None
    expected = getattr(estimator, "n_features_in_", len(metadata.feature_columns))
    if expected != len(metadata.feature_columns):
        raise ModelLoadError(
            f"{model_path} expects {expected} features but {METADATA_FILE} lists {len(metadata.feature_columns)}"
        )
    return estimator


def _read_estimator(path: Path, metadata: ModelMetadata, install_requirements: bool = False) -> Estimator:
    if not path.is_file():
        raise FileNotFoundError(path)
    classification = metadata.task != "regression"
    if metadata.format == "xgboost":
        import xgboost

        model: Any = xgboost.XGBClassifier(n_jobs=1) if classification else xgboost.XGBRegressor(n_jobs=1)
        model.load_model(str(path))
        return cast(Estimator, model)
    if metadata.format == "lightgbm":
        import lightgbm

        return BoosterModel(lightgbm.Booster(model_file=str(path)), classification=classification)
    if metadata.format == "onnx":
        from model_server.onnx_model import load_onnx

        n_features = len(metadata.feature_columns)
        return load_onnx(path, classification=classification, n_features=n_features)
    return _unpickle(path, path.parent / CODE_DIR, install_requirements)


def _unpickle(path: Path, code: Path, install_requirements: bool = False) -> Estimator:
    """joblib.load, with a script-mode model's own code (model/code/, see script_mode.py) importable
    while unpickling only: its modules are forgotten again afterwards (the loaded objects keep their
    classes), so another model's code of the same module names is imported afresh."""
    import joblib

    if not code.is_dir():
        estimator: Estimator = joblib.load(path)
        return estimator
    try:
        ensure_requirements(code, install_missing=install_requirements)
    except RequirementsError as exc:
        raise ModelLoadError(str(exc)) from None
    before = set(sys.modules)
    sys.path.insert(0, str(code))
    try:
        estimator = joblib.load(path)
    finally:
        sys.path.remove(str(code))
        root = code.resolve()
        for name in set(sys.modules) - before:
            origin = getattr(sys.modules[name], "__file__", None)
            if origin and Path(origin).resolve().is_relative_to(root):
                del sys.modules[name]
    return estimator


class BoosterModel:
    """A LightGBM model read from model.txt, with the scikit-learn API that LGBMClassifier and
    LGBMRegressor put over the same Booster: predict_proba's columns are (1 - p, p) for a binary
    model and the Booster's k columns for a multiclass one; predict is the Booster's value for
    regression and the most probable class for classification."""

    def __init__(self, booster: Any, *, classification: bool) -> None:
        self.booster = booster
        self.classification = classification
        self.n_features_in_: int = int(booster.num_feature())

    def fit(self, X: Matrix, y: Labels) -> object:
        raise TypeError("a LightGBM model loaded from model.txt is not refitted; train a new one")

    def _raw(self, X: Matrix) -> NDArray[np.float64]:
        rows = np.asarray(X, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {rows.shape[-1] if rows.ndim else 0} features, but the model expects {self.n_features_in_}"
            )
        return np.asarray(self.booster.predict(rows, num_threads=1), dtype=np.float64)

    def predict_proba(self, X: Matrix) -> NDArray[np.float64]:
        if not self.classification:
            raise AttributeError("a regression model has no predict_proba")
        raw = self._raw(X)
        return raw if raw.ndim == 2 else np.column_stack([1.0 - raw, raw])

    def predict(self, X: Matrix) -> NDArray[np.float64] | NDArray[np.int64]:
        if self.classification:
            return np.asarray(np.argmax(self.predict_proba(X), axis=1), dtype=np.int64)
        return self._raw(X)


def extract_model_archive(
    archive: Path, dest: Path, *, what: str = "model", error: type[Exception] = ChampionError
) -> Path:
    """Unpack a model.tar.gz (or, `what`="code", script mode's code archive: regular files and
    folders only, no paths leaving `dest`) into `dest`; `error` names the archive and the problem."""
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    kind = "model.tar.gz" if what == "model" else f"{what} archive (.tar.gz)"
    try:
        with tarfile.open(archive, mode="r:*") as tar:
            for member in tar.getmembers():
                name = PurePosixPath(member.name)
                if name.is_absolute() or ".." in name.parts:
                    raise error(f"{archive.name}: member {member.name!r} leaves the {what} folder")
                target = (root / name).resolve()
                if not target.is_relative_to(root):
                    raise error(f"{archive.name}: member {member.name!r} leaves the {what} folder")
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                elif member.isfile():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    source = tar.extractfile(member)
                    assert source is not None
                    with source, target.open("wb") as out:
                        while chunk := source.read(1 << 20):
                            out.write(chunk)
                # links and devices are skipped: a model artifact has no use for them
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise error(f"{archive.name} is not a readable {kind}: {exc}") from None
    return dest


def write_json(path: Path, doc: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
