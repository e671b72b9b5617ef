"""Tree ensembles of every format as C: treelite reads the model, tl2cgen writes the C (or
tree_arrays.py writes its nodes as arrays for a branchless walker, whichever measures faster), gcc
builds it.

XGBoost (model.json), LightGBM (model.txt) and scikit-learn's RandomForest and HistGradientBoosting
(model.joblib) are read by treelite (`treelite.frontend.load_xgboost_model`,
`load_lightgbm_model`, `treelite.sklearn.import_model`), tl2cgen generates C from it
(`tl2cgen.generate_c_code`), and the system C compiler builds that, with an entry point of ours
(`modelops_predict`, reading the rows straight from the request's Python lists like native.py's),
into `native/trees.so`. `serve` loads it with ctypes: neither treelite, tl2cgen nor the model's
library is imported at serving time, and the runtime image carries none of them (nor a compiler).

The discipline is native.py's:
- `build` (image build: the Dockerfile's `model` stage and the local CodeBuild, both
  `python -m model_server.native build <model folder>`) checks the library against the saved
  model's own answers on the holdout rows train.py stored in check.json (checkrows.py), within
  TOLERANCE (FLOAT32_TOLERANCE for XGBoost, which casts its inputs, compares, sums and applies the
  link in float32, as the generated C does, in another order: the gap is relative to
  max(1, |answer|) there, since float32 rounding grows with the value: 6e-5 absolute on a regression
  whose values are in the hundreds, 1.5e-7 on probabilities), before anything is written. Any gap, a model treelite
  cannot read, no compiler: nothing is written, the reason is printed, `serve` uses the library.
- `load` (in `serve`) uses the library only if its manifest names this model file's sha256 and the
  library reproduces check.json again at the tolerance; otherwise it says why and returns None.

Two edits to tl2cgen's C, both for exactness:
- tl2cgen marks a missing value by storing the int -1 over the first 4 bytes of the union that
  holds the value; for a double that is ambiguous (a real double whose low 32 bits are all ones
  would read as missing). The generated tests `(data[i].missing != -1)` become
  `(data[i].fvalue == data[i].fvalue)`: NaN is missing, every number is a number.
- scikit-learn's decision trees (RandomForest) compare the row cast to float32 against float64
  thresholds; the entry point casts the same way for them (`MODELOPS_FLOAT32_INPUT`).

HistGradientBoosting binary and regression models keep the hand-written forest (forest.json ->
native.py), which measured faster on the same model (predict_rows per call, best of 5, this 2-core
Xeon): 20 features x 100 trees, one row 3.5 us vs 5.0 us here, 100 rows 222 us vs 324 us; 16
features x 250 trees of depth 7 with 10% missing cells, one row 9.3 vs 16.5 us, 100 rows 844 vs
1167 us. tl2cgen's C tests a union per value and returns through a float/double array per row;
native.py's tests the doubles directly. The build step (native.main) tries that forest first and
comes here for everything else: HistGradientBoosting multiclass (which forest.py does not export),
random forests, XGBoost and LightGBM.

Compile budget. gcc's time grows with the generated C, and -O2 is pathological on the deep
nested branches of unbounded trees: a RandomForest of 25 unbounded trees (16,000 rows x 20
features, 5.6 MB of C) took 146 s at -O2, 16 s at -O1 and 12 s at -O0 (gcc 12, one core of this
2-core Xeon, load average ~3); the default 100 trees (168,672 nodes, 22 MB of C) 84 s at -O1 and
at -O0 alike. One row is as fast at -O1 as at -O2 (1.5 vs 1.6 us on XGBoost's default 100 trees of
depth 6; 100-row batches were within the noise), so the trees compile at -O1 (TREES_CFLAGS). A
model whose C is larger than MAX_SOURCE_BYTES (8 MB: ~25 s at -O1 on a quiet core, ~65-90 s on
this machine's loaded one, where bench/serving/compile_budget.py measured 2.3 MB 21 s, 5.8 MB 67 s,
11.5 MB 96 s at load average 5) is not compiled as code. A scikit-learn random forest is then
compiled as data instead (tree_arrays.py: its nodes as static arrays and one loop; that 22-25 MB
forest builds in ~5 s and answers one row in ~7 us against scikit-learn's ~6 ms, exactly). Any
other model over the budget is not compiled at all: the build records why in native/skipped.json
(OverBudgetError), prints it, and `serve` logs it and answers with the model's library. Every
compile is also bounded by TREES_COMPILE_TIMEOUT_SECONDS.

The walker, and which library the build keeps. tl2cgen's C is one `if` per node: for a batch it
walks each row through every tree in turn, and its branches mispredict on varied rows (LightGBM
3-class, 300 trees: 16.9 us a row over 100 varied rows, 7.3 us for one row repeated). Where
treelite's nodes allow it (single-number leaves, numerical splits, one comparison operator; not
LightGBM's zero-as-missing or categorical splits, whose rule treelite's nodes do not carry),
tree_arrays.walker_generate writes them as static arrays instead, walked without a branch per
node, 8 walks interleaved (8 rows through one tree for batches, one row through 8 trees for small
ones), with tl2cgen's comparisons, missing-value defaults, float types, base scores and
postprocessor. The build makes both, checks each against check.json, times each on the check rows
(CPU time, 100-row batches and one-row calls: time_rows), and keeps the walker only when it is no
slower on either and SWITCH_MARGIN (1.2x) faster on one; manifest.json records both timings and the
choice (`evaluator`, `timings`, `choice`) and the build's log line says it. Measured with
bench/serving/tree_walk_cost.py (CPU us a row, tl2cgen / walker, this 2-core Xeon under load
average ~6): XGBoost binary (100 trees, depth 6) batches 2.37 / 0.81 (2.9x), one-row 3.58 / 1.85
(1.9x); LightGBM binary (100 trees, 31 leaves) 3.55 / 1.28 (2.8x), 5.17 / 2.45 (2.1x); LightGBM
3-class (300 trees) 17.91 / 3.96 (4.5x), 22.11 / 5.85 (3.8x); LightGBM binary with 255 leaves a
tree (200 trees) 16.71 / 5.42 (3.1x), 18.91 / 7.93 (2.4x). The walker wins on all of them by far
more than the margin, yet the choice stays a measurement: its walks take each tree's full depth
(shallower walks wait for the deepest of the 8), so very deep, unbalanced trees could favour
tl2cgen. A model whose tl2cgen C is over the compile budget gets the walker alone (its nodes are
data: a second to compile at -O3); a random forest over it keeps tree_arrays' own forest arrays.

Models with categorical columns (a Pipeline with an encoder in front) and non-tree models are not
built here: the model's library serves them.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import math
import re
import shutil
import tempfile
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from model_server import tree_arrays
from model_server.checkrows import CHECK_FILE, Answer, CheckError, gap, read_check
from model_server.native import C_READ_ROW

if TYPE_CHECKING:  # metadata.json's reader needs numpy; this module's loader does not
    from model_server.artifact import ModelMetadata

NATIVE_DIR = "native"
LIBRARY_FILE = "trees.so"
SOURCE_DIR = "trees-c"
ENTRY_FILE = "modelops_entry.c"
MANIFEST_FILE = "manifest.json"
KIND = "tl2cgen"
TOLERANCE = 1e-6
FLOAT32_TOLERANCE = 1e-5
# The algorithms whose scikit-learn estimator treelite reads (algorithms.py names).
SKLEARN_TREES = ("hist_gradient_boosting", "random_forest")
# tl2cgen splits the trees over this many C files at most (one file of a big forest makes gcc slow
# and hungry); they are compiled together, in a fixed order.
MAX_SOURCE_FILES = 8
# The compile budget (module docstring): -O1, at most this much generated C, at most this long.
TREES_CFLAGS = ("-O1", "-shared", "-fPIC", "-fno-fast-math", "-ffp-contract=off")
MAX_SOURCE_BYTES = 8_000_000
TREES_COMPILE_TIMEOUT_SECONDS = 180.0
SKIPPED_FILE = "skipped.json"
EVALUATOR_TL2CGEN = "tl2cgen"
EVALUATOR_WALKER = "walker"
EVALUATOR_FOREST = "forest arrays"
# The build's choice between tl2cgen and the walker (module docstring): CPU time on the check rows
# in batches of BATCH_ROWS and one-row calls, best of TIMING_ROUNDS rounds within TIMING_SECONDS a
# library; the walker must be SWITCH_MARGIN times faster on one measure and no slower on the other.
BATCH_ROWS = 100
TIMING_ROUNDS = 5
TIMING_SECONDS = 0.4
SWITCH_MARGIN = 1.2
Row = Sequence[float]

_MISSING = re.compile(r"\(data\[(\d+)\]\.missing != -1\)")

_ENTRY = r"""/* modelops entry point for tl2cgen's predictor; generated by model_server.trees */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "header.h"

