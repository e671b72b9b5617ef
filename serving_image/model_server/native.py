"""The native predictor: the same forest (forest.json) as C, compiled when the serving image is built.

The compiled Python forest (forest.py) makes one row cheap, but each row still costs tens of
microseconds of interpreted comparisons; scikit-learn is vectorised but pays its own per-row cost
and a fixed cost per call. This module turns the forest document into C with the very same
comparisons, the same summation order and the same link function, builds it into a shared library
with the system C compiler, and calls it through ctypes: about a microsecond a row, for batches of
any size, without scikit-learn.

When, and what checks it:
- `build` runs in the serving image's build (the Dockerfile's `model` stage, and the local
  CodeBuild's BUILD phase, both `python -m model_server.native build <model folder>`). It writes
  `native/forest.c`, `native/forest.so` and `native/manifest.json` (the forest document's sha256,
  the compiler, the measured gaps) into the model folder, which then becomes /opt/ml/model.
  Before anything is written it checks the library against the estimator's own predictions that
  train.py stored with the forest (the holdout rows, `check` in forest.json) within forest.TOLERANCE,
  and against the compiled Python forest on those rows plus rows probing every threshold from both
  sides and with missing values, which must agree exactly. A model without a forest, a forest
  without check rows, a missing compiler or any gap: nothing is written, the reason is printed, and
  `serve` uses the Python forest and scikit-learn as before. So the build never fails for this.
- `load` (in `serve`) uses the library only if the manifest names this forest.json's sha256 and
  the library reproduces the check rows again; otherwise it logs why and returns None.

C doubles on x86-64 and arm64 are IEEE binary64 and GCC does not reassociate additions or contract
them without -ffast-math, so each tree adds its leaf in the order scikit-learn's `_raw_predict` does.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import logging
import math
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

from model_server.forest import TOLERANCE, CompiledForest, ForestError, compile_forest, read_header, walk_tree

if TYPE_CHECKING:  # metadata.json's reader needs numpy; this module's loader does not
    from model_server.artifact import ModelMetadata

log = logging.getLogger("model_server.native")

NATIVE_DIR = "native"
SOURCE_FILE = "forest.c"
LIBRARY_FILE = "forest.so"
MANIFEST_FILE = "manifest.json"
SYMBOL = "modelops_predict"
# Plain -O2: no -ffast-math (it would reorder the sums and break NaN tests), no -march=native (the
# image must run on any node of the architecture it was built for).
CFLAGS = ("-O2", "-shared", "-fPIC", "-fno-fast-math", "-ffp-contract=off")
COMPILE_TIMEOUT_SECONDS = 600.0
Row = Sequence[float]


class NativeError(Exception):
    """The native predictor cannot be built or used; the message says why and what happens instead."""


class Gaps(TypedDict):
    """What `verify` measured (row counts as floats, as manifest.json has always held them)."""

    max_abs_diff_estimator: float
    check_rows: float
    # with a Python forest to compare against (always, in `build`)
    max_abs_diff_python: NotRequired[float]
    probe_rows: NotRequired[float]


class Manifest(Gaps):
    """native/manifest.json: what `load` checks before it uses the library."""

    forest_file: str
    forest_sha256: str
    library: str
    compiler: str
    cflags: list[str]
    python_abi: str


class BuildResult(Manifest):
    compile_seconds: float


@dataclass(frozen=True)
class NativeForest:
    n_features: int
    library: Path
    # modelops_predict through ctypes: (rows, address of len(rows) doubles) -> 0, or raises
    _function: Callable[[list[Row], int], int]

    def predict_rows(self, rows: Sequence[Row]) -> list[float]:
        """What CompiledForest.predict_rows gives, for a list of any number of rows of n_features numbers."""
        out = array("d", bytes(8 * len(rows)))
        self._function(rows if isinstance(rows, list) else list(rows), out.buffer_info()[0])
        return out.tolist()


# Reads the rows straight from the Python lists (a float is a pointer dereference away), so no
# flat buffer is built in Python: that alone cost more than the trees. Called through
# ctypes.PyDLL, which holds the GIL and raises the Python error set here.
# One row of a request: a list or tuple of NF numbers, read straight from the Python objects (a
# float is a pointer dereference away), so no flat buffer is built in Python: that alone cost more
# than the trees. Shared with trees.py's entry point; NF is #defined before it.
C_READ_ROW = r"""
static int modelops_read_row(PyObject *r, Py_ssize_t i, double *x) {
    PyObject **items;
    if (PyList_Check(r) && PyList_GET_SIZE(r) == NF) {
        items = ((PyListObject *)r)->ob_item;
    } else if (PyTuple_Check(r) && PyTuple_GET_SIZE(r) == NF) {
        items = ((PyTupleObject *)r)->ob_item;
    } else {
        PyErr_Format(PyExc_ValueError, "row %zd must be a list of %d numbers", i, NF);
        return -1;
    }
    for (int j = 0; j < NF; j++) {
        PyObject *v = items[j];
        if (PyFloat_CheckExact(v)) {
            x[j] = PyFloat_AS_DOUBLE(v);
        } else {
            x[j] = PyFloat_AsDouble(v);
            if (x[j] == -1.0 && PyErr_Occurred()) return -1;
        }
    }
    return 0;
}
"""

# Called through ctypes.PyDLL, which holds the GIL and raises the Python error set here.
_ENTRY = r"""
int modelops_predict(PyObject *rows, double *out) {
    double x[NF];
    if (!PyList_Check(rows)) {
        PyErr_SetString(PyExc_TypeError, "rows must be a list");
        return -1;
    }
    Py_ssize_t n = PyList_GET_SIZE(rows);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (modelops_read_row(PyList_GET_ITEM(rows, i), i, x) < 0) return -1;
        out[i] = row(x);
    }
    return 0;
}
"""


def c_source(doc: Any) -> str:
    """C for the forest document: `int modelops_predict(PyObject *rows, double *out)`."""
    header = read_header(doc)
    nf = header.n_features
    lines = [
        "/* generated by model_server.native from forest.json; do not edit */",
        "#define PY_SSIZE_T_CLEAN",
        "#include <Python.h>",
        "#include <math.h>",
        "",
        "static double row(const double *x) {",
        f"    double s = {_c_double(header.baseline)};",
    ]
    for index, tree in enumerate(header.trees):
        _emit_c_tree(lines, tree, index, nf)
    if header.link == "logistic":
        lines += [
            "    if (s >= 0.0) return 1.0 / (1.0 + exp(-s));",
            "    double e = exp(s);",
            "    return e / (1.0 + e);",
        ]
    else:
        lines.append("    return s;")
    lines += ["}", "", f"int modelops_n_features(void) {{ return {nf}; }}", ""]
    lines += [f"#define NF {nf}", *C_READ_ROW.splitlines(), *_ENTRY.splitlines()]
    return "\n".join(lines) + "\n"


def _emit_c_tree(lines: list[str], tree: Any, index: int, n_features: int) -> None:
    open_blocks = 0

    def close_to(depth: int) -> None:
        nonlocal open_blocks
        while open_blocks > depth:
            open_blocks -= 1
            lines.append("    " * (open_blocks + 1) + "}")

    for kind, depth, feature, number, missing_left in walk_tree(tree, index, n_features):
        indent = "    " * (depth + 1)
        if kind == "else":
            close_to(depth + 1)  # the left subtree's blocks; `} else {` then closes the `if`'s
            lines.append(f"{indent}}} else {{")
            continue
        close_to(depth)
        if kind == "leaf":
            lines.append(f"{indent}s += {_c_double(number)};")
        else:
            # NaN compares false with everything; `x != x` sends a missing value left
            cond = f"x[{feature}] <= {_c_double(number)}"
            if missing_left:
                cond += f" || x[{feature}] != x[{feature}]"
            lines.append(f"{indent}if ({cond}) {{")
            open_blocks = depth + 1
    close_to(0)


def _c_double(value: float) -> str:
    if math.isnan(value):
        return "NAN"
    if math.isinf(value):
        return "INFINITY" if value > 0 else "-INFINITY"
    return repr(float(value))  # the shortest decimal that round-trips; C parses it to the same double


def probe_rows(doc: Any, base: Sequence[Row], limit: int = 4096) -> list[list[float]]:
    """Rows that take every branch: for each split, a base row with the split's feature at the
    threshold, just above it, and missing. Up to `limit` rows."""
    header = read_header(doc)
    seed = [list(map(float, r)) for r in base] or [[0.0] * header.n_features]
    rows: list[list[float]] = []
    for index, tree in enumerate(header.trees):
        for kind, _depth, feature, threshold, _missing in walk_tree(tree, index, header.n_features):
            if kind != "if":
                continue
            template = seed[len(rows) % len(seed)]
            for value in (threshold, math.nextafter(threshold, math.inf), math.nan):
                row = list(template)
                row[feature] = value
                rows.append(row)
                if len(rows) >= limit:
                    return rows
    return rows


def _gap(got: Sequence[float], want: Sequence[float]) -> float:
    worst = 0.0
    for a, b in zip(got, want, strict=True):
        if math.isnan(a) or math.isnan(b):
            return math.inf
        worst = max(worst, abs(a - b))
    return worst


def _check_rows(doc: Any) -> tuple[list[list[float]], list[float]]:
    check = doc.get("check") if isinstance(doc, dict) else None
    try:
        if not isinstance(check, dict):
            raise TypeError("no `check` object")
        rows = [[float("nan") if v is None else float(v) for v in r] for r in check["rows"]]
        expected = [float(v) for v in check["expected"]]
    except (KeyError, TypeError, ValueError):
        raise NativeError(
            "forest.json has no usable `check` rows (a model trained before the native predictor?)"
        ) from None
    if not rows or len(rows) != len(expected):
        raise NativeError("forest.json's `check` needs as many expected values as rows, at least one")
    return rows, expected


def verify(forest: NativeForest, doc: Any, python_forest: CompiledForest | None = None) -> Gaps:
    """The gaps to the estimator (check rows) and to the Python forest (check + probe rows)."""
    rows, expected = _check_rows(doc)
    to_estimator = _gap(forest.predict_rows(rows), expected)
    if to_estimator > TOLERANCE:
        raise NativeError(
            f"native predictor differs from the estimator by {to_estimator:.3g} on the check rows"
        )
    gaps: Gaps = {"max_abs_diff_estimator": to_estimator, "check_rows": float(len(rows))}
    if python_forest is not None:
        probes = rows + probe_rows(doc, rows)
        to_python = _gap(forest.predict_rows(probes), python_forest.predict_rows(probes))
        if to_python != 0.0:
            raise NativeError(
                f"native predictor differs from the compiled Python forest by {to_python:.3g} on {len(probes)} rows"
            )
        gaps["max_abs_diff_python"] = to_python
        gaps["probe_rows"] = float(len(probes))
    return gaps


def _open(library: Path, n_features: int) -> NativeForest:
    try:
        lib = ctypes.PyDLL(str(library))  # keeps the GIL: the predictor reads Python objects
        function = getattr(lib, SYMBOL)
        width = lib.modelops_n_features
    except (OSError, AttributeError) as exc:
        raise NativeError(f"{library}: cannot be loaded: {exc}") from None
    width.restype = ctypes.c_int
    width.argtypes = []
    if width() != n_features:
        raise NativeError(f"{library} is for {width()} features, the forest has {n_features}")
    function.restype = ctypes.c_int
    function.argtypes = [ctypes.py_object, ctypes.c_void_p]
    return NativeForest(n_features=n_features, library=library, _function=function)


def python_abi() -> str:
    return str(sysconfig.get_config_var("SOABI"))


def compiler_version(cc: str) -> str:
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=60, check=False)
    return (version.stdout.splitlines() or [cc])[0]


def compile_library(
    cc: str,
    folder: Path,
    sources: Sequence[str],
    library: str,
    *,
    cflags: Sequence[str] = CFLAGS,
    timeout: float = COMPILE_TIMEOUT_SECONDS,
) -> None:
    """Compile `sources` (C files in `folder`, against Python's headers) into `folder`/`library`;
    NativeError says why not. Relative names in the folder: the library's bytes do not depend on
    where it was built, so one model always makes the same image (same digest)."""
    try:
        done = subprocess.run(
            [cc, *cflags, f"-I{sysconfig.get_paths()['include']}", "-I.", "-o", library, *sources, "-lm"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise NativeError(f"{cc} took longer than {timeout:.0f}s") from None
    except OSError as exc:
        raise NativeError(f"C compiler {cc} cannot run: {exc}") from None
    if done.returncode != 0:
        raise NativeError(f"{cc} failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")


def find_compiler() -> str | None:
    for name in ("cc", "gcc", "clang"):
        found = shutil.which(name)
        if found:
            return found
    return None


def build(model_dir: Path, forest_file: str = "forest.json", compiler: str | None = None) -> BuildResult:
    """Build and check native/forest.so for the model folder, returning its manifest (plus
    compile_seconds); NativeError says why not, and the folder is left as it was. The same
    forest.json and compiler always give the same bytes."""
    forest_path = model_dir / forest_file
    if not forest_path.is_file():
        raise NativeError(f"{forest_path} not found: the model has no compiled forest")
    raw = forest_path.read_bytes()
    try:
        doc = json.loads(raw)
        python_forest = compile_forest(doc)
        source = c_source(doc)
    except (ValueError, ForestError) as exc:
        raise NativeError(f"{forest_path}: {exc}") from None
    _check_rows(doc)
    cc = compiler or find_compiler()
    if cc is None:
        raise NativeError("no C compiler (cc, gcc or clang) on PATH")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="modelops-native-") as tmp:
        src, lib = Path(tmp) / SOURCE_FILE, Path(tmp) / LIBRARY_FILE
        src.write_text(source, encoding="utf-8")
        compile_library(cc, Path(tmp), [SOURCE_FILE], LIBRARY_FILE)
        compile_seconds = time.monotonic() - started
        gaps = verify(_open(lib, python_forest.n_features), doc, python_forest)
        manifest: Manifest = {
            "forest_file": forest_file,
            "forest_sha256": hashlib.sha256(raw).hexdigest(),
            "library": LIBRARY_FILE,
            "compiler": compiler_version(cc),
            "cflags": list(CFLAGS),
            "python_abi": python_abi(),
            **gaps,
        }
        target = model_dir / NATIVE_DIR
        target.mkdir(exist_ok=True)
        shutil.copyfile(src, target / SOURCE_FILE)
        shutil.copyfile(lib, target / LIBRARY_FILE)
        (target / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return {**manifest, "compile_seconds": compile_seconds}


def load(model_dir: Path, forest_file: str, doc: Any) -> NativeForest:
    """The native predictor shipped in the model folder, checked; NativeError says why it is not used."""
    manifest_path = model_dir / NATIVE_DIR / MANIFEST_FILE
    if not manifest_path.is_file():
        raise NativeError(f"{manifest_path} not found (the image was built without the native predictor)")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        wanted = str(manifest["forest_sha256"])
        library = model_dir / NATIVE_DIR / Path(str(manifest["library"])).name
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise NativeError(f"{manifest_path} is unreadable: {exc}") from None
    if manifest.get("python_abi") != python_abi():
        raise NativeError(
            f"{library} was built for Python {manifest.get('python_abi')}, this is {python_abi()}"
        )
    actual = hashlib.sha256((model_dir / forest_file).read_bytes()).hexdigest()
    if actual != wanted:
        raise NativeError(
            f"{library} was built for another {forest_file} (sha256 {wanted[:12]}, not {actual[:12]})"
        )
    forest = _open(library, read_header(doc).n_features)
    verify(forest, doc)
    return forest


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m model_server.native",
        description="Build the native predictor into a model folder (serving image build step).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="compile and check native/forest.so; never fails the image build")
    b.add_argument("model_dir", type=Path)
    b.add_argument("--compiler", default=None, help="C compiler (default: cc, gcc or clang on PATH)")
    b.add_argument(
        "--max-source-mb",
        type=float,
        default=None,
        help="tree ensembles whose generated C is larger are not compiled (default: trees.MAX_SOURCE_BYTES)",
    )
    args = parser.parse_args(argv)
    from model_server.artifact import read_metadata
    from model_server.errors import ModelLoadError

    try:
        meta = read_metadata(args.model_dir)
    except ModelLoadError as exc:
        # not this step's to refuse: `serve` reports a broken metadata.json on /ping
        print(f"native predictor: not built: {exc}")
        return 0
    if meta.forest_file:
        try:
            manifest = build(args.model_dir, meta.forest_file, args.compiler)
        except NativeError as exc:
            print(f"native predictor: hand-written forest not built: {exc}; trying treelite + tl2cgen")
        else:
            print(
                f"native predictor: built {NATIVE_DIR}/{LIBRARY_FILE} in {manifest['compile_seconds']:.1f}s with "
                f"{manifest['compiler']}; max |difference| {manifest['max_abs_diff_estimator']:.3g} to the "
                f"estimator on {int(manifest['check_rows'])} holdout rows, exact on "
                f"{int(manifest['probe_rows'])} probe rows"
            )
            return 0
    limit = None if args.max_source_mb is None else int(args.max_source_mb * 1e6)
    return _build_trees(args.model_dir, meta, args.compiler, limit)


def _build_trees(
    model_dir: Path, meta: ModelMetadata, compiler: str | None, max_source_bytes: int | None
) -> int:
    from model_server import trees

    fallback = "the Python forest and scikit-learn" if meta.forest_file else "the model's library"
    why = trees.unsupported(meta)
    if why:
        print(f"native predictor: not built: {why} (serve uses {fallback})")
        return 0
    try:
        result = trees.build(
            model_dir,
            meta,
            compiler,
            max_source_bytes=trees.MAX_SOURCE_BYTES if max_source_bytes is None else max_source_bytes,
        )
    except trees.OverBudgetError as exc:
        # a decision, not a failure: recorded so that `serve` says why it answers with the library
        trees.record_skipped(model_dir, str(exc))
        print(f"native predictor: not compiled: {exc}; serve uses {fallback}")
        return 0
    except (trees.TreesError, NativeError) as exc:
        print(f"native predictor: not built: {exc}; serve uses {fallback}")
        return 0
    except ImportError as exc:
        print(
            f"native predictor: not built: {exc} (treelite and tl2cgen are build-time requirements); serve uses {fallback}"
        )
        return 0
    kind = "relative " if result["relative"] else ""
    print(
        f"native predictor: built {trees.NATIVE_DIR}/{trees.LIBRARY_FILE} from {meta.model_file} "
        f"({result['generator']}) in {result['compile_seconds']:.1f}s with {result['compiler']}; max "
        f"{kind}|difference| {result['max_diff']:.3g} to the model on {result['check_rows']} holdout rows "
        f"(limit {result['tolerance']:g}); kept {result['choice']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
