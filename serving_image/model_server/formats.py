"""Which model-format libraries a model's image carries (the Dockerfile's `model` stage decides).

Every image has serving_image/requirements.txt (numpy, scikit-learn, the HTTP server). Each format's
own library is a set installed apart, in /opt/formats/<set> (requirements-<set>.txt), which the
venv's `modelops-formats.pth` puts on sys.path when the folder exists:

    xgboost   xgboost-cpu                            XGBoost models
    lightgbm  lightgbm                               LightGBM models
    onnx      onnxruntime, flatbuffers, protobuf     ONNX models

The training image carries every set; a serving image only its model's, chosen here from the
model folder:
- `metadata.json` `format` xgboost / lightgbm / onnx: that set;
- a joblib model of the built-in `train` (`algorithm` in metadata.json): its algorithm's set;
- any other joblib model (`sklearn`, e.g. a script's): the sets whose library its pickle names (a Pipeline around an
  XGBClassifier needs xgboost), read by unpickling with every set importable and recording which
  of their modules the pickle's classes come from (the team's own modules, code/, are importable
  too; a module that fails to import is stood in for, so a missing team package decides nothing);
- plus any set whose library the model's code/ imports (`import xgboost`, `from lightgbm ...`).
A pickle that cannot be read at all keeps every set (and says why): the image then serves as the
training image would.

    python -m model_server.formats select <model folder> <formats folder> <dest>

copies the chosen sets' folders from <formats folder> into <dest> (the serving stage copies
<dest> to /opt/formats) and prints which and why.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from model_server.contract import CODE_DIR, METADATA_FILE, MODEL_FILE

# set -> the top-level module its library is imported as
SETS = {"xgboost": "xgboost", "lightgbm": "lightgbm", "onnx": "onnxruntime"}
FORMAT_SETS = {"xgboost": "xgboost", "lightgbm": "lightgbm", "onnx": "onnx"}
# The built-in train's algorithms (model_server/algorithms.py) and the sets a joblib model of
# each holds (a Pipeline with the categorical columns' encoder in front of the estimator).
BUILT_IN = {
    "hist_gradient_boosting": (),
    "random_forest": (),
    "linear": (),
    "xgboost": ("xgboost",),
    "lightgbm": ("lightgbm",),
}
_IMPORT = re.compile(r"^\s*(?:import|from)\s+(" + "|".join(SETS.values()) + r")\b", re.MULTILINE)
MAX_CODE_FILE_BYTES = 1 << 20


class _Stand:
    """Stands for a class whose module cannot be imported here (a team package not installed yet)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass


def pickle_modules(path: Path, code_dir: Path | None = None) -> set[str]:
    """The modules the classes and functions in a joblib/pickle file come from."""
    import joblib.numpy_pickle as numpy_pickle

    seen: set[str] = set()

    class Recording(numpy_pickle.NumpyUnpickler):  # type: ignore[misc]
        def find_class(self, module: str, name: str) -> Any:
            seen.add(module)
            try:
                return super().find_class(module, name)
            except (ImportError, AttributeError):
                return _Stand

    added = code_dir is not None and code_dir.is_dir()
    if added:
        sys.path.insert(0, str(code_dir))
    original = numpy_pickle.NumpyUnpickler
    try:
        numpy_pickle.NumpyUnpickler = Recording
        numpy_pickle.load(path)
    finally:
        numpy_pickle.NumpyUnpickler = original
        if added:
            sys.path.remove(str(code_dir))
    return seen


def code_imports(code_dir: Path) -> set[str]:
    """The format libraries the model's own code imports (a textual look at its .py files)."""
    found: set[str] = set()
    if not code_dir.is_dir():
        return found
    for path in sorted(code_dir.rglob("*.py")):
        if path.is_file() and path.stat().st_size <= MAX_CODE_FILE_BYTES:
            found |= set(_IMPORT.findall(path.read_text(encoding="utf-8", errors="replace")))
    return found


def needed(model_dir: Path) -> tuple[list[str], str]:
    """The sets the model's image carries, and why (one line)."""
    meta = json.loads((model_dir / METADATA_FILE).read_text(encoding="utf-8"))
    fmt = str(meta.get("format") or "sklearn")
    sets: set[str] = set()
    reasons = []
    if fmt in FORMAT_SETS:
        sets.add(FORMAT_SETS[fmt])
        reasons.append(f"format {fmt}")
    elif fmt == "sklearn" and str(meta.get("algorithm")) in BUILT_IN:
        # the built-in train's joblib model: its algorithm says which library it holds (no unpickling)
        algorithm = str(meta["algorithm"])
        sets |= set(BUILT_IN[algorithm])
        reasons.append(f"built-in algorithm {algorithm}")
    elif fmt == "sklearn":
        model_file = model_dir / str(meta.get("model_file") or MODEL_FILE)
        try:
            modules = pickle_modules(model_file, model_dir / CODE_DIR)
        except Exception as exc:  # an unreadable pickle: keep every set, say why
            return sorted(
                SETS
            ), f"{model_file.name} could not be read ({type(exc).__name__}: {exc}): every set"
        named = {s for s, top in SETS.items() if any(m == top or m.startswith(top + ".") for m in modules)}
        sets |= named
        reasons.append(
            f"{model_file.name} names {sorted(named)}" if named else f"{model_file.name} names none"
        )
    else:
        return sorted(SETS), f"format {fmt!r} unknown here: every set"
    imported = {s for s, top in SETS.items() if top in code_imports(model_dir / CODE_DIR)}
    if imported - sets:
        reasons.append(f"code/ imports {sorted(imported - sets)}")
    sets |= imported
    return sorted(sets), "; ".join(reasons)


def select(model_dir: Path, formats_dir: Path, dest: Path) -> list[str]:
    """Copy the chosen sets' folders from `formats_dir` into `dest`; returns the sets."""
    sets, why = needed(model_dir)
    dest.mkdir(parents=True, exist_ok=True)
    for name in sets:
        source = formats_dir / name
        if not source.is_dir():
            raise FileNotFoundError(f"{source}: the {name} set is not installed in the build")
        shutil.copytree(source, dest / name, symlinks=True, dirs_exist_ok=True)
    print(f"model formats: {', '.join(sets) or 'none beyond the base'} ({why})")
    return sets


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 4 or args[0] != "select":
        print(
            "usage: python -m model_server.formats select <model folder> <formats folder> <dest>",
            file=sys.stderr,
        )
        return 2
    try:
        select(Path(args[1]), Path(args[2]), Path(args[3]))
    except (OSError, ValueError) as exc:
        print(f"model formats: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