#define NF %(n_features)d
#define FIRST %(first)d
#define WIDTH %(width)d
%(float32_input)s

int modelops_n_features(void) { return NF; }
int modelops_n_outputs(void) { return WIDTH; }

%(read_row)s
int modelops_predict(PyObject *rows, double *out) {
    double d[NF];
    union Entry x[NF];
    %(leaf_type)s result[N_TARGET * MAX_N_CLASS];
    if (!PyList_Check(rows)) {
        PyErr_SetString(PyExc_TypeError, "rows must be a list");
        return -1;
    }
    Py_ssize_t n = PyList_GET_SIZE(rows);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (modelops_read_row(PyList_GET_ITEM(rows, i), i, d) < 0) return -1;
        for (int j = 0; j < NF; j++) {
#ifdef MODELOPS_FLOAT32_INPUT
            x[j].fvalue = (double)(float)d[j];
#else
            x[j].fvalue = d[j];
#endif
        }
        memset(result, 0, sizeof result);
        predict(x, 0, result);
        for (int k = 0; k < WIDTH; k++) out[i * WIDTH + k] = (double)result[FIRST + k];
    }
    return 0;
}
"""


class TreesError(Exception):
    """The compiled trees cannot be built or used; the message says why."""


class OverBudgetError(TreesError):
    """The model's C is too large to compile within the build's budget (MAX_SOURCE_BYTES)."""


class Timing(TypedDict):
    batch_us_per_row: float
    one_row_us: float


class Manifest(TypedDict):
    kind: str
    model_file: str
    model_sha256: str
    check_sha256: str
    library: str
    sources: list[str]
    compiler: str
    cflags: list[str]
    python_abi: str
    n_features: int
    n_outputs: int
    tolerance: float
    relative: bool
    max_diff: float
    check_rows: int
    generator: str
    evaluator: str  # which library was kept: EVALUATOR_*
    choice: str  # why, with the timings when both were built
    timings: dict[str, Timing]  # CPU time of each library built, on the check rows (time_rows)


class BuildResult(Manifest):
    compile_seconds: float


@dataclass(frozen=True)
class NativeTrees:
    n_features: int
    n_outputs: int  # 1: one number per row (P(positive), the value); k: the class probabilities
    library: Path
    # modelops_predict through ctypes: (rows, address of len(rows) * n_outputs doubles) -> 0, or raises
    _function: Callable[[list[Row], int], int]

    def predict_rows(self, rows: Sequence[Row]) -> list[Answer]:
        width = self.n_outputs
        out = array("d", bytes(8 * width * len(rows)))
        self._function(rows if isinstance(rows, list) else list(rows), out.buffer_info()[0])
        values = out.tolist()
        if width == 1:
            return values  # type: ignore[return-value]  # list[float] is a list of Answers
        return [values[i : i + width] for i in range(0, len(values), width)]


def unsupported(meta: ModelMetadata) -> str | None:
    """Why this model's trees are not compiled here (None: they are)."""
    if meta.format == "onnx":
        return "format onnx: an ONNX graph is not compiled to C here; onnxruntime answers every batch"
    if meta.categorical_columns:
        return (
            f"categorical columns {list(meta.categorical_columns)}: the model is a Pipeline with an "
            "encoder in front, served by its library"
        )
    if meta.format in ("xgboost", "lightgbm"):
        return None
    if meta.format == "sklearn" and meta.algorithm in SKLEARN_TREES:
        return None
    return f"algorithm {meta.algorithm} ({meta.format}) is not a tree ensemble"


