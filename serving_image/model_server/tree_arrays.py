"""A scikit-learn random forest as C arrays and one loop, for forests too big to compile as code.

tl2cgen writes every node as an `if`: gcc's time grows with that code (trees.py's compile budget),
and a forest of unbounded trees on a large training set is far beyond it (100 trees on 16,000 rows:
168,672 nodes, 22-25 MB of C, 84 s or more at -O1). Here the same nodes are data: per node its
children, feature, threshold, where a missing value goes, and the leaf's class fractions, as
static arrays gcc only has to lay out, walked by one loop per tree. The answers are scikit-learn's,
step for step: the row is cast to float32 and compared with the float64 threshold
(`X[i, f] <= threshold`), a missing value takes `missing_go_to_left`, the leaf's value is divided
by its sum (DecisionTreeClassifier.predict_proba; computed here with numpy as there), the trees'
answers are added in the forest's order and the sum divided by the number of trees
(RandomForestClassifier.predict_proba, RandomForestRegressor.predict).

trees.build uses it for a random forest whose tl2cgen C exceeds the budget, and checks the library
against check.json like any other.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from model_server.native import C_READ_ROW, _c_double

if TYPE_CHECKING:
    from model_server.artifact import ModelMetadata

SOURCE_FILE = "forest_arrays.c"
# Beyond this many nodes the arrays are not written either (168,672 nodes: 6.6 MB of C, built in
# ~5 s with tl2cgen's generation; 2,000,000 nodes are ~80 MB of C, about a minute): the library serves.
MAX_NODES = 2_000_000
GENERATOR = "modelops tree_arrays (scikit-learn's tree arrays)"

_LOOP = r"""
static void row(const double *x, double *out) {
    double acc[WIDTH];
    for (int k = 0; k < WIDTH; k++) acc[k] = 0.0;
    for (int t = 0; t < NT; t++) {
        int n = ROOT[t];
        while (LEFT[n] >= 0) {
            double v = (double)(float)x[FEATURE[n]];
            if (v != v) n = MISSING_LEFT[n] ? LEFT[n] : RIGHT[n];
            else n = v <= THRESHOLD[n] ? LEFT[n] : RIGHT[n];
        }
        for (int k = 0; k < WIDTH; k++) acc[k] += VALUE[(size_t)n * WIDTH + k];
    }
    for (int k = 0; k < WIDTH; k++) out[k] = acc[k] / NT;
}

int modelops_n_features(void) { return NF; }
int modelops_n_outputs(void) { return WIDTH; }

int modelops_predict(PyObject *rows, double *out) {
    double x[NF];
    if (!PyList_Check(rows)) {
        PyErr_SetString(PyExc_TypeError, "rows must be a list");
        return -1;
    }
    Py_ssize_t n = PyList_GET_SIZE(rows);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (modelops_read_row(PyList_GET_ITEM(rows, i), i, x) < 0) return -1;
        row(x, out + i * WIDTH);
    }
    return 0;
}
"""


class ArraysError(Exception):
    """The model is not a forest this module writes; the message says why."""


def supported(meta: ModelMetadata) -> bool:
    return meta.format == "sklearn" and meta.algorithm == "random_forest" and not meta.categorical_columns


def generate(forest: Any, meta: ModelMetadata, target: Path) -> tuple[list[str], int]:
    """Write the forest's C into `target`; ([its one source file], outputs per row)."""
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    classifier = meta.task != "regression"
    wanted = RandomForestClassifier if classifier else RandomForestRegressor
    if type(forest) is not wanted or getattr(forest, "n_outputs_", 1) != 1:
        raise ArraysError(f"{type(forest).__name__} is not a single-output {wanted.__name__}")
    nodes = sum(int(e.tree_.node_count) for e in forest.estimators_)
    if nodes > MAX_NODES:
        raise ArraysError(f"the forest has {nodes:,} nodes, more than the {MAX_NODES:,} written as arrays")
    n_features = len(meta.feature_columns)
    if int(forest.n_features_in_) != n_features:
        raise ArraysError(
            f"the forest takes {forest.n_features_in_} features, metadata.json lists {n_features}"
        )
    if classifier:
        k = len(forest.classes_)
        first, width = (1, 1) if meta.task == "binary_classification" else (0, k)
        if (meta.task == "binary_classification") != (k == 2):
            raise ArraysError(f"a {meta.task} model with {k} classes")
    else:
        first, width = 0, 1
    left, right, feature, threshold, missing, value, roots = [], [], [], [], [], [], []
    offset = 0
    for estimator in forest.estimators_:
        tree = estimator.tree_
        leaf = tree.children_left < 0
        if classifier:
            fractions = np.array(tree.value[:, 0, :], dtype=np.float64)
            normalizer = fractions.sum(axis=1)[:, np.newaxis]
            normalizer[normalizer == 0.0] = 1.0
            fractions /= normalizer  # DecisionTreeClassifier.predict_proba's arithmetic
        else:
            fractions = np.array(tree.value[:, 0, :1], dtype=np.float64)
        roots.append(offset)
        left += [int(c) + offset if c >= 0 else -1 for c in tree.children_left]
        right += [int(c) + offset if c >= 0 else -1 for c in tree.children_right]
        feature += [0 if is_leaf else int(f) for f, is_leaf in zip(tree.feature, leaf, strict=True)]
        threshold += [float(t) for t in tree.threshold]
        missing += [int(m) for m in tree.missing_go_to_left]
        value += [float(v) for row in fractions[:, first : first + width] for v in row]
        offset += int(tree.node_count)
    if any(f < 0 or f >= n_features for f in feature):
        raise ArraysError("a split names a feature the model does not have")
    lines = [
        "/* generated by model_server.tree_arrays from model.joblib; do not edit */",
        "#define PY_SSIZE_T_CLEAN",
        "#include <Python.h>",
        "#include <stddef.h>",
        "#include <math.h>",
        f"#define NF {n_features}",
        f"#define WIDTH {width}",
        f"#define NT {len(roots)}",
        _array("int", "ROOT", roots),
        _array("int", "LEFT", left),
        _array("int", "RIGHT", right),
        _array("int", "FEATURE", feature),
        _array("unsigned char", "MISSING_LEFT", missing),
        _array("double", "THRESHOLD", [_c_double(v) for v in threshold]),
        _array("double", "VALUE", [_c_double(v) for v in value]),
        C_READ_ROW,
        _LOOP,
    ]
    (target / SOURCE_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [SOURCE_FILE], width


def _array(kind: str, name: str, values: list[Any]) -> str:
    body = ",".join(str(v) for v in values)
    return f"static const {kind} {name}[{len(values)}] = {{{body}}};"