def tolerance(meta: ModelMetadata) -> float:
    return FLOAT32_TOLERANCE if meta.format == "xgboost" else TOLERANCE


def outputs(meta: ModelMetadata, n_class: int) -> tuple[int, int]:
    """(first, width): which of tl2cgen's n_class outputs per row answer for the task."""
    if meta.task == "multiclass_classification":
        k = len(meta.classes or ())
        if n_class != k:
            raise TreesError(f"the trees give {n_class} outputs per row, the model has {k} classes")
        return 0, k
    if meta.task == "binary_classification" and n_class == 2:
        return 1, 1  # P(class 0), P(class 1): a random forest's leaves
    if n_class != 1:
        raise TreesError(f"the trees give {n_class} outputs per row for a {meta.task} model")
    return 0, 1


def _treelite_model(model_dir: Path, meta: ModelMetadata) -> Any:
    import treelite

    path = model_dir / meta.model_file
    try:
        if meta.format == "xgboost":
            return treelite.frontend.load_xgboost_model(path)
        if meta.format == "lightgbm":
            return treelite.frontend.load_lightgbm_model(path)
        import joblib

        return treelite.sklearn.import_model(joblib.load(path))
    except Exception as exc:  # treelite and unpickling raise anything
        raise TreesError(f"treelite cannot read {meta.model_file}: {type(exc).__name__}: {exc}") from None


def generate(
    model_dir: Path, meta: ModelMetadata, target: Path, model: Any = None
) -> tuple[list[str], int, int]:
    """Write tl2cgen's C for the (treelite) model (edited, see the module docstring) and our entry
    point into `target`; returns (the .c files in compile order, outputs per row, the first of
    tl2cgen's outputs they are)."""
    import tl2cgen

    if model is None:
        model = _treelite_model(model_dir, meta)
    n_features = int(model.num_feature)
    if n_features != len(meta.feature_columns):
        raise TreesError(
            f"the trees take {n_features} features, metadata.json lists {len(meta.feature_columns)}"
        )
    n_trees = int(model.num_tree)
    params = {"parallel_comp": min(MAX_SOURCE_FILES, n_trees)} if n_trees > 1 else {}
    try:
        tl2cgen.generate_c_code(model, target, params=params)
    except Exception as exc:
        raise TreesError(f"tl2cgen cannot generate C: {type(exc).__name__}: {exc}") from None
    header = (target / "header.h").read_text(encoding="utf-8")
    n_target = _define(header, "N_TARGET")
    n_class = _define(header, "MAX_N_CLASS")
    if n_target != 1:
        raise TreesError(f"the trees have {n_target} targets; one is served")
    leaf = re.search(r"void predict\(union Entry\* data, int pred_margin, (float|double)\* result\)", header)
    if leaf is None or not re.search(r"union Entry \{[^}]*\b(float|double) fvalue;", header):
        raise TreesError("tl2cgen's header.h does not declare the predict function this build expects")
    first, width = outputs(meta, n_class)
    sources = sorted(p.name for p in target.glob("*.c"))
    for name in sources:
        path = target / name
        text = path.read_text(encoding="utf-8")
        path.write_text(_MISSING.sub(r"(data[\1].fvalue == data[\1].fvalue)", text), encoding="utf-8")
        if ".missing" in path.read_text(encoding="utf-8"):
            raise TreesError(f"tl2cgen's {name} tests missing values in a way this build does not know")
    floats32 = _float32_input(meta)
    entry = _ENTRY % {
        "read_row": C_READ_ROW,
        "n_features": n_features,
        "first": first,
        "width": width,
        "leaf_type": leaf.group(1),
        "float32_input": "#define MODELOPS_FLOAT32_INPUT 1" if floats32 else "",
    }
    (target / ENTRY_FILE).write_text(entry, encoding="utf-8")
    return [*sources, ENTRY_FILE], width, first


def _float32_input(meta: ModelMetadata) -> bool:
    """scikit-learn's decision trees (a random forest's) compare the row cast to float32."""
    return meta.format == "sklearn" and meta.algorithm == "random_forest"


def _joblib(model_dir: Path, meta: ModelMetadata) -> Any:
    import joblib

    return joblib.load(model_dir / meta.model_file)


def _define(header: str, name: str) -> int:
    found = re.search(rf"#define {name} (\d+)", header)
    if found is None:
        raise TreesError(f"tl2cgen's header.h has no {name}")
    return int(found.group(1))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def open_library(library: Path, n_features: int, n_outputs: int) -> NativeTrees:
    try:
        lib = ctypes.PyDLL(str(library))  # keeps the GIL: the predictor reads Python objects
        function = lib.modelops_predict
        widths = (lib.modelops_n_features, lib.modelops_n_outputs)
    except (OSError, AttributeError) as exc:
        raise TreesError(f"{library}: cannot be loaded: {exc}") from None
    for getter in widths:
        getter.restype = ctypes.c_int
        getter.argtypes = []
    if (widths[0](), widths[1]()) != (n_features, n_outputs):
        raise TreesError(
            f"{library} takes {widths[0]()} features and gives {widths[1]()} outputs, "
            f"the model {n_features} and {n_outputs}"
        )
    function.restype = ctypes.c_int
    function.argtypes = [ctypes.py_object, ctypes.c_void_p]
    return NativeTrees(n_features=n_features, n_outputs=n_outputs, library=library, _function=function)


def verify(trees: NativeTrees, model_dir: Path, limit: float) -> tuple[float, int]:
    """(largest gap to check.json's answers, rows) or TreesError when above `limit`."""
    try:
        rows, expected = read_check(model_dir)
    except CheckError as exc:
        raise TreesError(str(exc)) from None
    try:
        got = trees.predict_rows(rows)
    except (ValueError, TypeError) as exc:
        raise TreesError(f"the library cannot answer {CHECK_FILE}'s rows: {exc}") from None
    relative = limit == FLOAT32_TOLERANCE
    worst = gap(got, expected, relative=relative)
    if not worst <= limit:
        raise TreesError(
            f"the compiled trees differ from the model by {worst:.3g}{' (relative)' if relative else ''} "
            f"on {CHECK_FILE}'s rows (limit {limit:g})"
        )
    return worst, len(rows)


@dataclass
class _Candidate:
    """One way to build the model's library: its C in `folder`, compiled and checked by `_check`."""

    evaluator: str  # EVALUATOR_TL2CGEN, EVALUATOR_WALKER or EVALUATOR_FOREST
    folder: Path
    sources: list[str]
    generator: str
    cflags: tuple[str, ...]
    trees: NativeTrees | None = None
    worst: float = math.inf
    n_rows: int = 0


def _check(cc: str, candidate: _Candidate, meta: ModelMetadata, model_dir: Path, width: int) -> None:
    from model_server import native

    try:
        native.compile_library(
            cc,
            candidate.folder,
            candidate.sources,
            LIBRARY_FILE,
            cflags=candidate.cflags,
            timeout=TREES_COMPILE_TIMEOUT_SECONDS,
        )
    except native.NativeError as exc:  # (under `python -m model_server.native`, not __main__'s class)
        raise TreesError(str(exc)) from None
    trees = open_library(candidate.folder / LIBRARY_FILE, len(meta.feature_columns), width)
    candidate.worst, candidate.n_rows = verify(trees, model_dir, tolerance(meta))
    candidate.trees = trees


def time_rows(trees: NativeTrees, rows: list[list[float]], budget: float = TIMING_SECONDS) -> Timing:
    """CPU time of this thread answering `rows`: microseconds a row in BATCH_ROWS-row batches, and
    microseconds a one-row call (every row once per round); the best of TIMING_ROUNDS rounds, each
    about budget / (2 * TIMING_ROUNDS) seconds."""
    batches = [rows[i : i + BATCH_ROWS] for i in range(0, len(rows), BATCH_ROWS)]
    singles = [[row] for row in rows]

    def best(calls: list[list[list[float]]], count: int) -> float:
        trees.predict_rows(calls[0])  # warm
        per_round, fastest = budget / (2 * TIMING_ROUNDS), math.inf
        for _ in range(TIMING_ROUNDS):
            started, rounds = time.thread_time(), 0
            while True:
                for call in calls:
                    trees.predict_rows(call)
                rounds += 1
                spent = time.thread_time() - started
                if spent >= per_round:
                    break
            fastest = min(fastest, spent / rounds / count * 1e6)
        return fastest

    return {"batch_us_per_row": best(batches, len(rows)), "one_row_us": best(singles, len(rows))}


def choose(timings: dict[str, Timing]) -> str:
    """The walker when it is at least as fast as tl2cgen on both measures and SWITCH_MARGIN times
    faster on one of them; tl2cgen otherwise."""
    walker, tl2cgen = timings[EVALUATOR_WALKER], timings[EVALUATOR_TL2CGEN]
    ratios = [tl2cgen[key] / walker[key] for key in ("batch_us_per_row", "one_row_us")]
    if min(ratios) >= 1.0 and max(ratios) >= SWITCH_MARGIN:
        return EVALUATOR_WALKER
    return EVALUATOR_TL2CGEN


def build(
    model_dir: Path,
    meta: ModelMetadata,
    compiler: str | None = None,
    *,
    max_source_bytes: int = MAX_SOURCE_BYTES,
) -> BuildResult:
    """Build and check native/trees.so for the model folder, returning its manifest (plus
    compile_seconds); TreesError (or native.NativeError) says why not, OverBudgetError when the
    generated C exceeds `max_source_bytes` and nothing else applies, and the folder is left as it was."""
    from model_server import native  # the shared compiler step; native imports nothing of ours at load

    why = unsupported(meta)
    if why:
        raise TreesError(why)
    if not (model_dir / CHECK_FILE).is_file():
        raise TreesError(f"{CHECK_FILE} not found (a model trained before check rows were stored?)")
    cc = compiler or native.find_compiler()
    if cc is None:
        raise TreesError("no C compiler (cc, gcc or clang) on PATH")
    import tl2cgen
    import treelite

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="modelops-trees-") as tmp:
        model = _treelite_model(model_dir, meta)
        src = Path(tmp) / SOURCE_DIR
        src.mkdir()
        sources, width, first = generate(model_dir, meta, src, model)
        size = sum((src / name).stat().st_size for name in sources)
        candidates: list[_Candidate] = []
        over = None
        if size > max_source_bytes:
            over = (
                f"tl2cgen wrote {size / 1e6:.1f} MB of C for {meta.model_file}, above the "
                f"{max_source_bytes / 1e6:g} MB this build compiles (gcc -O1 needs ~4 s a MB on one core)"
            )
        else:
            generator = f"treelite {treelite.__version__}, tl2cgen {tl2cgen.__version__}"
            candidates.append(_Candidate(EVALUATOR_TL2CGEN, src, sources, generator, TREES_CFLAGS))
        walk = Path(tmp) / "walk"
        walk.mkdir()
        try:
            if over and tree_arrays.supported(meta):
                # a random forest over the budget keeps its own arrays (below), scikit-learn's to the bit
                raise tree_arrays.ArraysError("a random forest over the budget is written as its own arrays")
            refusal = _walker_refusal(model_dir, meta)
            if refusal:
                raise tree_arrays.ArraysError(refusal)
            walk_sources = tree_arrays.walker_generate(
                model, first, width, walk, float32_input=_float32_input(meta)
            )
        except tree_arrays.ArraysError as exc:
            walker_why: str | None = f"the walker does not take it: {exc}"
        else:
            walker_why = None
            generator = f"{tree_arrays.WALKER}, treelite {treelite.__version__}"
            if over:
                generator += f", as {over}"
            candidates.append(
                _Candidate(EVALUATOR_WALKER, walk, walk_sources, generator, tree_arrays.WALKER_CFLAGS)
            )
        if not candidates:
            if not tree_arrays.supported(meta):
                raise OverBudgetError(f"{over}; {walker_why}")
            # a random forest: its nodes as data instead of code (tree_arrays.py), seconds to compile
            shutil.rmtree(src)
            src.mkdir()
            try:
                sources, width = tree_arrays.generate(_joblib(model_dir, meta), meta, src)
            except tree_arrays.ArraysError as exc:
                raise OverBudgetError(f"{over}; {exc}") from None
            forest = f"{tree_arrays.GENERATOR}, as {over}"
            candidates.append(_Candidate(EVALUATOR_FOREST, src, sources, forest, TREES_CFLAGS))
        failures: list[TreesError] = []
        for candidate in candidates:
            try:
                _check(cc, candidate, meta, model_dir, width)
            except TreesError as exc:
                failures.append(exc)
                if candidate.evaluator == EVALUATOR_WALKER:
                    walker_why = f"the walker failed its check: {exc}"
        usable = [c for c in candidates if c.trees is not None]
        if not usable:
            raise TreesError(f"{failures[0]}; {walker_why}" if walker_why else str(failures[0]))
        compile_seconds = time.monotonic() - started
        timings: dict[str, Timing] = {}
        if len(usable) > 1:
            rows = read_check(model_dir)[0]
            for candidate in usable:
                assert candidate.trees is not None
                timings[candidate.evaluator] = time_rows(candidate.trees, rows)
            chosen_name = choose(timings)
            chosen = next(c for c in usable if c.evaluator == chosen_name)
            walker_t, tl2cgen_t = timings[EVALUATOR_WALKER], timings[EVALUATOR_TL2CGEN]
            choice = (
                f"{chosen_name} (CPU per row on {len(rows)} check rows, tl2cgen / walker: 100-row batches "
                f"{tl2cgen_t['batch_us_per_row']:.2f} / {walker_t['batch_us_per_row']:.2f} us = "
                f"{tl2cgen_t['batch_us_per_row'] / walker_t['batch_us_per_row']:.2f}x, one-row calls "
                f"{tl2cgen_t['one_row_us']:.2f} / {walker_t['one_row_us']:.2f} us = "
                f"{tl2cgen_t['one_row_us'] / walker_t['one_row_us']:.2f}x; the walker needs "
                f"{SWITCH_MARGIN:g}x on one, no loss on the other)"
            )
        else:
            chosen = usable[0]
            choice = chosen.evaluator
            if chosen.evaluator != EVALUATOR_WALKER and walker_why:
                choice += f" ({walker_why})"
            elif chosen.evaluator == EVALUATOR_WALKER and failures:
                choice += f" (tl2cgen failed its check: {failures[0]})"
        manifest: Manifest = {
            "kind": KIND,
            "model_file": meta.model_file,
            "model_sha256": _sha256(model_dir / meta.model_file),
            "check_sha256": _sha256(model_dir / CHECK_FILE),
            "library": LIBRARY_FILE,
            "sources": chosen.sources,
            "compiler": native.compiler_version(cc),
            "cflags": list(chosen.cflags),
            "python_abi": native.python_abi(),
            "n_features": len(meta.feature_columns),
            "n_outputs": width,
            "tolerance": tolerance(meta),
            "relative": tolerance(meta) == FLOAT32_TOLERANCE,
            "max_diff": chosen.worst,
            "check_rows": chosen.n_rows,
            "generator": chosen.generator,
            "evaluator": chosen.evaluator,
            "choice": choice,
            "timings": timings,
        }
        target = model_dir / NATIVE_DIR
        target.mkdir(exist_ok=True)
        shutil.copyfile(chosen.folder / LIBRARY_FILE, target / LIBRARY_FILE)
        shutil.rmtree(target / SOURCE_DIR, ignore_errors=True)
        (target / SOURCE_DIR).mkdir()
        for name in [*chosen.sources, "header.h"]:
            if (chosen.folder / name).exists():  # tree_arrays' C has no header
                shutil.copyfile(chosen.folder / name, target / SOURCE_DIR / name)
        (target / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        (target / SKIPPED_FILE).unlink(missing_ok=True)
    return {**manifest, "compile_seconds": compile_seconds}


def _walker_refusal(model_dir: Path, meta: ModelMetadata) -> str | None:
    if meta.format != "lightgbm":
        return None
    try:
        text = (model_dir / meta.model_file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return f"{meta.model_file} is unreadable: {exc}"
    return tree_arrays.lightgbm_refusal(text)


def record_skipped(model_dir: Path, reason: str) -> None:
    """native/skipped.json: why the build chose not to compile this model (OverBudgetError), read
    back by `load` so that `serve` says it in its startup log."""
    target = model_dir / NATIVE_DIR
    target.mkdir(exist_ok=True)
    doc = {"kind": KIND, "reason": reason}
    (target / SKIPPED_FILE).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


def is_built(model_dir: Path) -> bool:
    """Whether the model folder's native/manifest.json is this module's."""
    try:
        doc = json.loads((model_dir / NATIVE_DIR / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("kind") == KIND


def _skipped(model_dir: Path) -> str:
    """Why there is no library: native/skipped.json's reason, else the image was built without one."""
    try:
        reason = json.loads((model_dir / NATIVE_DIR / SKIPPED_FILE).read_text(encoding="utf-8"))["reason"]
    except (OSError, ValueError, KeyError, TypeError):
        return "the image was built without compiled trees"
    return f"not compiled at image build: {reason}"


def load(model_dir: Path, meta: ModelMetadata) -> NativeTrees:
    """The compiled trees shipped in the model folder, checked; TreesError says why they are not used."""
    from model_server.native import python_abi

    manifest_path = model_dir / NATIVE_DIR / MANIFEST_FILE
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        if manifest.get("kind") != KIND:
            raise TreesError(f"{manifest_path} is not tl2cgen's (kind {manifest.get('kind')!r})")
        library = model_dir / NATIVE_DIR / Path(str(manifest["library"])).name
        wanted, width = str(manifest["model_sha256"]), int(manifest["n_outputs"])
        limit = float(manifest["tolerance"])
    except FileNotFoundError:
        raise TreesError(f"{manifest_path} not found ({_skipped(model_dir)})") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise TreesError(f"{manifest_path} is unreadable: {exc}") from None
    if manifest.get("python_abi") != python_abi():
        raise TreesError(
            f"{library} was built for Python {manifest.get('python_abi')}, this is {python_abi()}"
        )
    expected_width = len(meta.classes or ()) if meta.task == "multiclass_classification" else 1
    if width != expected_width:
        raise TreesError(f"{library} gives {width} outputs per row, a {meta.task} model {expected_width}")
    if not (math.isfinite(limit) and 0 <= limit <= tolerance(meta)):
        raise TreesError(f"{manifest_path}: tolerance {limit} is not this model's ({tolerance(meta):g})")
    try:
        actual = _sha256(model_dir / meta.model_file)
    except OSError as exc:
        raise TreesError(f"{meta.model_file} is unreadable: {exc}") from None
    if actual != wanted:
        raise TreesError(
            f"{library} was built for another {meta.model_file} (sha256 {wanted[:12]}, not {actual[:12]})"
        )
    trees = open_library(library, len(meta.feature_columns), width)
    verify(trees, model_dir, limit)
    return trees
